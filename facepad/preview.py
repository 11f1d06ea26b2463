"""Preview images: the photo with its landmarks and labelled region outlines.

A preview lets a person check by eye that each region sits on the right anatomy and on
the right side of the face: "left" labels must appear on the viewer's right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from facepad.landmarks import FaceLandmarks
from facepad.regions import REGION_SIDES, REGION_TYPES, SIDES, region_polygon, split_region_side

# Outline colours (RGB) per region type; both sides of a region share a colour.
REGION_COLORS = {"cheek": (255, 140, 0), "undereye": (40, 220, 255)}
LANDMARK_COLOR = (200, 255, 200)
FLAG_COLOR = (255, 80, 80)

_FONT = cv2.FONT_HERSHEY_SIMPLEX

# Fixed-point bits for sub-pixel drawing with OpenCV.
_SHIFT = 4


def draw_regions(
    image: np.ndarray,
    landmarks: FaceLandmarks,
    labels: Mapping[str, str] | None = None,
    flags: Sequence[str] | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """Draw the landmarks as dots and each region side as a labelled outline.

    `labels` maps region side names to an extra line of text drawn under the name (a
    score, for example). `flags` are drawn as lines of text in the top-left corner.
    A photo whose longer side exceeds `max_side` is downscaled first. Returns a new RGB
    uint8 image; `image` is not changed.
    """
    canvas, factor = _prepare_canvas(image, max_side)
    height, width = canvas.shape[:2]
    # Landmark coordinates put pixel i at [i, i + 1]; OpenCV draws pixel i at i.
    points = landmarks.points[:, :2] * factor - 0.5
    unit = max(height, width) / 500.0
    thickness = max(1, round(unit))
    font_scale = 0.38 * unit

    for x, y in points:
        cv2.circle(
            canvas, _fixed((x, y)), round(max(0.8, 0.6 * unit) * 2**_SHIFT), LANDMARK_COLOR, -1, cv2.LINE_AA, _SHIFT
        )

    for name in REGION_SIDES:
        region, _ = split_region_side(name)
        polygon = points[region_polygon(name)]
        cv2.polylines(canvas, [_fixed(polygon)], True, REGION_COLORS[region], thickness + 1, cv2.LINE_AA, _SHIFT)

    # Labels sit beside the face, the subject's left on the viewer's right, each joined
    # to its region by a line. They never hide a region, and a region on the wrong side
    # shows as a line across the face.
    face_left, face_right = points[:, 0].min(), points[:, 0].max()
    gap = 6 * unit
    for side in SIDES:
        next_top = -np.inf
        # Top to bottom, so that each label can be pushed below the one above it.
        for region in sorted(REGION_TYPES, key=lambda region: points[region_polygon(f"{region}_{side}"), 1].mean()):
            name = f"{region}_{side}"
            polygon = points[region_polygon(name)]
            lines = [name] + ([labels[name]] if labels and name in labels else [])
            block_width, block_height = _text_block_size(lines, font_scale)
            left = face_right + gap if side == "left" else face_left - gap - block_width
            left = float(np.clip(left, 0, max(0, width - block_width)))
            top = max(polygon[:, 1].mean() - block_height / 2, next_top)
            next_top = top + block_height + gap
            anchor_x = left if side == "left" else left + block_width
            cv2.line(
                canvas,
                _fixed(polygon.mean(axis=0)),
                _fixed((anchor_x, top + block_height / 2)),
                REGION_COLORS[region],
                1,
                cv2.LINE_AA,
                _SHIFT,
            )
            _draw_text_block(canvas, lines, (left, top), font_scale, REGION_COLORS[region])

    if flags:
        _draw_text_block(canvas, list(flags), (4 * unit, 4 * unit), font_scale, FLAG_COLOR)
    return canvas


def _prepare_canvas(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    longer = max(height, width)
    if max_side is None or longer <= max_side:
        return image.copy(), 1.0
    factor = max_side / longer
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), factor


def _fixed(points) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * 2**_SHIFT).astype(np.int32)


def _text_block_size(lines: list[str], font_scale: float) -> tuple[float, float]:
    thickness = _text_thickness(font_scale)
    sizes = [cv2.getTextSize(line, _FONT, font_scale, thickness)[0] for line in lines]
    line_height = max(size[1] for size in sizes) * 1.6
    return max(size[0] for size in sizes), line_height * len(lines)


def _text_thickness(font_scale: float) -> int:
    return max(1, round(font_scale * 2))


def _draw_text_block(
    canvas: np.ndarray, lines: list[str], top_left: tuple[float, float], font_scale: float, color
) -> None:
    """Draw lines of text on a darkened box whose top-left corner is `top_left`."""
    thickness = _text_thickness(font_scale)
    block_width, block_height = _text_block_size(lines, font_scale)
    line_height = block_height / len(lines)
    left, top = top_left
    pad = 2 * thickness
    height, width = canvas.shape[:2]
    x0, y0 = max(0, int(left - pad)), max(0, int(top - pad))
    x1, y1 = min(width, int(left + block_width + pad)), min(height, int(top + block_height + pad))
    if x1 > x0 and y1 > y0:
        # Darken the box behind the text so that it reads on any skin tone.
        canvas[y0:y1, x0:x1] = (canvas[y0:y1, x0:x1] * 0.45).astype(np.uint8)
    for index, line in enumerate(lines):
        baseline = int(top + line_height * (index + 1) - line_height * 0.3)
        cv2.putText(canvas, line, (int(left), baseline), _FONT, font_scale, color, thickness, cv2.LINE_AA)
