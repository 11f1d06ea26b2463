"""Facial regions as landmark polygons, and the 478-point mirror permutation.

Sides are the subject's: "left" is the subject's left, the eye ringed by landmarks 263
and 362, which appears on the viewer's right. Only the left polygons are written down,
in `_LEFT_POLYGONS`. Each right polygon is the left one mapped through the mirror
permutation, so the two sides are exact mirrors by construction.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from facepad.landmarks import NUM_LANDMARKS

REGION_TYPES = ("cheek", "undereye")
SIDES = ("left", "right")
REGION_SIDES = ("cheek_left", "cheek_right", "undereye_left", "undereye_right")

# Increase when a polygon changes, so that caches and checkpoints made with the old
# table can be recognised.
REGION_TABLE_VERSION = 1

# Eye corners (outer, inner) of each side; their midpoints define the eye line and the
# inter-ocular distance.
EYE_CORNERS = {"left": (263, 362), "right": (33, 133)}

# Tip of the nose, on the facial midline.
NOSE_TIP = 1

# Polygons of the subject's left side, as landmark indices in drawing order.
_LEFT_POLYGONS: dict[str, tuple[int, ...]] = {
    # Malar fat pad: below the lid-cheek junction, lateral to the nasolabial fold, above
    # the level of the nostril base.
    "cheek": (350, 349, 348, 347, 346, 280, 425, 423, 371, 355, 277),
    # Lower-eyelid fat pads: from below the lower lash line down to the lid-cheek junction,
    # inner to outer eye corner.
    "undereye": (362, 382, 381, 380, 374, 373, 390, 249, 263, 359, 261, 346, 347, 348, 349, 350, 357, 453, 463),
}


def split_region_side(name: str) -> tuple[str, str]:
    """Split a region side name such as "cheek_left" into ("cheek", "left").

    Raises:
        ValueError: the name is not one of `REGION_SIDES`.
    """
    if name not in REGION_SIDES:
        raise ValueError(f"unknown region side {name!r}; expected one of {', '.join(REGION_SIDES)}")
    region, side = name.rsplit("_", 1)
    return region, side


def region_polygon(name: str) -> np.ndarray:
    """Return the landmark indices of a region side's polygon, in drawing order.

    Right polygons are the left ones mapped through `mirror_permutation`, so their vertex
    order runs the other way round on screen.
    """
    return _polygons()[name].copy()


def mirror_permutation() -> np.ndarray:
    """Return the [478] int64 landmark mirror permutation.

    `perm[i]` is the landmark that mirrors landmark i across the facial midline;
    `perm[perm[i]] == i`, and midline landmarks map to themselves.
    """
    return _mirror_permutation().copy()


def eye_centers(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the (left, right) eye centres, each the midpoint of the eye's two corners."""
    left = points[list(EYE_CORNERS["left"])].mean(axis=0)
    right = points[list(EYE_CORNERS["right"])].mean(axis=0)
    return left, right


def interocular_distance(points: np.ndarray) -> float:
    """Return the 3D distance between the eye centres, in pixels.

    Depth is included (z shares the pixel scale of x), so the distance shrinks far less
    than its image-plane projection when the head turns.
    """
    left, right = eye_centers(points)
    return float(np.linalg.norm(left - right))


@functools.cache
def _mirror_permutation() -> np.ndarray:
    text = resources.files("facepad").joinpath("data", "mirror_permutation.txt").read_text(encoding="utf-8")
    table = np.loadtxt(text.splitlines(), dtype=np.int64, ndmin=2)
    permutation = table[:, 1]
    if not np.array_equal(table[:, 0], np.arange(NUM_LANDMARKS)):
        raise RuntimeError("facepad/data/mirror_permutation.txt is damaged; reinstall facepad")
    return permutation


@functools.cache
def _polygons() -> dict[str, np.ndarray]:
    permutation = _mirror_permutation()
    polygons = {}
    for region, indices in _LEFT_POLYGONS.items():
        left = np.array(indices, dtype=np.int64)
        polygons[f"{region}_left"] = left
        polygons[f"{region}_right"] = permutation[left]
    return polygons
