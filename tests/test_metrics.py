"""Tests of facepad.metrics against independent references.

References: pytorch-metric-learning's AccuracyCalculator for precision@1 and MAP@R,
scikit-learn's cohen_kappa_score for the weighted kappa, scipy.stats for correlations,
and the ICC of the Shrout & Fleiss (1979) example.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats

from facepad.metrics import (
    agreement_metrics,
    intraclass_correlation,
    quadratic_weighted_kappa,
    retrieval_metrics,
    scores_to_grades,
)


def _clustered_embeddings(seed: int, num_rows: int = 240, dim: int = 16, num_classes: int = 12):
    """Return embeddings that cluster loosely by class, and their labels. Classes 100-102 have one row each."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_rows)
    labels[:3] = [100, 101, 102]
    centres = rng.normal(size=(num_classes + 103, dim))
    embeddings = rng.normal(size=(num_rows, dim)) + 0.8 * centres[labels]
    return embeddings.astype(np.float32), labels


def _reference_accuracy(embeddings, labels, normalize: bool):
    """Return precision@1 and MAP@R from pytorch-metric-learning, by cosine or by dot product."""
    torch = pytest.importorskip("torch")
    accuracy_module = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    from pytorch_metric_learning.distances import CosineSimilarity, DotProductSimilarity
    from pytorch_metric_learning.utils.inference import CustomKNN

    distance = CosineSimilarity() if normalize else DotProductSimilarity(normalize_embeddings=False)

    # Passing no reference set makes the calculator use the queries as references and
    # exclude each query from its own neighbours (ref_includes_query=True).
    calculator = accuracy_module.AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(distance),
    )
    return calculator.get_accuracy(torch.from_numpy(embeddings), torch.from_numpy(labels))


def _brute_force_recall(embeddings, labels, k):
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    hits = []
    for query in range(len(labels)):
        if np.sum(labels == labels[query]) < 2:
            continue
        similarities = unit @ unit[query]
        similarities[query] = -np.inf
        nearest = np.argsort(-similarities)[:k]
        hits.append(bool(np.any(labels[nearest] == labels[query])))
    return float(np.mean(hits))


# ---------------------------------------------------------------------------------------
# retrieval_metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_cosine_matches_pytorch_metric_learning(seed):
    embeddings, labels = _clustered_embeddings(seed)
    reference = _reference_accuracy(embeddings, labels, normalize=True)
    result = retrieval_metrics(embeddings, labels)

    assert result["precision_at_1"] == pytest.approx(reference["precision_at_1"], abs=1e-9)
    assert result["map_at_r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1e-9)


def test_retrieval_dot_product_matches_pytorch_metric_learning():
    embeddings, labels = _clustered_embeddings(3)
    embeddings *= np.random.default_rng(3).uniform(0.2, 5.0, size=(len(embeddings), 1)).astype(np.float32)
    reference = _reference_accuracy(embeddings, labels, normalize=False)
    result = retrieval_metrics(embeddings, labels, normalize=False)

    assert result["precision_at_1"] == pytest.approx(reference["precision_at_1"], abs=1e-9)
    assert result["map_at_r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1e-9)


def test_retrieval_recall_matches_brute_force():
    embeddings, labels = _clustered_embeddings(4)
    result = retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 8, 16))

    for k in (1, 2, 4, 8, 16):
        assert result[f"recall_at_{k}"] == pytest.approx(_brute_force_recall(embeddings, labels, k), abs=1e-12)
    assert result["recall_at_1"] == result["precision_at_1"]


def test_retrieval_counts_skipped_lone_queries():
    embeddings, labels = _clustered_embeddings(5)
    result = retrieval_metrics(embeddings, labels)

    assert result["num_skipped_queries"] == 3
    assert result["num_queries"] == len(labels) - 3


def test_retrieval_chunking_does_not_change_results():
    embeddings, labels = _clustered_embeddings(6)
    whole = retrieval_metrics(embeddings, labels)
    chunked = retrieval_metrics(embeddings, labels, chunk_rows=7)

    for name, value in whole.items():
        assert chunked[name] == pytest.approx(value, abs=1e-12), name


def test_retrieval_perfect_clusters_score_one():
    labels = np.repeat(np.arange(4), 5)
    embeddings = np.eye(4)[labels] + 0.01 * np.random.default_rng(7).normal(size=(20, 4))
    result = retrieval_metrics(embeddings, labels)

    assert result["precision_at_1"] == 1.0
    assert result["map_at_r"] == pytest.approx(1.0)
    assert result["recall_at_8"] == 1.0


def test_retrieval_all_lone_classes_give_nan():
    embeddings = np.random.default_rng(8).normal(size=(5, 3))
    result = retrieval_metrics(embeddings, np.arange(5))

    assert result["num_queries"] == 0
    assert result["num_skipped_queries"] == 5
    assert np.isnan(result["precision_at_1"])
    assert np.isnan(result["map_at_r"])


def test_retrieval_k_above_row_count_is_capped():
    labels = np.array([0, 0, 1, 1])
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    result = retrieval_metrics(embeddings, labels, ks=(1, 3, 50))

    assert result["recall_at_1"] == 0.0
    assert result["recall_at_3"] == 1.0
    assert result["recall_at_50"] == 1.0


def test_retrieval_accepts_torch_tensor_with_grad():
    torch = pytest.importorskip("torch")
    embeddings, labels = _clustered_embeddings(9)
    tensor = torch.tensor(embeddings, requires_grad=True)

    from_tensor = retrieval_metrics(tensor, torch.tensor(labels))
    from_numpy = retrieval_metrics(embeddings, labels)

    assert from_tensor == from_numpy


def test_retrieval_zero_embedding_raises_when_normalizing():
    embeddings = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    labels = np.array([0, 0, 1])

    with pytest.raises(ValueError, match="row 1 is all zeros"):
        retrieval_metrics(embeddings, labels)
    assert retrieval_metrics(embeddings, labels, normalize=False)["num_queries"] == 2


@pytest.mark.parametrize(
    ("embeddings", "labels", "ks", "message"),
    [
        (np.ones((3, 2)), np.zeros(4), (1,), "one label per row"),
        (np.ones(3), np.zeros(3), (1,), "2-D"),
        (np.array([[1.0, np.nan], [1.0, 1.0]]), np.zeros(2), (1,), "row 0 contains NaN"),
        (np.ones((3, 2)), np.zeros(3), (0,), "K=0"),
    ],
)
def test_retrieval_invalid_input_raises(embeddings, labels, ks, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(embeddings, labels, ks=ks)


# ---------------------------------------------------------------------------------------
# agreement_metrics and intraclass_correlation


def test_agreement_matches_scipy_and_formulas():
    rng = np.random.default_rng(10)
    true = rng.uniform(0, 1, 200)
    # Rounding creates ties, which Spearman's rho must rank by their average.
    predicted = np.round(np.clip(true + rng.normal(0.03, 0.1, 200), 0, 1), 1)
    result = agreement_metrics(predicted, true)

    differences = predicted - true
    assert result["n"] == 200
    assert result["pearson_r"] == pytest.approx(scipy.stats.pearsonr(predicted, true)[0], abs=1e-12)
    assert result["spearman_rho"] == pytest.approx(scipy.stats.spearmanr(predicted, true)[0], abs=1e-12)
    assert result["mae"] == pytest.approx(np.mean(np.abs(differences)))
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean(differences**2)))
    assert result["bias"] == pytest.approx(np.mean(differences))
    assert result["loa_high"] - result["bias"] == pytest.approx(1.96 * np.std(differences, ddof=1))
    assert result["bias"] - result["loa_low"] == pytest.approx(1.96 * np.std(differences, ddof=1))


def test_agreement_perfect_agreement():
    true = np.linspace(0, 1, 11)
    result = agreement_metrics(true.copy(), true)

    assert result["mae"] == 0.0
    assert result["rmse"] == 0.0
    assert result["pearson_r"] == pytest.approx(1.0)
    assert result["spearman_rho"] == pytest.approx(1.0)
    assert result["icc"] == pytest.approx(1.0)
    assert result["bias"] == 0.0
    assert result["loa_low"] == 0.0
    assert result["loa_high"] == 0.0


def test_agreement_constant_predictions_give_nan_without_warning():
    true = np.linspace(0, 1, 11)
    predicted = np.full(11, 0.5)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = agreement_metrics(predicted, true)

    assert np.isnan(result["pearson_r"])
    assert np.isnan(result["spearman_rho"])
    assert np.isfinite(result["icc"])
    assert result["mae"] == pytest.approx(np.mean(np.abs(0.5 - true)))


def test_agreement_all_values_equal_give_nan_icc():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = agreement_metrics(np.full(5, 0.3), np.full(5, 0.3))

    assert np.isnan(result["icc"])
    assert np.isnan(result["pearson_r"])
    assert result["mae"] == 0.0


def test_agreement_drops_nan_pairs():
    rng = np.random.default_rng(11)
    true = rng.uniform(0, 1, 50)
    predicted = rng.uniform(0, 1, 50)
    true_with_gaps = true.copy()
    true_with_gaps[[3, 10, 20]] = np.nan
    predicted_with_gaps = predicted.copy()
    predicted_with_gaps[40] = np.nan
    keep = np.ones(50, dtype=bool)
    keep[[3, 10, 20, 40]] = False

    result = agreement_metrics(predicted_with_gaps, true_with_gaps)
    expected = agreement_metrics(predicted[keep], true[keep])

    assert result["n"] == 46
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name


def test_agreement_fewer_than_two_pairs_raises():
    with pytest.raises(ValueError, match="^1 pair"):
        agreement_metrics(np.array([0.2, np.nan, 0.4]), np.array([0.1, 0.5, np.nan]))


def test_agreement_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="same length"):
        agreement_metrics(np.zeros(3), np.zeros(4))


def test_agreement_icc_is_lowered_by_constant_offset():
    true = np.linspace(0, 1, 21)
    result = agreement_metrics(true + 0.2, true)

    # An absolute-agreement ICC counts the offset, but a consistency ICC would stay at 1.
    assert result["pearson_r"] == pytest.approx(1.0)
    assert result["icc"] < 0.9


def test_icc_matches_shrout_fleiss_table():
    # The example of Shrout & Fleiss (1979): 6 targets rated by 4 judges, with ICC(2,1) = .29.
    ratings = np.array(
        [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
        dtype=float,
    )
    assert intraclass_correlation(ratings) == pytest.approx(0.29, abs=0.005)


def test_icc_two_raters_matches_anova_worked_case():
    predicted = [0.1, 0.4, 0.35, 0.8, 0.6]
    true = [0.2, 0.3, 0.5, 0.9, 0.5]
    n, k = 5, 2

    # Two-way ANOVA sums of squares, written out term by term.
    grand = (sum(predicted) + sum(true)) / (n * k)
    target_means = [(p + t) / 2 for p, t in zip(predicted, true)]
    rater_means = [sum(predicted) / n, sum(true) / n]
    ss_targets = k * sum((m - grand) ** 2 for m in target_means)
    ss_raters = n * sum((m - grand) ** 2 for m in rater_means)
    ss_total = sum((x - grand) ** 2 for x in predicted + true)
    ss_error = ss_total - ss_targets - ss_raters
    ms_targets = ss_targets / (n - 1)
    ms_raters = ss_raters / (k - 1)
    ms_error = ss_error / ((n - 1) * (k - 1))
    expected = (ms_targets - ms_error) / (ms_targets + (k - 1) * ms_error + k / n * (ms_raters - ms_error))

    assert agreement_metrics(np.array(predicted), np.array(true))["icc"] == pytest.approx(expected, abs=1e-12)


def test_icc_invalid_shape_raises():
    with pytest.raises(ValueError, match="at least 2"):
        intraclass_correlation(np.ones((1, 3)))


# ---------------------------------------------------------------------------------------
# quadratic_weighted_kappa and scores_to_grades


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kappa_matches_scikit_learn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    true_grades = rng.integers(0, 5, 300)
    predicted_grades = np.clip(true_grades + rng.integers(-1, 2, 300), 0, 4)

    expected = sklearn_metrics.cohen_kappa_score(predicted_grades, true_grades, weights="quadratic")
    assert quadratic_weighted_kappa(predicted_grades, true_grades) == pytest.approx(expected, abs=1e-12)


def test_kappa_unused_grades_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    true_grades = np.array([0, 1, 2, 2, 1, 0, 2])
    predicted_grades = np.array([0, 2, 2, 1, 1, 0, 2])

    expected = sklearn_metrics.cohen_kappa_score(
        predicted_grades, true_grades, labels=list(range(6)), weights="quadratic"
    )
    result = quadratic_weighted_kappa(predicted_grades, true_grades, num_grades=6)
    assert result == pytest.approx(expected, abs=1e-12)


def test_kappa_perfect_agreement_is_one():
    grades = np.array([0, 1, 2, 3, 3, 1])
    assert quadratic_weighted_kappa(grades, grades.copy()) == pytest.approx(1.0)


def test_kappa_single_shared_grade_is_nan():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(quadratic_weighted_kappa(np.full(4, 2), np.full(4, 2)))


@pytest.mark.parametrize(
    ("predicted", "true", "num_grades", "message"),
    [
        ([0, 1, 5], [0, 1, 2], 5, "expected 0 .. 4"),
        ([0, -1, 2], [0, 1, 2], None, "range from -1"),
        ([0.5, 1.0], [0, 1], None, "non-integer"),
        ([1], [1], None, "at least 2"),
    ],
)
def test_kappa_invalid_grades_raise(predicted, true, num_grades, message):
    with pytest.raises(ValueError, match=message):
        quadratic_weighted_kappa(np.array(predicted), np.array(true), num_grades)


def test_scores_to_grades_bins_and_edges():
    scores = np.array([0.0, 0.199, 0.2, 0.5, 0.79, 0.8, 0.999, 1.0, np.nan])
    grades = scores_to_grades(scores, 5)

    assert grades.tolist() == [0, 0, 1, 2, 3, 4, 4, 4, -1]
    assert grades.dtype == np.int64


@pytest.mark.parametrize(
    ("scores", "num_grades", "message"),
    [([0.5, 1.2], 4, "outside"), ([0.5], 0, "num_grades=0")],
)
def test_scores_to_grades_invalid_input_raises(scores, num_grades, message):
    with pytest.raises(ValueError, match=message):
        scores_to_grades(np.array(scores), num_grades)
