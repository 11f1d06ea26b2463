"""The crop cache: landmarks and region crops computed once per photo.

An entry is keyed by the SHA-256 of the photo's bytes and by every setting that changes
the crops (crop size, margin and mask, quality limits, landmark backend, region table
version). A renamed or moved photo still hits its entry, and an edited photo or a
changed setting misses it. A photo that was rejected (no face, turned too far) is cached
with its reason, so later epochs and runs do not detect it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facepad.cropper import Cropper
from facepad.crops import CropSettings
from facepad.errors import FacepadError, ImageError
from facepad.io_utils import atomic_path
from facepad.quality import QualitySettings
from facepad.regions import REGION_SIDES, REGION_TABLE_VERSION

_logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class CachedPhoto:
    """The cached result for one photo: its four region crops, or the reason it was rejected."""

    crops: np.ndarray | None  # [4, size, size, 3] uint8 in REGION_SIDES order; None when rejected
    outside_image: np.ndarray | None  # [4] bool: the region's polygon runs past the image border
    points: np.ndarray | None  # [478, 3] float32 landmarks in photo pixels
    pose: np.ndarray | None  # [4] float32: yaw, pitch, roll in degrees, inter-ocular distance in pixels
    flags: tuple[str, ...]
    error: str | None  # the rejection reason


def default_cache_dir() -> Path:
    """Return $FACEPAD_CACHE, else ~/.cache/facepad/crops."""
    env = os.environ.get("FACEPAD_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "facepad" / "crops"


def file_digest(path: str | os.PathLike) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class CropCache:
    """Compute region crops once per photo and read them back on later calls."""

    def __init__(
        self,
        root: str | os.PathLike | None,
        crop: CropSettings,
        quality: QualitySettings,
        landmark_model: str | None = None,
        max_side: int = 1280,
    ) -> None:
        # Configuration
        self.crop = crop
        self.quality = quality
        self.landmark_model = landmark_model
        self.max_side = max_side

        # Where entries live: one folder per settings key
        settings = {
            "cache_format": CACHE_FORMAT_VERSION,
            "region_table": REGION_TABLE_VERSION,
            "crop": crop.to_dict(),
            "quality": _settings_dict(quality),
            "landmark_model": file_digest(landmark_model) if landmark_model else "facemesh-0.10.21",
            "max_side": max_side,
        }
        self.settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        self.root = Path(root) if root is not None else default_cache_dir()
        self.folder = self.root / self.settings_key

        # State: the cropper starts MediaPipe only on the first miss
        self._cropper: Cropper | None = None
        self.hits = 0
        self.misses = 0

    def get(self, path: str | os.PathLike) -> CachedPhoto:
        """Return the cached crops of a photo, computing and storing them on a miss.

        A photo that cannot be read raises its ImageError and is not cached, because the
        file may be fixed under the same name. A rejected face is cached with its reason.
        """
        entry = self._entry(file_digest(path))
        if entry.is_file():
            try:
                cached = _read_entry(entry)
                self.hits += 1
                return cached
            except (OSError, ValueError, KeyError) as error:
                _logger.warning("crop cache entry %s is unreadable (%s); recomputing it", entry, error)

        self.misses += 1
        result = self._compute(path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        _write_entry(entry, result)
        return result

    def fill(self, paths: list[str | os.PathLike], workers: int) -> None:
        """Compute the missing entries of `paths` in `workers` processes (no-op for workers <= 1).

        Each process runs its own MediaPipe graph. Photos that fail here are left for `get`,
        which raises or returns their reason as usual.
        """
        if workers <= 1:
            return
        missing = [str(path) for path in paths if not self._entry(file_digest(path)).is_file()]
        if len(missing) < 2:
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        arguments = (str(self.root), self.crop, self.quality, self.landmark_model, self.max_side)
        context = multiprocessing.get_context("spawn")  # MediaPipe and torch threads do not survive fork
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=arguments) as pool:
            for _ in pool.map(_fill_entry, missing, chunksize=8):
                pass
        _logger.info("filled %d crop cache entries with %d processes", len(missing), workers)

    def _entry(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.npz"

    def _compute(self, path: str | os.PathLike) -> CachedPhoto:
        if self._cropper is None:
            self._cropper = Cropper(self.crop, self.quality, model_path=self.landmark_model, max_side=self.max_side)
        try:
            photo = self._cropper.process_path(path)
        except ImageError:
            raise
        except FacepadError as error:
            return CachedPhoto(None, None, None, None, (), str(error))
        crops = np.stack([photo.crops[name].image for name in REGION_SIDES])
        outside = np.array([photo.crops[name].outside_image for name in REGION_SIDES], dtype=bool)
        report = photo.quality
        pose = np.array([report.yaw_deg, report.pitch_deg, report.roll_deg, report.interocular_px], dtype=np.float32)
        return CachedPhoto(crops, outside, photo.landmarks.points.astype(np.float32), pose, tuple(report.flags), None)

    def close(self) -> None:
        if self._cropper is not None:
            self._cropper.close()
            self._cropper = None

    def __enter__(self) -> "CropCache":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_worker_cache: CropCache | None = None


def _start_worker(root: str, crop: CropSettings, quality: QualitySettings, landmark_model: str | None,
                  max_side: int) -> None:
    global _worker_cache
    _worker_cache = CropCache(root, crop, quality, landmark_model, max_side)


def _fill_entry(path: str) -> None:
    try:
        _worker_cache.get(path)
    except (FacepadError, OSError) as error:
        _logger.debug("cache fill skipped %s: %s", path, error)


def _settings_dict(settings: object) -> dict:
    to_dict = getattr(settings, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    import dataclasses

    return dataclasses.asdict(settings)


def _write_entry(entry: Path, photo: CachedPhoto) -> None:
    with atomic_path(entry) as temp:
        if photo.error is not None:
            np.savez(temp, error=np.array(photo.error))
        else:
            np.savez(
                temp,
                crops=photo.crops,
                outside_image=photo.outside_image,
                points=photo.points,
                pose=photo.pose,
                flags=np.array(json.dumps(list(photo.flags))),
            )


def _read_entry(entry: Path) -> CachedPhoto:
    with np.load(entry, allow_pickle=False) as data:
        if "error" in data:
            return CachedPhoto(None, None, None, None, (), str(data["error"]))
        return CachedPhoto(
            crops=data["crops"],
            outside_image=data["outside_image"],
            points=data["points"],
            pose=data["pose"],
            flags=tuple(json.loads(str(data["flags"]))),
            error=None,
        )
