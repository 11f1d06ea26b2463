"""`facepad crop`: crop every photo under some paths and write crops, previews and an index.

Output folder layout:

    crops/<photo>_<region side>.png   one PNG per region side, right sides mirrored
    previews/<photo>.png              the photo with landmarks and labelled regions
    index.csv                         one row per crop (columns in `INDEX_COLUMNS`)
    skipped.csv                       one row per skipped path, with the reason

`<photo>` is the photo's path relative to the deepest folder holding all photos, with
"__" for path separators, so photos with one name in different folders do not collide.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facepad.cropper import Cropper, PhotoCrops
from facepad.crops import CropSettings
from facepad.errors import FacepadError, strip_path_prefix
from facepad.io_utils import atomic_write_bytes
from facepad.landmarks import LandmarkDetector
from facepad.loading import find_images, load_images_ahead
from facepad.preview import draw_regions
from facepad.quality import QualitySettings
from facepad.regions import REGION_SIDES

_logger = logging.getLogger(__name__)

INDEX_COLUMNS = (
    "source",
    "region",
    "side",
    "crop",
    "flags",
    "yaw_deg",
    "pitch_deg",
    "roll_deg",
    "interocular_px",
    "num_faces",
)

# Longer side of preview images; larger photos are downscaled for the preview.
PREVIEW_MAX_SIDE = 1024

# Photos whose outputs may wait for the writer thread at one time.
_MAX_PENDING_WRITES = 8

# zlib level 1: PNGs a little larger than at the default level, written several times faster.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1]


@dataclass
class CropRunSummary:
    """Outcome of a crop run: counts, output paths and every skipped path with its reason."""

    out_dir: Path
    photos: int = 0
    cropped: int = 0
    crops_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def index_path(self) -> Path:
        return self.out_dir / "index.csv"


def run_crop(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    crop: CropSettings = CropSettings(),
    quality: QualitySettings = QualitySettings(),
    model_path: str | os.PathLike | None = None,
    progress: bool = True,
    detector: LandmarkDetector | None = None,
) -> CropRunSummary:
    """Crop every photo found under `paths` into `out_dir`, going on past bad photos.

    Photos are decoded one step ahead and outputs are written behind, each in one
    worker thread, so that file work overlaps landmark detection on the main thread.
    Pass `detector` to reuse an open detector instead of creating one from `model_path`.

    Raises:
        FacepadError: `out_dir` exists but is not a folder, or the model is invalid.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FacepadError(f"--out {out_dir} is a file; give a folder (it is created if missing)")
    files, rejected = find_images(paths)
    summary = CropRunSummary(out_dir=out_dir, photos=len(files) + len(rejected))
    summary.skipped.extend((str(path), reason) for path, reason in rejected)

    stems = output_stems(files)
    rows = []
    with (
        Cropper(crop=crop, quality=quality, detector=detector, model_path=model_path) as cropper,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="facepad-write") as writer,
    ):
        # Created once the model has loaded, so that an invalid model leaves no folders.
        (out_dir / "crops").mkdir(parents=True, exist_ok=True)
        (out_dir / "previews").mkdir(parents=True, exist_ok=True)
        writes: deque[Future] = deque()
        photos = load_images_ahead(files)
        for file, loaded in tqdm(photos, total=len(files), desc="Cropping", unit="photo", disable=None if progress else True):
            try:
                if isinstance(loaded, FacepadError):
                    raise loaded
                result = cropper.process_image(loaded, source=str(file))
            except FacepadError as error:
                reason = strip_path_prefix(str(error), str(file))
                _logger.debug("Skipping %s: %s", file, reason)
                summary.skipped.append((str(file), reason))
                continue
            rows.extend(_index_rows(stems[file], result))
            writes.append(writer.submit(_write_photo_outputs, out_dir, stems[file], loaded, result))
            summary.cropped += 1
            summary.crops_written += len(result.crops)
            # Bound the photos held in memory, and surface write errors early.
            while len(writes) > _MAX_PENDING_WRITES:
                writes.popleft().result()
        for write in writes:
            write.result()

    _write_csv(summary.index_path, INDEX_COLUMNS, rows)
    _write_csv(out_dir / "skipped.csv", ("source", "reason"), summary.skipped)
    return summary


def format_summary(summary: CropRunSummary) -> str:
    """Return the closing summary: counts, the index path and every skipped path with why."""
    lines = [
        f"Cropped {summary.cropped} of {summary.photos} photos ({summary.crops_written} crops) into {summary.out_dir}",
        f"Index: {summary.index_path}",
    ]
    if summary.skipped:
        lines.append(f"Skipped {len(summary.skipped)}:")
        lines.extend(f"  {source}: {reason}" for source, reason in summary.skipped)
    return "\n".join(lines)


def output_stems(files: Sequence[Path]) -> dict[Path, str]:
    """Map each photo to a unique output name built from its path.

    The name is the path relative to the deepest folder holding all photos, without the
    suffix, with "__" between folder names. Photos that differ only in their suffix
    (`a.jpg`, `a.png`) get the suffix appended (`a_png`).
    """
    if not files:
        return {}
    resolved = {file: file.resolve() for file in files}
    root = Path(os.path.commonpath([str(path.parent) for path in resolved.values()]))
    base = {file: "__".join(path.relative_to(root).with_suffix("").parts) for file, path in resolved.items()}
    counts: dict[str, int] = {}
    for name in base.values():
        counts[name] = counts.get(name, 0) + 1
    stems = {}
    for file, name in base.items():
        stems[file] = name if counts[name] == 1 else f"{name}_{file.suffix.lstrip('.').lower()}"
    return stems


def _index_rows(stem: str, result: PhotoCrops) -> list[dict]:
    quality = result.quality
    photo_flags = [flag for flag in quality.flags if not flag.startswith(REGION_SIDES)]
    rows = []
    for name, crop in result.crops.items():
        flags = photo_flags + [flag for flag in quality.flags if flag.startswith(name)]
        rows.append(
            {
                "source": result.source,
                "region": crop.region,
                "side": crop.side,
                "crop": _crop_path(stem, name).as_posix(),
                "flags": ";".join(flags),
                "yaw_deg": f"{quality.yaw_deg:.1f}",
                "pitch_deg": f"{quality.pitch_deg:.1f}",
                "roll_deg": f"{quality.roll_deg:.1f}",
                "interocular_px": f"{quality.interocular_px:.1f}",
                "num_faces": result.landmarks.num_faces,
            }
        )
    return rows


def _crop_path(stem: str, region_side: str) -> Path:
    return Path("crops") / f"{stem}_{region_side}.png"


def _write_photo_outputs(out_dir: Path, stem: str, image: np.ndarray, result: PhotoCrops) -> None:
    for name, crop in result.crops.items():
        write_png(out_dir / _crop_path(stem, name), crop.image)
    preview = draw_regions(image, result.landmarks, flags=result.quality.flags, max_side=PREVIEW_MAX_SIDE)
    write_png(out_dir / "previews" / f"{stem}.png", preview)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG through a temporary file and `os.replace`."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise OSError(f"OpenCV failed to encode {path} as PNG")
    atomic_write_bytes(path, encoded.tobytes(), fsync=False)


def _write_csv(path: Path, columns: Sequence[str], rows) -> None:
    buffer = io.StringIO()
    if rows and isinstance(rows[0], dict):
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
