"""N-pair classes: one per region type and grade, or per region type and score bin.

The crops of the right side are mirrored, so a left crop and a right crop of the same
region type and grade share one class: class = (region type, grade), where the grade is
the manifest's grade column or, without one, the bin of the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from facepad.manifest import Manifest
from facepad.regions import REGION_SIDES, REGION_TYPES


@dataclass(frozen=True)
class ClassTable:
    """The N-pair classes: one per region type and grade (or score bin)."""

    kind: dict[str, str]  # region type -> "grade" or "bin"
    grades: dict[str, list[int]]  # region type -> its grades (for "bin": the bin indices)
    score_bins: int

    @classmethod
    def from_manifest(cls, manifest: Manifest, score_bins: int) -> "ClassTable":
        """Use grade columns for a region type when the manifest has them, else score bins."""
        kind, grades = {}, {}
        for region in REGION_TYPES:
            sides = [name for name in REGION_SIDES if name.startswith(region + "_")]
            if any(name in manifest.grade_columns for name in sides):
                kind[region] = "grade"
                values = {row.grades[name] for row in manifest.rows for name in sides if name in row.grades}
                grades[region] = sorted(values)
            else:
                kind[region] = "bin"
                grades[region] = list(range(score_bins))
        return cls(kind, grades, score_bins)

    @classmethod
    def from_dict(cls, data: dict) -> "ClassTable":
        return cls(dict(data["kind"]), {k: list(v) for k, v in data["grades"].items()}, int(data["score_bins"]))

    def to_dict(self) -> dict:
        return {"kind": dict(self.kind), "grades": {k: list(v) for k, v in self.grades.items()},
                "score_bins": self.score_bins}

    @property
    def names(self) -> list[str]:
        """Return readable class names in class-id order, such as `cheek grade 2` or `cheek 0.2-0.4`."""
        names = []
        for region in REGION_TYPES:
            for grade in self.grades[region]:
                if self.kind[region] == "grade":
                    names.append(f"{region} grade {grade}")
                else:
                    low, high = grade / self.score_bins, (grade + 1) / self.score_bins
                    names.append(f"{region} {low:.2f}-{high:.2f}")
        return names

    def class_of(self, region: str, score: float, grade: int | None) -> int:
        """Return the class id of a labelled crop, or -1 when it has no label of the needed kind."""
        offset = sum(len(self.grades[r]) for r in REGION_TYPES[: REGION_TYPES.index(region)])
        if self.kind[region] == "grade":
            if grade is None or grade not in self.grades[region]:
                return -1
            return offset + self.grades[region].index(grade)
        if math.isnan(score):
            return -1
        return offset + min(int(score * self.score_bins), self.score_bins - 1)
