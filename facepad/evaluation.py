"""`facepad evaluate`: metrics and plots of a model's scores and embeddings against labels.

Agreement metrics are computed per region type (both sides pooled) and per region side,
retrieval metrics per region type. `write_evaluation` writes them to a folder as
metrics.json, a text table (metrics.txt) and PNG plots.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facepad.errors import FacepadError, ManifestError
from facepad.io_utils import atomic_write_text
from facepad.metrics import (
    ICC_FORM,
    LIMITS_OF_AGREEMENT_SD,
    agreement_metrics,
    quadratic_weighted_kappa,
    retrieval_metrics,
    scores_to_grades,
    to_numpy,
)
from facepad.plots import plot_bland_altman, plot_predicted_vs_true

_logger = logging.getLogger(__name__)

_SIDES = ("left", "right")
_MIN_PAIRS = 2
_MISSING = "-"


@dataclass
class EvaluationInput:
    """Model outputs and labels of an evaluated set, one row per crop (photo and region side), M rows in all."""

    region_sides: list[str]
    """Region side of each row: "cheek_left", "cheek_right", "undereye_left", ..."""
    predicted: np.ndarray
    """[M] score head output in [0, 1]."""
    true: np.ndarray
    """[M] label in [0, 1], or NaN for an unlabelled row."""
    true_grades: np.ndarray | None
    """[M] integer grade from 0, or -1 for an ungraded row. None when the set has no grades."""
    embeddings: np.ndarray
    """[M, D] embedding of each row."""
    classes: np.ndarray
    """[M] integer N-pair class of each row, or -1 for an unlabelled row."""


def compute_evaluation_metrics(data: EvaluationInput, num_grades: int | None = None) -> dict[str, Any]:
    """Compute agreement, kappa and retrieval metrics per region type and side.

    Returns a dict with "region_types" (e.g. "cheek": agreement, kappa and retrieval
    metrics of both sides pooled) and "region_sides" (e.g. "cheek_left": agreement and
    kappa), plus a description of the ICC form and the limits of agreement. A group with
    fewer than 2 labelled rows gets None in place of its metrics, and a warning is logged.

    Quadratic weighted kappa is computed when `data.true_grades` is given. Predicted
    scores become grades in equal-width bins of [0, 1] (`scores_to_grades`) with
    `num_grades` grades, by default one more than the largest true grade.

    Raises ManifestError when no row has a label, and ValueError when the arrays do not
    have one entry per row or contain values outside their documented ranges.
    """
    _validate_input(data)
    region_sides = np.asarray(data.region_sides, dtype=str)
    predicted = to_numpy(data.predicted, dtype=np.float64)
    true = to_numpy(data.true, dtype=np.float64)
    classes = to_numpy(data.classes)
    embeddings = to_numpy(data.embeddings)

    if np.isnan(true).all():
        raise ManifestError(
            f"none of the {len(true)} evaluated crops has a score label "
            f"({', '.join(sorted(set(region_sides.tolist())))} are all empty); "
            "fill in the score columns of the manifest"
        )

    predicted_grades = true_grades = None
    if data.true_grades is not None:
        true_grades = to_numpy(data.true_grades).astype(np.int64)
        if num_grades is None:
            num_grades = int(true_grades.max()) + 1 if (true_grades >= 0).any() else None
        if num_grades is not None:
            predicted_grades = scores_to_grades(predicted, num_grades)

    row_types = _region_types_of(region_sides)
    region_types = sorted(set(row_types.tolist()))
    grade_bins = "predicted scores binned into equal-width grades of [0, 1]" if predicted_grades is not None else None
    metrics: dict[str, Any] = {
        "icc_form": ICC_FORM,
        "limits_of_agreement": f"bias +/- {LIMITS_OF_AGREEMENT_SD} SD of (predicted - true)",
        "num_grades": num_grades if predicted_grades is not None else None,
        "grade_bins": grade_bins,
        "retrieval": "leave-one-out by cosine similarity among the crops of one region type, by N-pair class",
        "region_types": {},
        "region_sides": {},
    }

    for region_type in region_types:
        in_type = row_types == region_type
        entry = _agreement_entry(region_type, in_type, predicted, true, predicted_grades, true_grades, num_grades)
        entry["retrieval"] = _retrieval_entry(region_type, in_type, embeddings, classes)
        metrics["region_types"][region_type] = entry

    for region_side in sorted(set(region_sides.tolist())):
        in_side = region_sides == region_side
        metrics["region_sides"][region_side] = _agreement_entry(
            region_side, in_side, predicted, true, predicted_grades, true_grades, num_grades
        )
    return metrics


def write_evaluation(
    data: EvaluationInput, out_dir: str | os.PathLike[str], num_grades: int | None = None
) -> dict[str, Any]:
    """Compute the metrics and write them with their plots to `out_dir`.

    Writes metrics.json (NaN written as null), metrics.txt (the table from
    `format_metrics_table`), and per region type with labels predicted_vs_true_<type>.png
    and bland_altman_<type>.png. `out_dir` is created when missing, but its parent must
    exist. Every file is written atomically, metrics.json last, and nothing is written
    when the input is invalid. Returns the metrics of `compute_evaluation_metrics`, with
    the written plot file names under each region type's "plots".

    Raises FacepadError when `out_dir` cannot be used, plus the errors of
    `compute_evaluation_metrics`.
    """
    out_path = Path(out_dir)
    if not out_path.parent.is_dir():
        raise FacepadError(
            f"output folder {out_path} cannot be created because {out_path.parent} does not exist; "
            "create the parent folder or choose another output folder"
        )
    if out_path.exists() and not out_path.is_dir():
        raise FacepadError(f"output folder {out_path} is an existing file; choose a folder path")

    metrics = compute_evaluation_metrics(data, num_grades)

    out_path.mkdir(exist_ok=True)
    region_sides = np.asarray(data.region_sides, dtype=str)
    predicted = to_numpy(data.predicted, dtype=np.float64)
    true = to_numpy(data.true, dtype=np.float64)
    for region_type, entry in metrics["region_types"].items():
        entry["plots"] = _write_plots(region_type, entry, region_sides, predicted, true, out_path)

    atomic_write_text(out_path / "metrics.txt", format_metrics_table(metrics) + "\n")
    atomic_write_text(out_path / "metrics.json", json.dumps(_nan_to_none(metrics), indent=2) + "\n")
    _logger.info("wrote evaluation metrics and plots to %s", out_path)
    return metrics


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Format the metrics of `compute_evaluation_metrics` as aligned plain-text tables.

    Accepts the returned dict or one read back from metrics.json; missing, None and NaN
    values are shown as "-".
    """
    agreement_header = ["region", "n", "MAE", "RMSE", "r", "rho", "ICC", "QWK", "bias", "LoA low", "LoA high"]
    agreement_rows = []
    for region_type, type_entry in metrics["region_types"].items():
        agreement_rows.append(_agreement_row(region_type, type_entry))
        for region_side, side_entry in metrics["region_sides"].items():
            if region_side.rsplit("_", 1)[0] == region_type:
                agreement_rows.append(_agreement_row("  " + region_side, side_entry))

    recall_keys = _recall_keys(metrics)
    recall_headers = [f"R@{key.rsplit('_', 1)[1]}" for key in recall_keys]
    retrieval_header = ["region", "queries", "skipped", "P@1", "MAP@R", *recall_headers]
    retrieval_rows = []
    for region_type, type_entry in metrics["region_types"].items():
        retrieval = type_entry.get("retrieval") or {}
        retrieval_rows.append(
            [
                region_type,
                _format_count(retrieval.get("num_queries")),
                _format_count(retrieval.get("num_skipped_queries")),
                _format_value(retrieval.get("precision_at_1")),
                _format_value(retrieval.get("map_at_r")),
                *(_format_value(retrieval.get(key)) for key in recall_keys),
            ]
        )

    lines = [
        "Agreement of predicted and true scores",
        f"  ICC is {metrics.get('icc_form', ICC_FORM)}.",
        f"  LoA are the Bland-Altman limits of agreement, {metrics.get('limits_of_agreement')}.",
    ]
    if metrics.get("num_grades") is not None:
        lines.append(
            f"  QWK is quadratic weighted kappa over {metrics['num_grades']} grades, "
            f"with {metrics.get('grade_bins')}."
        )
    lines += ["", *_align(agreement_header, agreement_rows), ""]
    lines += ["Retrieval by class (leave-one-out, cosine similarity)", ""]
    lines += _align(retrieval_header, retrieval_rows)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Input checks and per-group metrics


def _validate_input(data: EvaluationInput) -> None:
    num_rows = len(data.region_sides)
    arrays = {
        "predicted": to_numpy(data.predicted),
        "true": to_numpy(data.true),
        "classes": to_numpy(data.classes),
    }
    if data.true_grades is not None:
        arrays["true_grades"] = to_numpy(data.true_grades)
    for name, values in arrays.items():
        if values.shape != (num_rows,):
            raise ValueError(f"{name} has shape {values.shape}; expected ({num_rows},), one entry per region side row")
    embeddings = to_numpy(data.embeddings)
    if embeddings.ndim != 2 or len(embeddings) != num_rows:
        raise ValueError(f"embeddings have shape {embeddings.shape}; expected ({num_rows}, D)")
    if num_rows == 0:
        raise ValueError("the evaluation input has no rows; expected at least one crop")

    for index, region_side in enumerate(data.region_sides):
        parts = str(region_side).rsplit("_", 1)
        if len(parts) != 2 or not parts[0] or parts[1] not in _SIDES:
            raise ValueError(
                f"region side {region_side!r} in row {index} is invalid; expected <region>_left or <region>_right"
            )

    predicted = arrays["predicted"].astype(np.float64)
    invalid = ~((predicted >= 0) & (predicted <= 1))
    if invalid.any():
        row = int(np.flatnonzero(invalid)[0])
        raise ValueError(f"predicted score {predicted[row]} in row {row} is invalid; expected a value in [0, 1]")
    true = arrays["true"].astype(np.float64)
    outside = ~np.isnan(true) & ((true < 0) | (true > 1))
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(f"true score {true[row]} in row {row} is outside [0, 1]; expected a value in [0, 1] or NaN")
    if "true_grades" in arrays:
        grades = arrays["true_grades"]
        if not np.issubdtype(grades.dtype, np.integer) or (grades < -1).any():
            raise ValueError(
                f"true_grades has dtype {grades.dtype} and minimum {grades.min()}; "
                "expected integer grades from 0, with -1 for ungraded rows"
            )


def _region_types_of(region_sides: np.ndarray) -> np.ndarray:
    """Return the region type of each region side: "cheek" for "cheek_left"."""
    return np.array([side.rsplit("_", 1)[0] for side in region_sides.tolist()], dtype=str)


def _agreement_entry(
    name: str,
    in_group: np.ndarray,
    predicted: np.ndarray,
    true: np.ndarray,
    predicted_grades: np.ndarray | None,
    true_grades: np.ndarray | None,
    num_grades: int | None,
) -> dict[str, Any]:
    """Return the agreement metrics and kappa of one region type or side; None where undefined."""
    labelled = in_group & ~np.isnan(true)
    entry: dict[str, Any] = {"agreement": None, "quadratic_weighted_kappa": None}
    if labelled.sum() >= _MIN_PAIRS:
        entry["agreement"] = agreement_metrics(predicted[labelled], true[labelled])
    else:
        _logger.warning(
            "%s has %d labelled crop(s) and agreement metrics need %d, so they are left out",
            name, labelled.sum(), _MIN_PAIRS,
        )

    if predicted_grades is not None and true_grades is not None:
        graded = in_group & (true_grades >= 0)
        if graded.sum() >= _MIN_PAIRS:
            entry["quadratic_weighted_kappa"] = quadratic_weighted_kappa(
                predicted_grades[graded], true_grades[graded], num_grades
            )
        else:
            _logger.warning(
                "%s has %d graded crop(s) and kappa needs %d, so it is left out", name, graded.sum(), _MIN_PAIRS
            )
    return entry


def _retrieval_entry(
    region_type: str, in_type: np.ndarray, embeddings: np.ndarray, classes: np.ndarray
) -> dict[str, float] | None:
    with_class = in_type & (classes >= 0)
    if with_class.sum() < _MIN_PAIRS:
        _logger.warning(
            "%s has %d crop(s) with a class and retrieval needs %d, so it is left out",
            region_type, with_class.sum(), _MIN_PAIRS,
        )
        return None
    return retrieval_metrics(embeddings[with_class], classes[with_class])


# ---------------------------------------------------------------------------------------
# Output files


def _write_plots(
    region_type: str,
    entry: dict[str, Any],
    region_sides: np.ndarray,
    predicted: np.ndarray,
    true: np.ndarray,
    out_path: Path,
) -> list[str]:
    """Write both plots of one region type and return their file names; none without labels."""
    if entry["agreement"] is None:
        return []
    in_type = _region_types_of(region_sides) == region_type
    predicted_vs_true = f"predicted_vs_true_{region_type}.png"
    bland_altman = f"bland_altman_{region_type}.png"
    plot_predicted_vs_true(
        predicted[in_type], true[in_type], f"{region_type}: predicted vs true score",
        out_path / predicted_vs_true, groups=region_sides[in_type].tolist(),
    )
    plot_bland_altman(
        predicted[in_type], true[in_type], f"{region_type}: Bland-Altman",
        out_path / bland_altman, groups=region_sides[in_type].tolist(),
    )
    return [predicted_vs_true, bland_altman]


def _nan_to_none(value: Any) -> Any:
    """Return a copy with NaN floats replaced by None and numpy scalars by Python numbers, for JSON."""
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ---------------------------------------------------------------------------------------
# Table formatting


def _agreement_row(label: str, entry: dict[str, Any]) -> list[str]:
    agreement = entry.get("agreement") or {}
    return [
        label,
        _format_count(agreement.get("n")),
        _format_value(agreement.get("mae")),
        _format_value(agreement.get("rmse")),
        _format_value(agreement.get("pearson_r")),
        _format_value(agreement.get("spearman_rho")),
        _format_value(agreement.get("icc")),
        _format_value(entry.get("quadratic_weighted_kappa")),
        _format_value(agreement.get("bias"), signed=True),
        _format_value(agreement.get("loa_low"), signed=True),
        _format_value(agreement.get("loa_high"), signed=True),
    ]


def _recall_keys(metrics: dict[str, Any]) -> list[str]:
    """Return the recall@K keys present in any region type, ordered by K."""
    keys: set[str] = set()
    for entry in metrics["region_types"].values():
        keys.update(key for key in (entry.get("retrieval") or {}) if key.startswith("recall_at_"))
    return sorted(keys, key=lambda key: int(key.rsplit("_", 1)[1]))


def _format_value(value: Any, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _MISSING
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _format_count(value: Any) -> str:
    return _MISSING if value is None else str(int(value))


def _align(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return the header and rows as lines with the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return lines
