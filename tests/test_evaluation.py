"""Tests of facepad.evaluation and facepad.plots on synthetic predictions.

The inputs are made-up arrays, because the evaluation only groups rows and calls the
metrics. A trained model would add nothing these tests check.
"""

from __future__ import annotations

import json
import math

import matplotlib.image
import numpy as np
import pytest

from facepad.errors import FacepadError, ManifestError
from facepad.evaluation import EvaluationInput, compute_evaluation_metrics, format_metrics_table, write_evaluation
from facepad.metrics import agreement_metrics, quadratic_weighted_kappa, retrieval_metrics, scores_to_grades
from facepad.plots import plot_bland_altman, plot_predicted_vs_true

REGION_SIDES = ("cheek_left", "cheek_right", "undereye_left", "undereye_right")


def _make_input(seed: int = 0, num_rows: int = 200, with_grades: bool = True) -> EvaluationInput:
    """Return rows of all four region sides in turn, with every tenth row unlabelled."""
    rng = np.random.default_rng(seed)
    region_sides = [REGION_SIDES[i % 4] for i in range(num_rows)]
    true = rng.uniform(0, 1, num_rows)
    predicted = np.clip(true + rng.normal(0.02, 0.08, num_rows), 0, 1)
    true[::10] = np.nan
    grades = scores_to_grades(true, 4)
    embeddings = rng.normal(size=(num_rows, 8)) + 2.0 * np.eye(8)[np.maximum(grades, 0)]
    return EvaluationInput(
        region_sides=region_sides,
        predicted=predicted,
        true=true,
        true_grades=grades if with_grades else None,
        embeddings=embeddings,
        classes=grades.copy(),
    )


def _rows_of(data: EvaluationInput, prefix: str) -> np.ndarray:
    return np.array([side.startswith(prefix) for side in data.region_sides])


def _reject_nan_constant(name: str):
    raise AssertionError(f"metrics.json contains the non-standard constant {name}")


# ---------------------------------------------------------------------------------------
# compute_evaluation_metrics


def test_evaluation_region_type_pools_both_sides():
    data = _make_input()
    metrics = compute_evaluation_metrics(data)

    cheek = _rows_of(data, "cheek_") & ~np.isnan(data.true)
    expected = agreement_metrics(data.predicted[cheek], data.true[cheek])
    assert metrics["region_types"]["cheek"]["agreement"] == pytest.approx(expected)
    assert metrics["region_types"]["cheek"]["agreement"]["n"] == 90


def test_evaluation_region_side_uses_own_rows():
    data = _make_input()
    metrics = compute_evaluation_metrics(data)

    right = _rows_of(data, "undereye_right") & ~np.isnan(data.true)
    expected = agreement_metrics(data.predicted[right], data.true[right])
    assert set(metrics["region_sides"]) == set(REGION_SIDES)
    assert metrics["region_sides"]["undereye_right"]["agreement"] == pytest.approx(expected)


def test_evaluation_kappa_bins_predictions_by_grade_count():
    data = _make_input()
    metrics = compute_evaluation_metrics(data)

    rows = _rows_of(data, "cheek_left") & (data.true_grades >= 0)
    expected = quadratic_weighted_kappa(scores_to_grades(data.predicted[rows], 4), data.true_grades[rows], 4)
    assert metrics["num_grades"] == 4
    assert metrics["region_sides"]["cheek_left"]["quadratic_weighted_kappa"] == pytest.approx(expected)


def test_evaluation_without_grades_has_no_kappa():
    metrics = compute_evaluation_metrics(_make_input(with_grades=False))

    assert metrics["num_grades"] is None
    for entry in [*metrics["region_types"].values(), *metrics["region_sides"].values()]:
        assert entry["quadratic_weighted_kappa"] is None


def test_evaluation_retrieval_per_region_type_by_class():
    data = _make_input()
    metrics = compute_evaluation_metrics(data)

    rows = _rows_of(data, "undereye_") & (data.classes >= 0)
    expected = retrieval_metrics(data.embeddings[rows], data.classes[rows])
    assert metrics["region_types"]["undereye"]["retrieval"] == pytest.approx(expected)
    assert metrics["region_types"]["undereye"]["retrieval"]["num_queries"] == 90


def test_evaluation_region_without_labels_is_skipped():
    data = _make_input()
    data.true[_rows_of(data, "undereye_")] = np.nan
    data.classes[_rows_of(data, "undereye_")] = -1
    metrics = compute_evaluation_metrics(data)

    assert metrics["region_types"]["undereye"]["agreement"] is None
    assert metrics["region_types"]["undereye"]["retrieval"] is None
    assert metrics["region_sides"]["undereye_left"]["agreement"] is None
    assert metrics["region_types"]["cheek"]["agreement"]["n"] == 90


def test_evaluation_no_labels_raises_manifest_error():
    data = _make_input()
    data.true[:] = np.nan

    with pytest.raises(ManifestError, match="none of the 200 evaluated crops has a score label"):
        compute_evaluation_metrics(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: setattr(data, "predicted", data.predicted[:-1]), "predicted has shape"),
        (lambda data: setattr(data, "embeddings", data.embeddings[:, 0]), "embeddings have shape"),
        (lambda data: data.region_sides.__setitem__(5, "cheek_middle"), "'cheek_middle' in row 5"),
        (lambda data: data.predicted.__setitem__(7, 1.5), "predicted score 1.5 in row 7"),
        (lambda data: data.true.__setitem__(8, -0.1), "true score -0.1 in row 8"),
        (lambda data: data.true_grades.__setitem__(3, -2), "ungraded rows"),
    ],
)
def test_evaluation_invalid_input_raises(change, message):
    data = _make_input()
    change(data)

    with pytest.raises(ValueError, match=message):
        compute_evaluation_metrics(data)


# ---------------------------------------------------------------------------------------
# write_evaluation


def test_write_evaluation_writes_all_files(tmp_path):
    out_dir = tmp_path / "evaluation"
    metrics = write_evaluation(_make_input(), out_dir)

    expected_files = {
        "metrics.json",
        "metrics.txt",
        "predicted_vs_true_cheek.png",
        "bland_altman_cheek.png",
        "predicted_vs_true_undereye.png",
        "bland_altman_undereye.png",
    }
    assert {path.name for path in out_dir.iterdir()} == expected_files
    assert metrics["region_types"]["cheek"]["plots"] == ["predicted_vs_true_cheek.png", "bland_altman_cheek.png"]
    image = matplotlib.image.imread(out_dir / "bland_altman_cheek.png")
    assert image.shape[0] > 300
    assert image.shape[1] > 300


def test_write_evaluation_json_matches_returned_metrics(tmp_path):
    metrics = write_evaluation(_make_input(), tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text(), parse_constant=_reject_nan_constant)

    assert saved["region_types"]["cheek"]["agreement"] == pytest.approx(metrics["region_types"]["cheek"]["agreement"])
    assert saved["region_types"]["undereye"]["retrieval"] == pytest.approx(
        metrics["region_types"]["undereye"]["retrieval"]
    )
    assert saved["icc_form"].startswith("ICC(A,1)")


def test_write_evaluation_json_writes_nan_as_null(tmp_path):
    data = _make_input()
    data.predicted[_rows_of(data, "cheek_left")] = 0.5
    metrics = write_evaluation(data, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text(), parse_constant=_reject_nan_constant)

    assert math.isnan(metrics["region_sides"]["cheek_left"]["agreement"]["pearson_r"])
    assert saved["region_sides"]["cheek_left"]["agreement"]["pearson_r"] is None


def test_write_evaluation_text_table_matches_format(tmp_path):
    metrics = write_evaluation(_make_input(), tmp_path / "out")

    assert (tmp_path / "out" / "metrics.txt").read_text() == format_metrics_table(metrics) + "\n"


def test_write_evaluation_skips_plots_of_unlabelled_region(tmp_path):
    data = _make_input()
    data.true[_rows_of(data, "undereye_")] = np.nan
    metrics = write_evaluation(data, tmp_path / "out")

    assert metrics["region_types"]["undereye"]["plots"] == []
    assert not (tmp_path / "out" / "bland_altman_undereye.png").exists()
    assert (tmp_path / "out" / "bland_altman_cheek.png").exists()


def test_write_evaluation_missing_parent_raises(tmp_path):
    out_dir = tmp_path / "missing" / "evaluation"

    with pytest.raises(FacepadError, match="does not exist") as raised:
        write_evaluation(_make_input(), out_dir)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "missing").exists()


def test_write_evaluation_file_as_out_dir_raises(tmp_path):
    out_file = tmp_path / "metrics"
    out_file.write_text("keep me")

    with pytest.raises(FacepadError, match="is an existing file"):
        write_evaluation(_make_input(), out_file)
    assert out_file.read_text() == "keep me"


def test_write_evaluation_invalid_input_writes_nothing(tmp_path):
    data = _make_input()
    data.true[:] = np.nan
    out_dir = tmp_path / "evaluation"

    with pytest.raises(ManifestError):
        write_evaluation(data, out_dir)
    assert not out_dir.exists()


def test_write_evaluation_overwrites_previous_run(tmp_path):
    out_dir = tmp_path / "out"
    write_evaluation(_make_input(seed=1), out_dir)
    second = write_evaluation(_make_input(seed=2), out_dir)
    saved = json.loads((out_dir / "metrics.json").read_text())

    assert saved["region_types"]["cheek"]["agreement"]["mae"] == pytest.approx(
        second["region_types"]["cheek"]["agreement"]["mae"]
    )
    assert not list(out_dir.glob(".*.tmp"))


# ---------------------------------------------------------------------------------------
# format_metrics_table


def test_format_table_lists_every_region_and_side():
    table = format_metrics_table(compute_evaluation_metrics(_make_input()))
    first_columns = [line.split()[0] for line in table.splitlines() if line.strip()]

    for name in ("cheek", "undereye", *REGION_SIDES):
        assert name in first_columns, name
    assert "MAP@R" in table
    assert "R@8" in table


def test_format_table_columns_are_aligned():
    table = format_metrics_table(compute_evaluation_metrics(_make_input()))
    lines = table.splitlines()
    header_index = next(i for i, line in enumerate(lines) if line.startswith("region "))
    header = lines[header_index]
    rows = lines[header_index + 1 : header_index + 7]

    # Numbers are right-aligned, so each value ends where its header ends.
    icc_end = header.index("ICC") + len("ICC")
    for row in rows:
        assert row[icc_end - 1].isdigit(), row
        assert row[icc_end] == " ", row


def test_format_table_shows_missing_values_as_dash():
    data = _make_input(with_grades=False)
    data.true[_rows_of(data, "undereye_")] = np.nan
    metrics = compute_evaluation_metrics(data)
    rows = {line.split()[0]: line.split() for line in format_metrics_table(metrics).splitlines() if line.strip()}

    assert rows["undereye_left"][1:] == ["-"] * 10
    assert rows["cheek_left"][7] == "-"


def test_format_table_reads_saved_json(tmp_path):
    data = _make_input()
    data.predicted[_rows_of(data, "cheek_left")] = 0.5
    metrics = write_evaluation(data, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())

    assert format_metrics_table(saved) == format_metrics_table(metrics)


# ---------------------------------------------------------------------------------------
# plots


def test_plot_predicted_vs_true_writes_png(tmp_path):
    rng = np.random.default_rng(3)
    true = rng.uniform(0, 1, 50)
    path = tmp_path / "scatter.png"
    plot_predicted_vs_true(true + 0.05, true, "cheek", path)

    image = matplotlib.image.imread(path)
    assert image.ndim == 3
    # The plot is not blank: some pixels are far from white.
    assert (image[..., :3].min(axis=2) < 0.5).sum() > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["scatter.png"]


def test_plot_bland_altman_handles_nan_and_groups(tmp_path):
    true = np.array([0.1, np.nan, 0.5, 0.7, 0.9])
    predicted = np.array([0.15, 0.2, 0.45, 0.8, 0.85])
    path = tmp_path / "bland_altman.png"
    plot_bland_altman(predicted, true, "undereye", path, groups=["left", "right", "left", "right", "left"])

    assert matplotlib.image.imread(path).shape[2] in (3, 4)


def test_plot_group_count_mismatch_raises(tmp_path):
    with pytest.raises(ValueError, match="one per pair"):
        plot_predicted_vs_true(np.zeros(3), np.zeros(3), "cheek", tmp_path / "x.png", groups=["left"])
    assert not (tmp_path / "x.png").exists()
