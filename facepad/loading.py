"""Image loading: every photo enters facepad through `load_image`.

`load_image` applies the EXIF orientation and turns any mode Pillow reads (RGBA, LA,
palette, grayscale, 16-bit) into an RGB `uint8` array, so the rest of the pipeline
receives one image format. `find_images` expands files and folders given on a command line.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facepad.errors import ImageError

_logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})

# An 8000 x 6000 photo (48 megapixels, 144 MB as RGB uint8) loads with room to spare;
# larger images are more likely decompression bombs than photos.
DEFAULT_MAX_PIXELS = 100_000_000

# Background for transparent pixels: white, as image viewers show them.
_BACKGROUND = (255, 255, 255)


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read a photo as an RGB `uint8` array of shape [height, width, 3], C-contiguous.

    The EXIF orientation is applied. Transparent pixels are composited onto white; 16-bit
    and 32-bit images are scaled to 0-255 (not clipped). Multi-frame files give their
    first frame. `max_pixels` caps width x height (default `DEFAULT_MAX_PIXELS`).

    Raises:
        ImageError: the file is missing, empty, not an image, truncated or corrupt, or
            larger than `max_pixels`.
    """
    path = Path(path)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    _check_file(path)

    try:
        # Pillow warns about images above its own bomb limit; ours is checked below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        if _has_image_signature(path):
            raise ImageError(
                f"{path}: truncated or corrupt image data (the header is unreadable); re-export or re-copy the file"
            ) from None
        raise ImageError(f"{path}: not an image file Pillow can read; expected a photo such as JPEG or PNG") from None
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: image too large to load ({error})") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot open the file ({error}); check its permissions") from None

    with image:
        width, height = image.size
        if width * height > limit:
            raise ImageError(
                f"{path}: {width} x {height} pixels is more than the limit of {limit} pixels; downscale the photo first"
            )
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            array = _to_rgb_uint8(image)
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            # Pillow reports truncated and corrupt data as OSError, and some broken
            # PNG chunks as SyntaxError or ValueError.
            raise ImageError(
                f"{path}: truncated or corrupt image data ({error}); re-export or re-copy the file"
            ) from None
    return np.ascontiguousarray(array)


def find_images(
    paths: Sequence[str | os.PathLike],
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into image files, searching folders recursively.

    Returns the image files (each folder's files sorted by path, duplicates removed, in
    argument order) and a list of (path, reason) for paths that do not exist and for
    files named explicitly that do not have an image suffix. Files without an image
    suffix inside folders are ignored silently.
    """
    found: list[Path] = []
    rejected: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(file: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            found.append(file)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in _walk_images(path):
                add(file)
        elif path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES:
                add(path)
            else:
                suffixes = " ".join(sorted(IMAGE_SUFFIXES))
                rejected.append((path, f"not an image file name; expected one of: {suffixes}"))
        else:
            rejected.append((path, "file or folder not found"))
    return found, rejected


def _walk_images(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                files.append(Path(root) / name)
    return sorted(files)


# Leading bytes of the formats in IMAGE_SUFFIXES.
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


def _has_image_signature(path: Path) -> bool:
    with open(path, "rb") as stream:
        head = stream.read(8)
    return head.startswith(_SIGNATURES)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(f"{path}: file not found; check the path")
    if not path.is_file():
        raise ImageError(f"{path}: not a regular file; give the path of a photo")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty (0 bytes); re-export or re-copy the photo")


def _to_rgb_uint8(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        # 16-bit RGB PNGs also arrive here: Pillow keeps the high byte of each sample,
        # which scales 0-65535 to 0-255.
        return np.asarray(image)
    if mode.startswith("I") or mode == "F":
        return _scale_to_uint8(np.asarray(image), mode)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def _scale_to_uint8(samples: np.ndarray, mode: str) -> np.ndarray:
    """Scale one-channel 16-bit, 32-bit or float samples to RGB uint8 by their full range."""
    values = samples.astype(np.float64)
    maximum = float(values.max()) if values.size else 0.0
    if mode == "F":
        full_scale = 1.0 if maximum <= 1.0 else 255.0
    elif mode.startswith("I;16") or maximum <= 65535.0:
        # NOTE: Pillow does not report the bit depth of mode "I" images, so a 32-bit
        # image whose samples all stay below 65536 is read as 16-bit.
        full_scale = 65535.0
    else:
        full_scale = float(2**31 - 1)
    gray = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def load_images_ahead(
    paths: Sequence[str | os.PathLike], max_pixels: int | None = None
) -> Iterator[tuple[Path, np.ndarray | ImageError]]:
    """Yield (path, image) in order while a worker thread decodes the next photo.

    Decoding releases the GIL, so it overlaps with landmark detection in the caller. A
    photo that cannot be loaded comes with its `ImageError` in place of the image.
    """
    files = [Path(path) for path in paths]
    if not files:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="facepad-load") as loader:
        upcoming = loader.submit(_load_or_error, files[0], max_pixels)
        for index, file in enumerate(files):
            current = upcoming
            if index + 1 < len(files):
                upcoming = loader.submit(_load_or_error, files[index + 1], max_pixels)
            yield file, current.result()


def _load_or_error(path: Path, max_pixels: int | None) -> np.ndarray | ImageError:
    try:
        return load_image(path, max_pixels)
    except ImageError as error:
        return error
