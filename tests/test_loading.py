"""Tests of `load_image` and `find_images` on files made in each test."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from facepad.errors import ImageError
from facepad.loading import IMAGE_SUFFIXES, find_images, load_image


def _gradient(height: int = 40, width: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 6, (x + y) * 2], axis=2).astype(np.uint8)


def _check_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.shape == (height, width, 3)
    assert array.dtype == np.uint8
    assert array.flags["C_CONTIGUOUS"]


def test_load_image_png_exact(tmp_path):
    pixels = _gradient()
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    loaded = load_image(tmp_path / "photo.png")
    _check_rgb(loaded, 40, 60)
    np.testing.assert_array_equal(loaded, pixels)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "absent.jpg")


def test_load_image_folder(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)


def test_load_image_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(path)


def test_load_image_non_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are notes, not a photo\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)


def test_load_image_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_gradient(200, 200)).save(buffer, format="JPEG", quality=95)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_load_image_truncated_png(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_gradient(200, 200)).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)


def test_load_image_unicode_path(tmp_path):
    folder = tmp_path / "Patientenfotos ü 顔 фото"
    folder.mkdir()
    path = folder / "Zoë 写真.jpg"
    Image.fromarray(_gradient()).save(path, quality=95)
    loaded = load_image(path)
    _check_rgb(loaded, 40, 60)


def test_load_image_exif_orientation(tmp_path):
    # A red block in the top-left corner of the stored pixels. EXIF orientation 6 means
    # "rotate 90 degrees clockwise to display", which moves the block to the top-right.
    pixels = np.full((40, 60, 3), 255, dtype=np.uint8)
    pixels[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(pixels).save(path, quality=95, exif=exif)

    loaded = load_image(path)
    _check_rgb(loaded, 60, 40)
    assert loaded[:10, -10:, 0].mean() > 200
    assert loaded[:10, -10:, 1].mean() < 60
    assert loaded[:10, :10].min() > 200


def test_load_image_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[:, :10] = (10, 200, 30, 255)  # opaque green
    rgba[:, 10:] = (0, 0, 0, 0)  # fully transparent black
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    loaded = load_image(tmp_path / "alpha.png")
    _check_rgb(loaded, 20, 20)
    np.testing.assert_array_equal(loaded[0, 0], (10, 200, 30))
    np.testing.assert_array_equal(loaded[0, 15], (255, 255, 255))


def test_load_image_la(tmp_path):
    la = np.zeros((20, 20, 2), dtype=np.uint8)
    la[..., 0] = 90
    la[..., 1] = 255
    la[:, 10:, 1] = 0
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    _check_rgb(loaded, 20, 20)
    np.testing.assert_array_equal(loaded[0, 0], (90, 90, 90))
    np.testing.assert_array_equal(loaded[0, 15], (255, 255, 255))


def test_load_image_grayscale(tmp_path):
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    loaded = load_image(tmp_path / "gray.png")
    _check_rgb(loaded, 5, 25)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)


def test_load_image_palette(tmp_path):
    pixels = _gradient()
    Image.fromarray(pixels).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "palette.png")
    loaded = load_image(tmp_path / "palette.png")
    _check_rgb(loaded, 40, 60)
    # 16 colours approximate the gradient to within a coarse step.
    assert np.abs(loaded.astype(int) - pixels).mean() < 20


def test_load_image_palette_transparency(tmp_path):
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0, 200, 50, 50] + [0] * 762)
    image.paste(1, (0, 0, 5, 10))
    image.info["transparency"] = 0
    image.save(tmp_path / "palette_alpha.png", transparency=0)
    loaded = load_image(tmp_path / "palette_alpha.png")
    np.testing.assert_array_equal(loaded[0, 0], (200, 50, 50))
    np.testing.assert_array_equal(loaded[0, 9], (255, 255, 255))


def test_load_image_16bit_grayscale_scaled(tmp_path):
    samples = np.array([[0, 257 * 64, 32768, 65535]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "gray16.png"), samples)
    loaded = load_image(tmp_path / "gray16.png")
    _check_rgb(loaded, 1, 4)
    # Scaled by 255 / 65535, not clipped at 255.
    np.testing.assert_array_equal(loaded[0, :, 0], (0, 64, 128, 255))


def test_load_image_16bit_rgb_scaled(tmp_path):
    bgr = np.zeros((2, 2, 3), dtype=np.uint16)
    bgr[0, 0] = (65535, 32768, 257 * 10)  # blue, green, red
    cv2.imwrite(str(tmp_path / "rgb16.png"), bgr)
    loaded = load_image(tmp_path / "rgb16.png")
    _check_rgb(loaded, 2, 2)
    np.testing.assert_array_equal(loaded[0, 0], (10, 128, 255))


def test_load_image_max_pixels(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "photo.png")
    with pytest.raises(ImageError, match="more than the limit"):
        load_image(tmp_path / "photo.png", max_pixels=1000)


def test_load_image_huge_photo(tmp_path):
    # 8000 x 6000, the size of a 48-megapixel camera photo.
    pixels = np.zeros((6000, 8000, 3), dtype=np.uint8)
    pixels[::100] = 200
    path = tmp_path / "huge.jpg"
    cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])
    del pixels
    loaded = load_image(path)
    _check_rgb(loaded, 6000, 8000)


def test_find_images_folders_and_files(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    for name in ("b/deep/z.JPG", "b/y.png", "a/x.jpeg", "a/readme.txt", "a/.hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")

    found, rejected = find_images([tmp_path, tmp_path / "a" / "x.jpeg", notes, tmp_path / "absent"])
    assert found == [tmp_path / "a" / "x.jpeg", tmp_path / "b" / "deep" / "z.JPG", tmp_path / "b" / "y.png"]
    assert [path for path, _ in rejected] == [notes, tmp_path / "absent"]
    assert "not an image file name" in rejected[0][1]
    assert "not found" in rejected[1][1]


def test_image_suffixes_lower_case():
    assert all(suffix.startswith(".") and suffix == suffix.lower() for suffix in IMAGE_SUFFIXES)
    assert {".jpg", ".jpeg", ".png"} <= IMAGE_SUFFIXES


def test_load_image_header_only(tmp_path):
    # A PNG signature with nothing after it: an image file cut short, not some other file.
    path = tmp_path / "cut.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)
