"""Reading and validating a manifest CSV, and splitting it by subject.

A manifest lists one photo per row: `image` (relative to the manifest's folder),
`subject` and an optional `split` (`train`, `val` or `test`). It has a score column in
[0, 1] per region side (`cheek_left`, `cheek_right`, `undereye_left`, `undereye_right`),
where empty means unlabelled, and optional integer grade columns (`cheek_left_grade`, ...).
Every problem is reported with the file, the row number as a spreadsheet shows it, the
column and the value.
"""

from __future__ import annotations

import csv
import difflib
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

from facepad.errors import ManifestError
from facepad.regions import REGION_SIDES

_logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
GRADE_SUFFIX = "_grade"


@dataclass(frozen=True)
class ManifestRow:
    """One photo of a manifest with its labels."""

    image: Path  # absolute path
    subject: str
    split: str | None
    scores: dict[str, float]  # region side -> score in [0, 1]; NaN when unlabelled
    grades: dict[str, int]  # region side -> grade; absent when the manifest has no grade
    row_number: int  # the row as a spreadsheet numbers it (the header is row 1)


@dataclass
class Manifest:
    """A validated manifest."""

    path: Path
    rows: list[ManifestRow]
    score_columns: tuple[str, ...]  # region sides that have a score column
    grade_columns: tuple[str, ...]  # region sides that have a grade column

    @property
    def has_split(self) -> bool:
        return any(row.split is not None for row in self.rows)


def read_manifest(path: str | Path, require_labels: bool = True) -> Manifest:
    """Read and validate a manifest CSV.

    Raises ManifestError for a missing file, missing or misspelled columns, or a missing
    photo. It also raises for a score that is not a number or lies outside [0, 1], a
    non-integer grade, an unknown split, a photo listed twice, or a subject in two splits. With `require_labels`,
    a manifest without any score column or without any labelled value is an error too.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found; give the path of a CSV file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            header = [name.strip() for name in (reader.fieldnames or [])]
            records = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ManifestError(f"manifest {path} could not be read as a UTF-8 CSV file: {error}") from None

    missing = [name for name in ("image", "subject") if name not in header]
    if missing:
        raise ManifestError(
            f"manifest {path} lacks the column(s) {', '.join(missing)}; found: {', '.join(header) or 'no header'}"
        )
    _check_unknown_columns(header, path)
    score_columns = tuple(name for name in REGION_SIDES if name in header)
    grade_columns = tuple(name for name in REGION_SIDES if name + GRADE_SUFFIX in header)
    if require_labels and not score_columns:
        raise ManifestError(
            f"manifest {path} has no score column; add at least one of {', '.join(REGION_SIDES)}"
        )

    rows: list[ManifestRow] = []
    seen_images: dict[Path, int] = {}
    subject_split: dict[str, tuple[str | None, int]] = {}
    root = path.parent
    for index, record in enumerate(records):
        row_number = index + 2
        record = {(key or "").strip(): (value or "").strip() for key, value in record.items()}
        where = f"{path.name} row {row_number}"

        image_text = record.get("image", "")
        if not image_text:
            raise ManifestError(f"{where}: the image column is empty; give the photo's path")
        image = (root / image_text).resolve()
        if not image.is_file():
            raise ManifestError(f"{where}: image {image_text!r} not found (looked for {image})")
        if image in seen_images:
            raise ManifestError(
                f"{where}: image {image_text!r} is already listed in row {seen_images[image]}; remove the duplicate"
            )
        seen_images[image] = row_number

        subject = record.get("subject", "")
        if not subject:
            raise ManifestError(f"{where}: the subject column is empty; every photo needs a subject id")

        split = record.get("split") or None
        if split is not None:
            split = split.lower()
            if split not in SPLITS:
                raise ManifestError(f"{where}: split={record['split']!r} is not one of {', '.join(SPLITS)}")
        if subject in subject_split and subject_split[subject][0] != split:
            other_split, other_row = subject_split[subject]
            raise ManifestError(
                f"{where}: subject {subject!r} is in split {split!r} here but in {other_split!r} in row {other_row}; "
                "keep each subject in one split"
            )
        subject_split.setdefault(subject, (split, row_number))

        scores = {}
        for column in score_columns:
            scores[column] = _parse_score(record.get(column, ""), column, where)
        grades = {}
        for column in grade_columns:
            text = record.get(column + GRADE_SUFFIX, "")
            if text:
                grades[column] = _parse_grade(text, column + GRADE_SUFFIX, where)

        rows.append(ManifestRow(image, subject, split, scores, grades, row_number))

    if not rows:
        raise ManifestError(f"manifest {path} has a header but no rows")
    if require_labels and all(math.isnan(v) for row in rows for v in row.scores.values()):
        raise ManifestError(f"manifest {path} has no labelled score in any row; fill in at least one score column")
    return Manifest(path, rows, score_columns, grade_columns)


def _check_unknown_columns(header: list[str], path: Path) -> None:
    """Reject a column that looks like a misspelled known one; log the other extra columns.

    A study may add its own columns (age, visit, ...) and those are ignored, but a column
    such as `undereye_rigth` would otherwise silently leave a region side unlabelled.
    """
    known = ["image", "subject", "split", *REGION_SIDES, *(name + GRADE_SUFFIX for name in REGION_SIDES)]
    extra = [name for name in header if name not in known]
    for name in extra:
        close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.8)
        if close:
            raise ManifestError(
                f"manifest {path} has a column {name!r}, which is not a known column; did you mean {close[0]!r}?"
            )
    if extra:
        _logger.info("manifest %s: ignoring the columns %s", path.name, ", ".join(extra))


def _parse_score(text: str, column: str, where: str) -> float:
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"{where}: {column}={text!r} is not a number; use a score in [0, 1] or leave it empty") from None
    if not 0.0 <= value <= 1.0:
        raise ManifestError(f"{where}: {column}={text} is outside [0, 1]; rescale the scores to [0, 1]")
    return value


def _parse_grade(text: str, column: str, where: str) -> int:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or value < 0:
        raise ManifestError(f"{where}: {column}={text!r} is not a non-negative integer grade")
    return int(value)


def split_by_subject(manifest: Manifest, val_fraction: float, seed: int) -> tuple[list[ManifestRow], list[ManifestRow]]:
    """Split rows into training and validation rows, never putting one subject in both.

    A manifest with a split column is used as it is (`test` rows are left out of both).
    Otherwise a seeded shuffle of the subjects puts about `val_fraction` of them, at least
    one when there are two or more subjects, into validation.
    """
    if manifest.has_split:
        train = [row for row in manifest.rows if row.split in (None, "train")]
        val = [row for row in manifest.rows if row.split == "val"]
        return train, val

    subjects = sorted({row.subject for row in manifest.rows})
    random.Random(seed).shuffle(subjects)
    count = round(len(subjects) * val_fraction)
    if val_fraction > 0 and count == 0 and len(subjects) >= 2:
        count = 1
    val_subjects = set(subjects[:count])
    train = [row for row in manifest.rows if row.subject not in val_subjects]
    val = [row for row in manifest.rows if row.subject in val_subjects]
    return train, val
