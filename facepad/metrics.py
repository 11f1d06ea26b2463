"""Retrieval and agreement metrics for embeddings and 0-1 scores.

Retrieval metrics measure how well embeddings group crops of the same class: every crop
is a query against all other crops. Agreement metrics compare predicted scores with
reference labels (error, correlation, intraclass correlation, Bland-Altman limits) and
predicted grades with reference grades (quadratic weighted kappa).

The functions take numpy arrays, or anything `np.asarray` accepts. Torch tensors are
detached and copied to the CPU first, so this module does not import torch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

_logger = logging.getLogger(__name__)

# One chunk of queries is scored against all rows at once, so this many similarity entries
# per chunk bound the working memory. For M = 20000 rows a chunk is about 400 queries, and
# the peak measured with D = 128 float32 was 0.4 GB above the input, with all rows in one class.
_CHUNK_ENTRIES = 2**23

# Bland-Altman limits of agreement: bias plus or minus this many standard deviations
# of the differences, which covers 95 % of differences when they are normally distributed.
LIMITS_OF_AGREEMENT_SD = 1.96

ICC_FORM = (
    "ICC(A,1): two-way random effects, absolute agreement, single rater "
    "(Shrout & Fleiss 1979 ICC(2,1); McGraw & Wong 1996 ICC(A,1))"
)


def to_numpy(values: Any, dtype: type | None = None) -> np.ndarray:
    """Convert an array-like or a torch tensor (on any device, with or without grad) to numpy."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


# ---------------------------------------------------------------------------------------
# Retrieval


def retrieval_metrics(
    embeddings: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int] = (1, 2, 4, 8),
    normalize: bool = True,
    chunk_rows: int | None = None,
) -> dict[str, float]:
    """Compute leave-one-out retrieval metrics of embeddings [M, D] with class labels [M].

    Each row is a query whose neighbours are all other rows, ranked by cosine similarity
    (by dot product when `normalize` is False). Labels are compared for equality, so the
    caller drops unlabelled rows first. Returned keys:

    - "precision_at_1": fraction of queries whose nearest neighbour has their class;
    - "map_at_r": MAP@R (Musgrave, Belongie and Lim 2020, "A Metric Learning Reality
      Check"). With R the number of other rows of the query's class, it is the mean over
      the first R neighbours of precision@i at each neighbour i of the query's class,
      divided by R;
    - "recall_at_K" for each K in `ks`: fraction of queries with at least one neighbour
      of their class among the K nearest (K is capped at M - 1);
    - "num_queries": queries scored. A query whose class has no other row is skipped
      and counted in "num_skipped_queries".

    All metrics are means over queries. They are NaN when no query can be scored.
    Neighbours with equal similarity are ranked in an unspecified but repeatable order.
    `chunk_rows` sets how many queries are scored at once; by default a chunk contains
    about 8 million similarities, which keeps M = 20000 within a few hundred MB.

    Raises ValueError for mismatched shapes, non-finite embeddings, a zero embedding
    when `normalize` is True, or a K below 1.
    """
    vectors = to_numpy(embeddings)
    classes = to_numpy(labels)
    ks = [int(k) for k in ks]
    _validate_retrieval_input(vectors, classes, ks)
    vectors = _prepare_vectors(vectors, normalize)

    num_rows = len(classes)
    _, class_index, class_sizes = np.unique(classes, return_inverse=True, return_counts=True)
    class_index = class_index.reshape(-1)
    # R per row: the other rows of its class.
    relevant_counts = class_sizes[class_index] - 1
    query_rows = np.flatnonzero(relevant_counts > 0)

    result: dict[str, float] = {
        "num_queries": int(len(query_rows)),
        "num_skipped_queries": int(num_rows - len(query_rows)),
    }
    metric_names = ["precision_at_1", "map_at_r", *(f"recall_at_{k}" for k in ks)]
    if len(query_rows) == 0:
        _logger.warning(
            "retrieval metrics are undefined: none of the %d rows shares its class with another row",
            num_rows,
        )
        result.update({name: float("nan") for name in metric_names})
        return result

    capped_ks = [min(k, num_rows - 1) for k in ks]
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_ENTRIES // num_rows)
    elif chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows} is invalid; expected a positive number of queries")

    sums = dict.fromkeys(metric_names, 0.0)
    for start in range(0, len(query_rows), chunk_rows):
        rows = query_rows[start : start + chunk_rows]
        is_relevant = _rank_neighbours(vectors, class_index, rows, relevant_counts, max(capped_ks))
        r = relevant_counts[rows]

        sums["precision_at_1"] += float(is_relevant[:, 0].sum())
        for k, capped_k in zip(ks, capped_ks):
            sums[f"recall_at_{k}"] += float(is_relevant[:, :capped_k].any(axis=1).sum())

        # MAP@R: precision@i counts only at relevant neighbours i within the first R.
        ranks = np.arange(1, is_relevant.shape[1] + 1)
        within_r = ranks[None, :] <= r[:, None]
        hits = is_relevant & within_r
        precision_at_i = np.cumsum(hits, axis=1) / ranks[None, :]
        sums["map_at_r"] += float(((precision_at_i * hits).sum(axis=1) / r).sum())

    result.update({name: sums[name] / len(query_rows) for name in metric_names})
    return result


def _validate_retrieval_input(vectors: np.ndarray, classes: np.ndarray, ks: list[int]) -> None:
    if vectors.ndim != 2:
        raise ValueError(f"embeddings have shape {vectors.shape}; expected a 2-D array [M, D]")
    if classes.ndim != 1 or len(classes) != len(vectors):
        raise ValueError(
            f"labels have shape {classes.shape} but embeddings have {len(vectors)} rows; "
            "expected one label per row"
        )
    for k in ks:
        if k < 1:
            raise ValueError(f"K={k} in ks is invalid; recall@K needs K >= 1")
    if not np.isfinite(vectors).all():
        bad_row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise ValueError(f"embedding row {bad_row} contains NaN or infinity; expected finite values")


def _prepare_vectors(vectors: np.ndarray, normalize: bool) -> np.ndarray:
    """Return float32 (or float64 when given) vectors, scaled to unit length when `normalize`."""
    dtype = np.float64 if vectors.dtype == np.float64 else np.float32
    vectors = vectors.astype(dtype, copy=False)
    if not normalize:
        return vectors
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    zero_rows = np.flatnonzero(norms[:, 0] == 0)
    if len(zero_rows) > 0:
        raise ValueError(
            f"embedding row {int(zero_rows[0])} is all zeros, so its cosine similarity is "
            "undefined; pass normalize=False to rank by dot product"
        )
    return vectors / norms


def _rank_neighbours(
    vectors: np.ndarray,
    class_index: np.ndarray,
    rows: np.ndarray,
    relevant_counts: np.ndarray,
    min_depth: int,
) -> np.ndarray:
    """Return [len(rows), depth] booleans: whether each query's i-th neighbour shares its class.

    The depth covers every query's R and `min_depth`. A partial sort finds the nearest
    `depth` rows, so the cost stays near O(M) per query unless R is large.
    """
    num_rows = len(vectors)
    depth = int(max(min_depth, relevant_counts[rows].max()))

    similarities = vectors[rows] @ vectors.T
    # The query itself is never its own neighbour.
    similarities[np.arange(len(rows)), rows] = -np.inf

    if depth < num_rows - 1:
        nearest = np.argpartition(-similarities, depth - 1, axis=1)[:, :depth]
    else:
        nearest = np.tile(np.arange(num_rows), (len(rows), 1))
    nearest_similarities = np.take_along_axis(similarities, nearest, axis=1)
    order = np.argsort(-nearest_similarities, axis=1, kind="stable")[:, :depth]
    nearest = np.take_along_axis(nearest, order, axis=1)

    return class_index[nearest] == class_index[rows][:, None]


# ---------------------------------------------------------------------------------------
# Agreement of scores


def paired_scores(predicted: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return predicted and true scores as float64 arrays, raising ValueError unless both are 1-D and equal in length."""
    predicted_values = to_numpy(predicted, dtype=np.float64)
    true_values = to_numpy(true, dtype=np.float64)
    if predicted_values.ndim != 1 or predicted_values.shape != true_values.shape:
        raise ValueError(
            f"predicted has shape {predicted_values.shape} and true has shape "
            f"{true_values.shape}; expected two 1-D arrays of the same length"
        )
    return predicted_values, true_values


def agreement_metrics(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Compare predicted scores with reference scores, pair by pair.

    Pairs where either value is NaN (unlabelled) are dropped first. Returned keys:
    "n" (pairs used), "mae", "rmse", "pearson_r", "spearman_rho" (Pearson r of average
    ranks), "icc" (the form in `ICC_FORM`), and the Bland-Altman "bias" (mean of
    predicted - true) with "loa_low" and "loa_high", the bias minus and plus 1.96
    standard deviations (ddof=1) of the differences.

    A correlation or ICC that is undefined, for example because one side is constant,
    is NaN, and no warning is emitted.

    Raises ValueError when the inputs differ in shape, are not 1-D, contain infinity,
    or leave fewer than 2 pairs.
    """
    predicted_values, true_values = paired_scores(predicted, true)
    if np.isinf(predicted_values).any() or np.isinf(true_values).any():
        raise ValueError("predicted or true scores contain infinity; expected finite values or NaN")

    labelled = ~(np.isnan(predicted_values) | np.isnan(true_values))
    predicted_values = predicted_values[labelled]
    true_values = true_values[labelled]
    n = len(predicted_values)
    if n < 2:
        raise ValueError(
            f"{n} pair(s) of predicted and true scores without NaN; agreement metrics need at least 2"
        )

    differences = predicted_values - true_values
    bias = float(differences.mean())
    spread = LIMITS_OF_AGREEMENT_SD * float(differences.std(ddof=1))
    return {
        "n": n,
        "mae": float(np.abs(differences).mean()),
        "rmse": float(np.sqrt(np.mean(differences**2))),
        "pearson_r": _pearson(predicted_values, true_values),
        "spearman_rho": _pearson(rankdata(predicted_values), rankdata(true_values)),
        "icc": intraclass_correlation(np.stack([predicted_values, true_values], axis=1)),
        "bias": bias,
        "loa_low": bias - spread,
        "loa_high": bias + spread,
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Return Pearson's r, or NaN when either input is constant."""
    # Checked on the inputs, because the centred values of a constant input may be a few
    # rounding errors away from 0 and would give an arbitrary r.
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    x_centered = x - x.mean()
    y_centered = y - y.mean()
    denominator = np.sqrt(np.sum(x_centered**2) * np.sum(y_centered**2))
    if denominator == 0:
        return float("nan")
    r = float(np.sum(x_centered * y_centered) / denominator)
    return min(1.0, max(-1.0, r))


def intraclass_correlation(ratings: np.ndarray) -> float:
    """Compute ICC(A,1) of ratings [n targets, k raters]; see `ICC_FORM`.

    From the two-way ANOVA mean squares of targets (MSR), raters (MSC) and residual
    (MSE): ICC = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n).
    Returns NaN when every rating is equal, and when the denominator is not positive.
    Raises ValueError for fewer than 2 targets or raters, or for NaN ratings.
    """
    values = to_numpy(ratings, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < 2:
        raise ValueError(
            f"ratings have shape {values.shape}; expected [targets, raters] with at least 2 of each"
        )
    if not np.isfinite(values).all():
        raise ValueError("ratings contain NaN or infinity; drop incomplete targets first")

    if np.ptp(values) == 0:
        return float("nan")

    n, k = values.shape
    grand_mean = values.mean()
    target_means = values.mean(axis=1)
    rater_means = values.mean(axis=0)

    ms_targets = k * np.sum((target_means - grand_mean) ** 2) / (n - 1)
    ms_raters = n * np.sum((rater_means - grand_mean) ** 2) / (k - 1)
    residuals = values - target_means[:, None] - rater_means[None, :] + grand_mean
    ms_error = np.sum(residuals**2) / ((n - 1) * (k - 1))

    denominator = ms_targets + (k - 1) * ms_error + k * (ms_raters - ms_error) / n
    if denominator <= 0:
        return float("nan")
    return float((ms_targets - ms_error) / denominator)


# ---------------------------------------------------------------------------------------
# Agreement of grades


def quadratic_weighted_kappa(
    predicted_grades: np.ndarray,
    true_grades: np.ndarray,
    num_grades: int | None = None,
) -> float:
    """Compute Cohen's kappa with quadratic weights between two integer gradings.

    Grades are 0 .. num_grades - 1. With `num_grades` None it is one more than the
    largest grade seen. The disagreement weight of grades i and j is (i - j) squared.
    Returns NaN when the expected disagreement is 0, which happens when both gradings
    use one and the same grade throughout.
    Raises ValueError for mismatched shapes, fewer than 2 pairs, non-integer grades, or
    grades outside 0 .. num_grades - 1.
    """
    predicted_values = to_numpy(predicted_grades)
    true_values = to_numpy(true_grades)
    if predicted_values.ndim != 1 or predicted_values.shape != true_values.shape:
        raise ValueError(
            f"predicted grades have shape {predicted_values.shape} and true grades "
            f"{true_values.shape}; expected two 1-D arrays of the same length"
        )
    if len(predicted_values) < 2:
        raise ValueError(f"{len(predicted_values)} pair(s) of grades; kappa needs at least 2")
    predicted_values = _as_grades(predicted_values, "predicted")
    true_values = _as_grades(true_values, "true")

    largest = int(max(predicted_values.max(), true_values.max()))
    if num_grades is None:
        num_grades = largest + 1
    lowest = int(min(predicted_values.min(), true_values.min()))
    if lowest < 0 or largest >= num_grades:
        raise ValueError(
            f"grades range from {lowest} to {largest}; expected 0 .. {num_grades - 1} "
            f"for num_grades={num_grades}"
        )

    observed = np.zeros((num_grades, num_grades), dtype=np.float64)
    np.add.at(observed, (predicted_values, true_values), 1.0)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / observed.sum()
    grade_range = np.arange(num_grades)
    weights = (grade_range[:, None] - grade_range[None, :]) ** 2

    expected_disagreement = float(np.sum(weights * expected))
    if expected_disagreement == 0:
        return float("nan")
    return 1.0 - float(np.sum(weights * observed)) / expected_disagreement


def _as_grades(values: np.ndarray, name: str) -> np.ndarray:
    """Return integer grades, raising ValueError for NaN or fractional values."""
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    as_float = values.astype(np.float64)
    if not np.isfinite(as_float).all() or not np.all(as_float == np.round(as_float)):
        raise ValueError(f"{name} grades contain non-integer values; expected whole numbers")
    return as_float.astype(np.int64)


def scores_to_grades(scores: np.ndarray, num_grades: int) -> np.ndarray:
    """Map scores in [0, 1] to grades 0 .. num_grades - 1 in equal-width bins.

    Grade g covers [g / num_grades, (g + 1) / num_grades), and a score of exactly 1
    falls into the top grade. NaN (unlabelled) becomes -1.
    Raises ValueError for num_grades below 1 or scores outside [0, 1].
    """
    if int(num_grades) != num_grades or num_grades < 1:
        raise ValueError(f"num_grades={num_grades} is invalid; expected a whole number >= 1")
    num_grades = int(num_grades)
    values = to_numpy(scores, dtype=np.float64)
    labelled = ~np.isnan(values)
    outside = labelled & ((values < 0) | (values > 1))
    if outside.any():
        first = int(np.flatnonzero(outside.reshape(-1))[0])
        raise ValueError(f"score {values.reshape(-1)[first]} at index {first} is outside [0, 1]")

    grades = np.full(values.shape, -1, dtype=np.int64)
    grades[labelled] = np.minimum(np.floor(values[labelled] * num_grades), num_grades - 1)
    return grades
