"""Evaluation plots: predicted against true scores, and Bland-Altman agreement plots.

Figures are drawn with matplotlib's non-interactive Agg canvas, so no window opens and
no display is needed. Each PNG is written to a temporary file and moved into place.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from facepad.io_utils import atomic_write_bytes
from facepad.metrics import LIMITS_OF_AGREEMENT_SD, paired_scores

_logger = logging.getLogger(__name__)

_FIGURE_SIZE_INCHES = (5.5, 5.0)
_DPI = 120
_MARKERS = ("o", "s", "^", "D", "v")


def plot_predicted_vs_true(
    predicted: np.ndarray,
    true: np.ndarray,
    title: str,
    path: str | os.PathLike[str],
    groups: Sequence[str] | None = None,
) -> None:
    """Write a PNG scatter plot of predicted against true scores with the identity line.

    Both axes span [0, 1]. Pairs with a NaN are left out. `groups` gives one name per
    pair (for example the region side); each group gets its own colour and legend entry.
    """
    predicted_values, true_values, group_names = _labelled_pairs(predicted, true, groups)

    figure = Figure(figsize=_FIGURE_SIZE_INCHES, dpi=_DPI)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="identity (y = x)")
    _scatter_groups(axes, true_values, predicted_values, group_names)

    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_aspect("equal")
    axes.set_xlabel("true score")
    axes.set_ylabel("predicted score")
    axes.set_title(f"{title} (n = {len(true_values)})")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    _save_png(figure, path)


def plot_bland_altman(
    predicted: np.ndarray,
    true: np.ndarray,
    title: str,
    path: str | os.PathLike[str],
    groups: Sequence[str] | None = None,
) -> None:
    """Write a PNG Bland-Altman plot: the mean of each pair against predicted - true.

    Horizontal lines mark the bias (mean difference) and the limits of agreement, the
    bias plus and minus 1.96 standard deviations of the differences. Pairs with a NaN are
    left out. `groups` works as in `plot_predicted_vs_true`.
    """
    predicted_values, true_values, group_names = _labelled_pairs(predicted, true, groups)
    means = (predicted_values + true_values) / 2
    differences = predicted_values - true_values

    figure = Figure(figsize=_FIGURE_SIZE_INCHES, dpi=_DPI)
    axes = figure.add_subplot()
    axes.axhline(0, color="black", linewidth=0.8)
    _scatter_groups(axes, means, differences, group_names)

    if len(differences) >= 2:
        bias = float(differences.mean())
        spread = LIMITS_OF_AGREEMENT_SD * float(differences.std(ddof=1))
        axes.axhline(bias, color="tab:red", linestyle="-", label=f"bias {bias:+.3f}")
        axes.axhline(
            bias + spread, color="tab:red", linestyle="--",
            label=f"limits of agreement {bias - spread:+.3f} .. {bias + spread:+.3f}",
        )
        axes.axhline(bias - spread, color="tab:red", linestyle="--")
    else:
        _logger.warning("Bland-Altman plot %s has %d pair(s); bias and limits need 2", path, len(differences))

    axes.set_xlim(0, 1)
    largest_difference = float(np.abs(differences).max()) if len(differences) else 0.0
    half_height = max(0.1, 1.15 * max(largest_difference, _limit_extent(differences)))
    axes.set_ylim(-half_height, half_height)
    axes.set_xlabel("mean of predicted and true score")
    axes.set_ylabel("predicted - true score")
    axes.set_title(f"{title} (n = {len(differences)})")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small", framealpha=0.9)
    _save_png(figure, path)


def _labelled_pairs(
    predicted: np.ndarray, true: np.ndarray, groups: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return the pairs without NaN, with their group names, raising ValueError on bad shapes."""
    predicted_values, true_values = paired_scores(predicted, true)
    group_names = None
    if groups is not None:
        group_names = np.asarray(groups, dtype=str)
        if group_names.shape != predicted_values.shape:
            raise ValueError(
                f"groups has {len(group_names)} names for {len(predicted_values)} pairs; expected one per pair"
            )

    labelled = ~(np.isnan(predicted_values) | np.isnan(true_values))
    if group_names is not None:
        group_names = group_names[labelled]
    return predicted_values[labelled], true_values[labelled], group_names


def _scatter_groups(axes, x: np.ndarray, y: np.ndarray, group_names: np.ndarray | None) -> None:
    if group_names is None:
        axes.scatter(x, y, s=14, alpha=0.6, color="tab:blue", edgecolors="none", clip_on=False)
        return
    for index, name in enumerate(sorted(set(group_names.tolist()))):
        members = group_names == name
        axes.scatter(
            x[members], y[members], s=14, alpha=0.6, edgecolors="none", clip_on=False,
            marker=_MARKERS[index % len(_MARKERS)], label=name,
        )


def _limit_extent(differences: np.ndarray) -> float:
    """Return how far the limits of agreement reach from 0, or 0 with fewer than 2 pairs."""
    if len(differences) < 2:
        return 0.0
    bias = float(differences.mean())
    return abs(bias) + LIMITS_OF_AGREEMENT_SD * float(differences.std(ddof=1))


def _save_png(figure: Figure, path: str | os.PathLike[str]) -> None:
    """Render the figure to PNG and write it to `path` atomically."""
    FigureCanvasAgg(figure)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")

    atomic_write_bytes(path, buffer.getvalue())
