"""Tests of the crop cache: keys, hits, rejected photos, unreadable files, parallel fill."""

import shutil

import numpy as np
import pytest

from facepad.cache import CropCache
from facepad.crops import CropSettings
from facepad.errors import ImageError
from facepad.quality import QualitySettings


@pytest.fixture
def photo(demo_set, tmp_path):
    source = sorted((demo_set.parent / "images").glob("*.jpg"))[0]
    target = tmp_path / "photo.jpg"
    shutil.copy(source, target)
    return target


def test_cache_second_get_is_hit(photo, tmp_path):
    cache = CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings())
    first = cache.get(photo)
    second = cache.get(photo)
    assert (cache.misses, cache.hits) == (1, 1)
    assert first.crops.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(first.crops, second.crops)
    np.testing.assert_array_equal(first.points, second.points)
    assert first.flags == second.flags


def test_cache_hit_after_rename(photo, tmp_path):
    cache = CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings())
    cache.get(photo)
    renamed = photo.with_name("renamed.jpg")
    photo.rename(renamed)
    cache.get(renamed)
    assert cache.hits == 1


def test_cache_miss_after_settings_change(photo, tmp_path):
    CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings()).get(photo)
    other = CropCache(tmp_path / "cache", CropSettings(size=40), QualitySettings())
    assert other.get(photo).crops.shape == (4, 40, 40, 3)
    assert other.misses == 1


def test_cache_miss_after_content_change(photo, tmp_path):
    cache = CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings())
    cache.get(photo)
    photo.write_bytes(photo.read_bytes() + b"\x00")  # same name, other bytes
    cache.get(photo)
    assert cache.misses == 2


def test_cache_stores_rejection_reason(tmp_path):
    from PIL import Image

    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(wall)
    cache = CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings())
    first = cache.get(wall)
    assert first.crops is None
    assert "no face" in first.error
    assert cache.get(wall).error == first.error
    assert cache.hits == 1


def test_cache_unreadable_photo_raises_and_is_not_stored(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff truncated")
    cache = CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings())
    with pytest.raises(ImageError):
        cache.get(broken)
    assert not list((tmp_path / "cache").rglob("*.npz"))


def test_cache_corrupt_entry_is_recomputed(photo, tmp_path, caplog):
    cache = CropCache(tmp_path / "cache", CropSettings(size=32), QualitySettings())
    expected = cache.get(photo).crops
    (entry,) = list((tmp_path / "cache").rglob("*.npz"))
    entry.write_bytes(b"damaged")
    np.testing.assert_array_equal(cache.get(photo).crops, expected)
    assert "unreadable" in caplog.text


def test_cache_fill_with_two_processes(demo_set, tmp_path):
    photos = sorted((demo_set.parent / "images").glob("*.jpg"))[:4]
    settings = (CropSettings(size=32), QualitySettings())
    parallel = CropCache(tmp_path / "parallel", *settings)
    parallel.fill(photos, workers=2)
    assert len(list((tmp_path / "parallel").rglob("*.npz"))) == 4
    serial = CropCache(tmp_path / "serial", *settings)
    for photo in photos:
        np.testing.assert_array_equal(parallel.get(photo).crops, serial.get(photo).crops)
    assert parallel.misses == 0
