"""The demo set: real portraits with local volume warps whose magnitudes are the labels.

No public data set pairs face photos with fat-pad grades, so `make_demo_set` makes one.
It detects the landmarks of every source portrait once and writes variants in which each
region side (`cheek_left`, `cheek_right`, `undereye_left`, `undereye_right`) gets its own
magnitude in [0, 1]:

- cheek: the malar fat pad swells. The skin over it is magnified and pushed outward, and
  shaded as a dome lit from above (lighter on top, darker along its lower border), with a
  soft shadow in the groove beneath it.
- under-eye: a bag grows below the lower lid. The skin below the lash line is magnified
  and pushed down, shaded as a dome, and the lid-cheek groove beneath the bag darkens.

Each effect is a smooth field with compact support around the region polygon, so pixels
outside that support keep their exact values, and magnitude 0 leaves the photo unchanged.
Displacements, dome height and groove darkening all grow linearly with the magnitude.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facepad.errors import FaceError, FacepadError, ImageError
from facepad.io_utils import atomic_write_bytes, atomic_write_text
from facepad.landmarks import LandmarkDetector, create_detector
from facepad.loading import find_images, load_image
from facepad.quality import assess_quality
from facepad.regions import (
    REGION_SIDES,
    eye_centers,
    interocular_distance,
    region_polygon,
    split_region_side,
)

_logger = logging.getLogger(__name__)

# With the two default portraits: 128 photos, written in 1 to 5 s on two CPU cores.
DEFAULT_PER_FACE = 64
JPEG_QUALITY = 95
MANIFEST_NAME = "manifest.csv"
PREVIEW_NAME = "preview.png"
IMAGES_FOLDER = "images"
MANIFEST_COLUMNS = ("image", "subject", *REGION_SIDES)
LABEL_DECIMALS = 4

# A region ellipse with a semi-axis below this many inter-ocular distances comes from a
# polygon folded or collapsed by a turned head, and its photo is skipped.
MIN_SEMI_AXIS_IOD = 0.05

# Light falls on the face from above, at this angle from the viewing direction.
LIGHT_ELEVATION_DEGREES = 40.0

# The shading gain g becomes g ** exponent per RGB channel. Red light scatters furthest
# under the skin, so shadows on skin look warm, and equal gains would turn them grey.
SHADING_CHANNEL_EXPONENTS = np.array([0.7, 1.0, 1.15])


@dataclass(frozen=True)
class RegionWarp:
    """Strengths of one region type's swelling at magnitude 1.

    Every effect scales linearly with the magnitude. Lengths are in units of the region
    ellipse's semi-axes (see `RegionFrame`), so the warp follows the face's size and
    orientation.
    """

    support: float  # ellipse radius beyond which nothing changes
    lateral_scale: float  # widens (> 1) or narrows (< 1) every field along `lateral`
    magnification: float  # peak magnification at the centre is 1 / (1 - magnification)
    shift_lateral: float  # outward shift at the centre, in lateral semi-axes
    shift_down: float  # downward shift at the centre, in down semi-axes
    dome_height: float  # dome height, in down semi-axes (its shading brightens the top)
    groove_radius: float  # ellipse radius of the groove along the dome's lower border
    groove_width: float  # half-width of the groove, in ellipse radii
    groove_depth: float  # groove depth relative to the dome height
    groove_darkening: float  # fraction of brightness lost at the bottom of the groove
    lid_guard: bool  # keep the area above the polygon's top (the eye) unchanged


WARPS: dict[str, RegionWarp] = {
    "cheek": RegionWarp(
        support=1.5,
        lateral_scale=1.0,
        magnification=0.3,
        shift_lateral=0.15,
        shift_down=0.0,
        dome_height=0.45,
        groove_radius=1.15,
        groove_width=0.45,
        groove_depth=0.05,
        groove_darkening=0.18,
        lid_guard=False,
    ),
    "undereye": RegionWarp(
        support=1.6,
        lateral_scale=0.8,
        magnification=0.2,
        shift_lateral=0.0,
        shift_down=0.35,
        dome_height=0.4,
        groove_radius=1.15,
        groove_width=0.45,
        groove_depth=0.05,
        groove_darkening=0.3,
        lid_guard=True,
    ),
}


@dataclass(frozen=True)
class RegionFrame:
    """The ellipse with the area moments of one region polygon, in the face's orientation.

    `lateral` points away from the facial midline on this side and `down` from the eye
    line towards the chin, so a right-side frame is the mirror image of a left-side one.
    """

    center: np.ndarray  # [2] x, y in pixels
    lateral: np.ndarray  # [2] unit vector
    down: np.ndarray  # [2] unit vector
    semi_lateral: float  # semi-axis along `lateral`, in pixels
    semi_down: float  # semi-axis along `down`, in pixels


@dataclass(frozen=True)
class SourcePortrait:
    """A photo that variants are made from, loaded only when needed."""

    subject: str
    description: str  # path or package sample, for log messages
    load: Callable[[], np.ndarray]
    path: Path | None = None  # the photo file, when it is one


# --- Region geometry -----------------------------------------------------------------


def region_frame(points: np.ndarray, name: str) -> RegionFrame:
    """Fit the ellipse of a region side's polygon, oriented by the eye line.

    `points` are landmarks as [478, 2 or 3] pixels. The semi-axes are twice the standard
    deviations of the polygon's area along `lateral` and `down`, which is exact for an
    ellipse.
    """
    _, side = split_region_side(name)
    left_eye, right_eye = eye_centers(points[:, :2])
    eye_axis = (left_eye - right_eye) / interocular_distance(points)
    down = np.array([-eye_axis[1], eye_axis[0]])
    lateral = eye_axis if side == "left" else -eye_axis

    center, covariance = _polygon_moments(points[region_polygon(name), :2].astype(np.float64))
    variances = (lateral @ covariance @ lateral, down @ covariance @ down)
    # A polygon that folds over itself (a side turned away from the camera) can give a
    # negative or tiny variance.
    min_semi_axis = MIN_SEMI_AXIS_IOD * interocular_distance(points)
    if min(variances) <= (min_semi_axis / 2.0) ** 2:
        raise FaceError(f"the {name} polygon is folded or collapsed; the face is turned too far from the camera")
    semi_lateral, semi_down = (2.0 * float(np.sqrt(variance)) for variance in variances)
    return RegionFrame(center, lateral, down, semi_lateral, semi_down)


def _polygon_moments(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the centroid and the 2 x 2 covariance of a polygon's area (either winding)."""
    # Shift to the first vertex so that the sums do not lose precision far from the origin.
    origin = vertices[0]
    x, y = (vertices - origin).T
    x_next, y_next = np.roll(x, -1), np.roll(y, -1)
    cross = x * y_next - x_next * y
    area = cross.sum() / 2.0
    if abs(area) < 1e-6:
        return origin, np.zeros((2, 2))
    center_x = ((x + x_next) * cross).sum() / (6.0 * area)
    center_y = ((y + y_next) * cross).sum() / (6.0 * area)
    xx = ((x * x + x * x_next + x_next * x_next) * cross).sum() / (12.0 * area)
    yy = ((y * y + y * y_next + y_next * y_next) * cross).sum() / (12.0 * area)
    xy = ((x * y_next + 2 * x * y + 2 * x_next * y_next + x_next * y) * cross).sum() / (24.0 * area)
    covariance = np.array(
        [[xx - center_x**2, xy - center_x * center_y], [xy - center_x * center_y, yy - center_y**2]]
    )
    return np.array([center_x, center_y]) + origin, covariance


# --- The warp --------------------------------------------------------------------------


def warp_regions(image: np.ndarray, points: np.ndarray, magnitudes: Mapping[str, float]) -> np.ndarray:
    """Return a copy of `image` in which each named region side swells by its magnitude.

    `image` is RGB uint8, `points` its [478, 3] landmarks in pixels, and `magnitudes`
    maps region side names to values in [0, 1]. Sides missing from it stay unchanged.

    Raises:
        ValueError: an unknown region side, or a magnitude outside [0, 1].
    """
    for name, magnitude in magnitudes.items():
        split_region_side(name)
        if not 0.0 <= magnitude <= 1.0:
            raise ValueError(f"magnitude {name}={magnitude} is outside [0, 1]")
    return _apply_warps(image, region_frames(points), magnitudes)


def region_frames(points: np.ndarray) -> dict[str, RegionFrame]:
    """Fit `region_frame` for every region side."""
    return {name: region_frame(points, name) for name in REGION_SIDES}


def _apply_warps(image: np.ndarray, frames: Mapping[str, RegionFrame], magnitudes: Mapping[str, float]) -> np.ndarray:
    result = image.copy()
    for name in REGION_SIDES:
        magnitude = float(magnitudes.get(name, 0.0))
        if magnitude > 0.0:
            region, _ = split_region_side(name)
            _warp_region_in_place(result, frames[name], WARPS[region], magnitude)
    return result


@dataclass(frozen=True)
class _RegionFields:
    """The inverse map and shading gain of one region warp over its support box."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive
    source_x: np.ndarray  # where each output pixel reads the photo, in cv2.remap coordinates
    source_y: np.ndarray
    gain: np.ndarray  # brightness factor before the per-channel exponents
    changed: np.ndarray  # bool, true inside the support (all other pixels keep their values)


def _region_fields(frame: RegionFrame, warp: RegionWarp, magnitude: float, shape: Sequence[int]) -> _RegionFields | None:
    box = _support_box(frame, warp, shape)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    # Landmarks put pixel i's centre at i + 0.5, but cv2.remap puts it at i.
    offset_x = xs + 0.5 - frame.center[0]
    offset_y = ys + 0.5 - frame.center[1]
    u = (offset_x * frame.lateral[0] + offset_y * frame.lateral[1]) / (frame.semi_lateral * warp.lateral_scale)
    v = (offset_x * frame.down[0] + offset_y * frame.down[1]) / frame.semi_down
    radius = np.sqrt(u * u + v * v)

    # (1 - r²/R²)³ is smooth (C²) at r = R and exactly 0 beyond it.
    bump = np.clip(1.0 - (radius / warp.support) ** 2, 0.0, None) ** 3
    inner = _smoothstep((warp.support - radius) / 0.3)
    lower_half = _smoothstep(v / 0.5)
    groove = np.exp(-(((radius - warp.groove_radius) / warp.groove_width) ** 2)) * lower_half * inner
    if warp.lid_guard:
        # Fades from 0 above the polygon's top (v = -1) to 1 towards its centre.
        guard = _smoothstep((v + 1.1) / 0.6)
        bump = bump * guard
        groove = groove * guard

    # Geometry as an inverse map: output pixel p reads the source at p - displacement.
    # Magnification pulls the source towards the centre, and the shift moves the whole dome.
    weight = magnitude * bump
    shift = _shift_at_center(frame, warp)
    source_x = xs - weight * (warp.magnification * offset_x + shift[0])
    source_y = ys - weight * (warp.magnification * offset_y + shift[1])

    # Shading: a height field (pixels towards the viewer) lit from above. A surface that
    # rises going down faces the light and brightens, and the groove below darkens further.
    height = magnitude * warp.dome_height * frame.semi_down * (bump - warp.groove_depth * groove)
    grad_y, grad_x = np.gradient(height)
    slope_down = grad_x * frame.down[0] + grad_y * frame.down[1]
    tan_elevation = np.tan(np.radians(LIGHT_ELEVATION_DEGREES))
    lambert = (1.0 + slope_down * tan_elevation) / np.sqrt(1.0 + grad_x**2 + grad_y**2)
    gain = lambert * (1.0 - magnitude * warp.groove_darkening * groove)

    changed = (bump > 0.0) | (groove > 0.0)
    return _RegionFields(box, source_x, source_y, gain, changed)


def _shift_at_center(frame: RegionFrame, warp: RegionWarp) -> np.ndarray:
    return (
        warp.shift_lateral * frame.semi_lateral * frame.lateral
        + warp.shift_down * frame.semi_down * frame.down
    )


def _warp_region_in_place(image: np.ndarray, frame: RegionFrame, warp: RegionWarp, magnitude: float) -> None:
    fields = _region_fields(frame, warp, magnitude, image.shape)
    if fields is None:
        return
    x0, y0, x1, y1 = fields.box

    # Sources stay within the shift (plus 2 pixels for bicubic taps) of the box, so only
    # that part of the photo is converted to float.
    margin = int(np.ceil(np.linalg.norm(_shift_at_center(frame, warp)))) + 3
    height, width = image.shape[:2]
    sx0, sy0 = max(x0 - margin, 0), max(y0 - margin, 0)
    sx1, sy1 = min(x1 + margin, width), min(y1 + margin, height)
    warped = cv2.remap(
        image[sy0:sy1, sx0:sx1].astype(np.float32),
        (fields.source_x - sx0).astype(np.float32),
        (fields.source_y - sy0).astype(np.float32),
        interpolation=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT_101,
    )

    channel_gain = fields.gain[..., None] ** SHADING_CHANNEL_EXPONENTS
    shaded = np.clip(np.rint(warped * channel_gain), 0, 255).astype(np.uint8)
    patch = image[y0:y1, x0:x1]
    patch[fields.changed] = shaded[fields.changed]


def _support_box(frame: RegionFrame, warp: RegionWarp, shape: Sequence[int]) -> tuple[int, int, int, int] | None:
    """Return the pixel box (x0, y0, x1, y1) holding the support ellipse, clipped to the image."""
    axis_lateral = frame.lateral * frame.semi_lateral * warp.lateral_scale * warp.support
    axis_down = frame.down * frame.semi_down * warp.support
    half = np.sqrt(axis_lateral**2 + axis_down**2)
    height, width = shape[:2]
    x0 = max(int(np.floor(frame.center[0] - half[0])) - 1, 0)
    y0 = max(int(np.floor(frame.center[1] - half[1])) - 1, 0)
    x1 = min(int(np.ceil(frame.center[0] + half[0])) + 1, width)
    y1 = min(int(np.ceil(frame.center[1] + half[1])) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# --- Labels ----------------------------------------------------------------------------


def draw_magnitudes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Draw [count, 4] magnitudes, one column per region side in `REGION_SIDES` order.

    Each column is stratified: it contains one value from each of the `count` equal bins
    of [0, 1], in its own random order. So every column covers [0, 1] evenly, and the
    columns are independent. Values are rounded to the manifest's 4 decimals, so the labels
    written are the magnitudes applied.
    """
    columns = [(rng.permutation(count) + rng.random(count)) / count for _ in REGION_SIDES]
    return np.round(np.stack(columns, axis=1), LABEL_DECIMALS)


def _subject_rng(seed: int, subject: str) -> np.random.Generator:
    """Return a generator that depends only on the seed and the subject, not on the order of the sources."""
    subject_key = int.from_bytes(hashlib.sha256(subject.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng([seed, subject_key])


# --- Source portraits ------------------------------------------------------------------


def default_portraits() -> list[SourcePortrait]:
    """Return the public-domain portraits that installed packages ship.

    matplotlib's `grace_hopper.jpg` is always there, because matplotlib is a dependency.
    scikit-image's `astronaut` (Eileen Collins) is added when scikit-image is installed.
    """
    import matplotlib.cbook

    grace_hopper = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    portraits = [
        SourcePortrait("grace_hopper", f"matplotlib sample {grace_hopper}", lambda: load_image(grace_hopper), path=grace_hopper)
    ]
    try:
        import skimage.data
    except ImportError:
        _logger.info("scikit-image is not installed; the demo set uses grace_hopper.jpg only")
    else:
        portraits.append(
            SourcePortrait("astronaut", "scikit-image sample astronaut", lambda: np.ascontiguousarray(skimage.data.astronaut()[..., :3]))
        )
    return portraits


def folder_portraits(faces_dir: str | os.PathLike) -> list[SourcePortrait]:
    """Return every photo under `faces_dir` (recursively) as a portrait.

    The subject id is the photo's path relative to `faces_dir` without its suffix
    ("men/001"). Two photos whose paths differ only in the suffix keep it in their ids
    ("men/001_png"), and an id that is still taken gets a counter ("men/001_png_2").

    Raises:
        ImageError: `faces_dir` is not a folder or contains no image file.
    """
    folder = Path(faces_dir)
    if not folder.is_dir():
        raise ImageError(f"faces folder {folder} not found; give a folder of face photos")
    files, _ = find_images([folder])
    if not files:
        raise ImageError(f"faces folder {folder} contains no image file; add JPEG or PNG photos")

    relative = [file.relative_to(folder) for file in files]
    stems = [path.with_suffix("").as_posix() for path in relative]
    stem_counts = Counter(stems)
    portraits = []
    subjects: set[str] = set()
    for file, path, stem in zip(files, relative, stems):
        subject = stem if stem_counts[stem] == 1 else f"{stem}_{path.suffix[1:].lower()}"
        # Photo names are built from subject ids, so a repeated id would overwrite photos.
        base, count = subject, 1
        while subject in subjects:
            count += 1
            subject = f"{base}_{count}"
        subjects.add(subject)
        portraits.append(SourcePortrait(subject, str(file), lambda file=file: load_image(file), path=file))
    return portraits


# --- Writing the set ---------------------------------------------------------------------


def make_demo_set(
    out_dir: str | os.PathLike,
    faces_dir: str | os.PathLike | None = None,
    per_face: int = DEFAULT_PER_FACE,
    seed: int = 0,
    detector: LandmarkDetector | None = None,
) -> Path:
    """Write a demo set to `out_dir` and return the path of its manifest.

    For each source portrait (`faces_dir` searched recursively, else `default_portraits`)
    the landmarks are detected once and `per_face` variants are written as
    `images/<subject>_<index>.jpg`, each with magnitudes from `draw_magnitudes`. Then come
    `preview.png` (the first usable portrait at 0, 0.5 and 1 per region side) and, last,
    `manifest.csv`, so an interrupted run never leaves a manifest that lists missing
    photos. A manifest from an earlier run is deleted first. The same arguments give
    byte-identical files (with the same Pillow, OpenCV and MediaPipe versions). A source
    that cannot be read, has no face or fails `assess_quality` is skipped and logged with
    the reason. `detector` defaults to `create_detector()`.

    Raises:
        FacepadError: `per_face` < 1 or `seed` < 0.
        ImageError: `faces_dir` is missing or contains no image file.
        FaceError: no source portrait gave a usable face.
    """
    if per_face < 1:
        raise FacepadError(f"per_face={per_face} is invalid; give at least 1 variant per face")
    if seed < 0:
        raise FacepadError(f"seed={seed} is invalid; give a seed of 0 or more")
    portraits = folder_portraits(faces_dir) if faces_dir is not None else default_portraits()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # When OUT lies inside the faces folder, photos of an earlier run are not sources.
    portraits = [portrait for portrait in portraits if not _is_inside(portrait.path, out)]
    if not portraits:
        raise ImageError(f"faces folder {faces_dir} contains no photo outside {out}; give a folder of face photos")
    manifest_path = out / MANIFEST_NAME
    if manifest_path.exists():
        _logger.info("Deleting the earlier manifest %s before writing new photos", manifest_path)
        manifest_path.unlink()

    rows: list[dict[str, str]] = []
    skipped: list[tuple[str, str]] = []
    preview_source: tuple[np.ndarray, np.ndarray] | None = None
    index_width = max(3, len(str(per_face - 1)))
    started = time.perf_counter()
    own_detector = detector is None
    if detector is None:
        detector = create_detector()
    try:
        for portrait in portraits:
            try:
                image = portrait.load()
                landmarks = detector.detect(image)
                # Photos that training would reject for pose or face size give no variants.
                assess_quality(landmarks)
                points = landmarks.points
                frames = region_frames(points)
            except (ImageError, FaceError) as error:
                _logger.warning("Skipping %s: %s", portrait.description, error)
                skipped.append((portrait.description, str(error)))
                continue
            if preview_source is None:
                preview_source = (image, points)

            magnitudes = draw_magnitudes(_subject_rng(seed, portrait.subject), per_face)
            for index, values in enumerate(magnitudes):
                labels = dict(zip(REGION_SIDES, values.tolist()))
                relative = Path(IMAGES_FOLDER, f"{portrait.subject}_{index:0{index_width}d}.jpg")
                (out / relative).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out / relative, _encode_jpeg(_apply_warps(image, frames, labels)))
                rows.append(
                    {
                        "image": relative.as_posix(),
                        "subject": portrait.subject,
                        **{name: f"{value:.{LABEL_DECIMALS}f}" for name, value in labels.items()},
                    }
                )
    finally:
        if own_detector:
            detector.close()

    if preview_source is None:
        reasons = "; ".join(f"{source}: {reason}" for source, reason in skipped)
        raise FaceError(f"no usable face among {len(portraits)} source photos ({reasons}); give --faces a folder of frontal portraits")
    elapsed = time.perf_counter() - started
    atomic_write_bytes(out / PREVIEW_NAME, _encode_png(render_preview(*preview_source)))
    _write_manifest(manifest_path, rows)

    subjects = len(portraits) - len(skipped)
    _logger.info(
        "Wrote %d photos of %d subjects in %.1f s (%.0f ms per photo) and %s",
        len(rows), subjects, elapsed, 1000.0 * elapsed / len(rows), manifest_path,
    )
    for source, reason in skipped:
        _logger.warning("Skipped %s: %s", source, reason)
    return manifest_path


def _is_inside(path: Path | None, folder: Path) -> bool:
    return path is not None and path.resolve().is_relative_to(folder.resolve())


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _encode_jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# --- Preview sheet -------------------------------------------------------------------------

PREVIEW_MAGNITUDES = (0.0, 0.5, 1.0)
_TILE = 240
_HEADER = 26
_CROP_SIDE_IOD = 1.0  # side of each preview crop, in inter-ocular distances
_OUTLINE_COLOR = (255, 220, 0)


def render_preview(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Render a sheet with one row per region side: the face with the region outlined,
    then crops around the region with only that side warped at 0, 0.5 and 1.

    Crops are not mirrored, so the subject's left side appears on the viewer's right.
    """
    iod = interocular_distance(points)
    frames = region_frames(points)
    face_min = points[:, :2].min(axis=0)
    face_max = points[:, :2].max(axis=0)
    face_center = (face_min + face_max) / 2.0
    face_side = 1.2 * float((face_max - face_min).max())

    rows = []
    for name in REGION_SIDES:
        overview = _crop_tile(image, face_center, face_side)
        scale = _TILE / face_side
        outline = (points[region_polygon(name), :2] - (face_center - face_side / 2.0)) * scale
        cv2.polylines(overview, [np.round(outline).astype(np.int32)], True, _OUTLINE_COLOR, 2, cv2.LINE_AA)
        tiles = [_with_header(overview, name)]
        for magnitude in PREVIEW_MAGNITUDES:
            warped = _apply_warps(image, frames, {name: magnitude})
            crop = _crop_tile(warped, frames[name].center, _CROP_SIDE_IOD * iod)
            tiles.append(_with_header(crop, f"{name} {magnitude:g}"))
        rows.append(np.hstack(tiles))
    return np.ascontiguousarray(np.vstack(rows))


def _crop_tile(image: np.ndarray, center: np.ndarray, side: float) -> np.ndarray:
    """Cut a square of `side` pixels centred on `center` and scale it to the tile size."""
    scale = _TILE / side
    # Landmarks put pixel i's centre at i + 0.5, but cv2.warpAffine puts it at i.
    corner = np.asarray(center, dtype=np.float64) - 0.5 - side / 2.0
    matrix = np.array([[scale, 0.0, -scale * corner[0]], [0.0, scale, -scale * corner[1]]])
    return cv2.warpAffine(
        image, matrix, (_TILE, _TILE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128)
    )


def _with_header(tile: np.ndarray, text: str) -> np.ndarray:
    header = np.full((_HEADER, tile.shape[1], 3), 32, dtype=np.uint8)
    cv2.putText(header, text, (6, _HEADER - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return np.vstack([header, tile])
