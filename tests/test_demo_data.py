"""Tests of the demo set: region warps, magnitude draws, files written and the CLI command.

The warps are checked on real MediaPipe landmarks of matplotlib's grace_hopper.jpg,
because where each warp lands depends on the detected face.
"""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facepad import demo_data
from facepad.cli import app
from facepad.demo_data import (
    MANIFEST_COLUMNS,
    WARPS,
    default_portraits,
    draw_magnitudes,
    make_demo_set,
    region_frame,
    region_frames,
    warp_regions,
)
from facepad.errors import FaceError, FacepadError
from facepad.landmarks import NUM_LANDMARKS, create_detector
from facepad.loading import load_image
from facepad.manifest import read_manifest
from facepad.regions import EYE_CORNERS, REGION_SIDES, interocular_distance, region_polygon

ALL_ONE = {name: 1.0 for name in REGION_SIDES}


@pytest.fixture(scope="module")
def grace_hopper_path() -> Path:
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="module")
def face(grace_hopper_path):
    """grace_hopper.jpg and its landmarks."""
    image = load_image(grace_hopper_path)
    with create_detector() as detector:
        points = detector.detect(image).points
    return image, points


@pytest.fixture()
def faces_dir(tmp_path, grace_hopper_path) -> Path:
    """A folder with a copy of grace_hopper.jpg."""
    folder = tmp_path / "faces"
    folder.mkdir()
    shutil.copy(grace_hopper_path, folder / "grace.jpg")
    return folder


def _distance_to_nearest_region(shape, points) -> np.ndarray:
    """Distance of every pixel centre to the nearest region ellipse centre, in inter-ocular distances."""
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    pixel_centres = np.stack([xs + 0.5, ys + 0.5], axis=-1)
    centres = [frame.center for frame in region_frames(points).values()]
    distances = np.min([np.linalg.norm(pixel_centres - centre, axis=-1) for centre in centres], axis=0)
    return distances / interocular_distance(points)


# --- Warps -------------------------------------------------------------------------------


def test_warp_magnitude_zero_is_identity(face):
    image, points = face

    warped = warp_regions(image, points, {name: 0.0 for name in REGION_SIDES})

    assert warped is not image
    assert np.array_equal(warped, image)


def test_warp_leaves_far_pixels_unchanged(face):
    image, points = face

    warped = warp_regions(image, points, ALL_ONE)
    changed = np.any(warped != image, axis=-1)
    distance = _distance_to_nearest_region(image.shape, points)

    # Measured on this photo: every changed pixel lies within 0.41 inter-ocular
    # distances of a region centre, and 2.3 % of the photo changes.
    assert changed.any()
    assert not changed[distance > 0.6].any()
    assert changed.mean() < 0.05


def test_warp_keeps_global_brightness(face):
    image, points = face

    warped = warp_regions(image, points, ALL_ONE)
    far = _distance_to_nearest_region(image.shape, points) > 0.6

    assert abs(warped.astype(np.float64).mean() - image.astype(np.float64).mean()) < 1.0
    assert np.array_equal(warped[far], image[far])


@pytest.mark.parametrize("name", REGION_SIDES)
def test_warp_change_grows_with_magnitude(face, name):
    image, points = face
    support = np.any(warp_regions(image, points, {name: 1.0}) != image, axis=-1)

    changes = []
    for magnitude in (0.1, 0.25, 0.5, 0.75, 1.0):
        warped = warp_regions(image, points, {name: magnitude})
        changes.append(np.abs(warped.astype(np.float64) - image)[support].mean())

    assert all(later > earlier for earlier, later in zip(changes, changes[1:])), changes
    # Clearly visible at 1. Measured on this photo: 27 to 30 grey levels on average.
    assert changes[-1] > 15.0, changes
    # Roughly proportional: half the magnitude gives 35-65 % of the change.
    assert 0.35 < changes[2] / changes[-1] < 0.65, changes


@pytest.mark.parametrize("name", REGION_SIDES)
def test_warp_lands_on_named_side(face, name):
    image, points = face
    nose_tip_x = points[1, 0]  # landmark 1 is the nose tip, on the midline

    warped = warp_regions(image, points, {name: 1.0})
    _, changed_x = np.nonzero(np.any(warped != image, axis=-1))

    # The subject's left appears on the viewer's right, at larger x.
    if name.endswith("_left"):
        assert changed_x.min() > nose_tip_x
    else:
        assert changed_x.max() < nose_tip_x


def test_warp_rejects_magnitude_outside_unit_interval(face):
    image, points = face

    with pytest.raises(ValueError, match="cheek_left=1.5"):
        warp_regions(image, points, {"cheek_left": 1.5})
    with pytest.raises(ValueError, match="cheek_left=-0.1"):
        warp_regions(image, points, {"cheek_left": -0.1})


def test_warp_rejects_unknown_region_side(face):
    image, points = face

    with pytest.raises(ValueError, match="chin_left"):
        warp_regions(image, points, {"chin_left": 0.5})


@pytest.mark.parametrize("name", REGION_SIDES)
def test_warp_map_is_fold_free(face, name):
    image, points = face
    frame = region_frames(points)[name]

    fields = demo_data._region_fields(frame, WARPS[name.split("_")[0]], 1.0, image.shape)

    # A positive Jacobian determinant everywhere means the inverse map never folds the
    # photo over itself. The minimum measured on this photo is 0.43.
    d_source_x_dy, d_source_x_dx = np.gradient(fields.source_x)
    d_source_y_dy, d_source_y_dx = np.gradient(fields.source_y)
    determinant = d_source_x_dx * d_source_y_dy - d_source_x_dy * d_source_y_dx
    assert determinant.min() > 0.2


# --- Region frames -------------------------------------------------------------------------


def _points_with_polygon_on_ellipse(name: str, semi_x: float, semi_y: float, center=(200.0, 300.0)) -> np.ndarray:
    points = np.zeros((NUM_LANDMARKS, 3), dtype=np.float32)
    # Eyes on a horizontal line, 100 px apart.
    for index in EYE_CORNERS["left"]:
        points[index, :2] = (250.0, 200.0)
    for index in EYE_CORNERS["right"]:
        points[index, :2] = (150.0, 200.0)
    polygon = region_polygon(name)
    angles = np.linspace(0.0, 2.0 * np.pi, len(polygon), endpoint=False)
    points[polygon, 0] = center[0] + semi_x * np.cos(angles)
    points[polygon, 1] = center[1] + semi_y * np.sin(angles)
    return points


def test_region_frame_fits_ellipse_polygon():
    points = _points_with_polygon_on_ellipse("cheek_left", semi_x=30.0, semi_y=15.0)

    frame = region_frame(points, "cheek_left")

    # A polygon inscribed in the ellipse has slightly smaller moments than the ellipse.
    assert np.allclose(frame.center, (200.0, 300.0), atol=0.01)
    assert frame.semi_lateral == pytest.approx(30.0, rel=0.05)
    assert frame.semi_down == pytest.approx(15.0, rel=0.05)
    assert np.allclose(frame.lateral, (1.0, 0.0))
    assert np.allclose(frame.down, (0.0, 1.0))


def test_region_frame_right_side_mirrors_lateral():
    points = _points_with_polygon_on_ellipse("cheek_right", semi_x=30.0, semi_y=15.0)

    frame = region_frame(points, "cheek_right")

    assert np.allclose(frame.lateral, (-1.0, 0.0))
    assert np.allclose(frame.down, (0.0, 1.0))


def test_region_frame_collapsed_polygon_raises():
    points = _points_with_polygon_on_ellipse("cheek_left", semi_x=30.0, semi_y=0.5)

    with pytest.raises(FaceError, match="cheek_left"):
        region_frame(points, "cheek_left")


# --- Magnitudes ----------------------------------------------------------------------------


def test_draw_magnitudes_stratified_per_column():
    count = 50

    magnitudes = draw_magnitudes(np.random.default_rng(0), count)

    assert magnitudes.shape == (count, len(REGION_SIDES))
    for column in magnitudes.T:
        bins = np.minimum(np.floor(column * count).astype(int), count - 1)
        assert sorted(bins) == list(range(count))


def test_draw_magnitudes_columns_independent():
    magnitudes = draw_magnitudes(np.random.default_rng(1), 400)

    correlation = np.corrcoef(magnitudes.T)

    off_diagonal = correlation[~np.eye(len(REGION_SIDES), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.15


def test_draw_magnitudes_rounded_to_manifest_decimals():
    magnitudes = draw_magnitudes(np.random.default_rng(2), 20)

    assert np.array_equal(magnitudes, np.round(magnitudes, 4))
    assert magnitudes.min() >= 0.0
    assert magnitudes.max() <= 1.0


# --- Writing the set -------------------------------------------------------------------------


def test_make_demo_set_same_seed_identical_files(tmp_path, faces_dir):
    first = make_demo_set(tmp_path / "first", faces_dir=faces_dir, per_face=3, seed=7)
    second = make_demo_set(tmp_path / "second", faces_dir=faces_dir, per_face=3, seed=7)
    other = make_demo_set(tmp_path / "other", faces_dir=faces_dir, per_face=3, seed=8)

    first_files = sorted(path.relative_to(first.parent) for path in first.parent.rglob("*") if path.is_file())
    second_files = sorted(path.relative_to(second.parent) for path in second.parent.rglob("*") if path.is_file())
    assert first_files == second_files
    assert len(first_files) == 3 + 2  # photos, manifest, preview
    for relative in first_files:
        assert (first.parent / relative).read_bytes() == (second.parent / relative).read_bytes(), relative
    assert first.read_bytes() != other.read_bytes()


def test_make_demo_set_manifest_columns_and_ranges(tmp_path, faces_dir):
    manifest = make_demo_set(tmp_path / "demo", faces_dir=faces_dir, per_face=4, seed=0)

    with open(manifest, newline="") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
    assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
    assert "split" not in reader.fieldnames
    assert len(rows) == 4
    for row in rows:
        assert row["subject"] == "grace"
        assert (manifest.parent / row["image"]).is_file()
        for name in REGION_SIDES:
            assert len(row[name].split(".")[1]) == 4
            assert 0.0 <= float(row[name]) <= 1.0
    # Stratified draws: with 4 variants each region side has one value in each quarter.
    for name in REGION_SIDES:
        quarters = sorted(int(float(row[name]) * 4) for row in rows)
        assert quarters == [0, 1, 2, 3]
    assert len(read_manifest(manifest).rows) == 4


def test_demo_photos_unchanged_far_away(tmp_path, faces_dir, face):
    image, points = face

    manifest = make_demo_set(tmp_path / "demo", faces_dir=faces_dir, per_face=2, seed=0)
    far = _distance_to_nearest_region(image.shape, points) > 0.6

    for row in read_manifest(manifest).rows:
        photo = load_image(row.image).astype(np.float64)
        # JPEG quality 95 alone moves pixels by about one grey level on average.
        assert np.abs(photo - image)[far].mean() < 2.0
        assert abs(photo[far].mean() - image[far].mean()) < 0.5


def test_make_demo_set_preview_layout(tmp_path, faces_dir):
    manifest = make_demo_set(tmp_path / "demo", faces_dir=faces_dir, per_face=1, seed=0)

    preview = np.asarray(Image.open(manifest.parent / "preview.png"))

    # One row per region side, each with the face overview and then magnitudes 0, 0.5 and 1.
    assert preview.shape == (4 * (demo_data._HEADER + demo_data._TILE), 4 * demo_data._TILE, 3)


def test_make_demo_set_skips_non_face_image(tmp_path, faces_dir, caplog):
    noise = np.random.default_rng(0).integers(0, 256, size=(200, 300, 3), dtype=np.uint8)
    Image.fromarray(noise).save(faces_dir / "noise.png")
    (faces_dir / "notes.txt").write_text("not a photo")

    with caplog.at_level(logging.WARNING, logger="facepad.demo_data"):
        manifest = make_demo_set(tmp_path / "demo", faces_dir=faces_dir, per_face=2, seed=0)

    subjects = {row.subject for row in read_manifest(manifest).rows}
    assert subjects == {"grace"}
    skipped = [record.getMessage() for record in caplog.records if "noise.png" in record.getMessage()]
    assert skipped
    assert "no face found" in skipped[-1]


def test_make_demo_set_no_usable_face_raises(tmp_path):
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.fromarray(np.full((120, 160, 3), 90, dtype=np.uint8)).save(folder / "wall.png")

    with pytest.raises(FaceError, match="no usable face"):
        make_demo_set(tmp_path / "demo", faces_dir=folder, per_face=2)
    assert not (tmp_path / "demo" / "manifest.csv").exists()


def test_make_demo_set_missing_faces_folder_raises(tmp_path):
    with pytest.raises(FacepadError, match="not found"):
        make_demo_set(tmp_path / "demo", faces_dir=tmp_path / "absent", per_face=2)


def test_make_demo_set_rejects_invalid_counts(tmp_path, faces_dir):
    with pytest.raises(FacepadError, match="per_face=0"):
        make_demo_set(tmp_path / "demo", faces_dir=faces_dir, per_face=0)
    with pytest.raises(FacepadError, match="seed=-1"):
        make_demo_set(tmp_path / "demo", faces_dir=faces_dir, seed=-1)


def test_make_demo_set_interrupted_leaves_no_manifest(tmp_path, faces_dir, monkeypatch):
    out = tmp_path / "demo"
    make_demo_set(out, faces_dir=faces_dir, per_face=2, seed=0)
    assert (out / "manifest.csv").is_file()

    # A fake encoder that fails on the second photo simulates an interruption.
    encoded = []
    real_encode = demo_data._encode_jpeg

    def failing_encode(image):
        if encoded:
            raise KeyboardInterrupt
        encoded.append(1)
        return real_encode(image)

    monkeypatch.setattr(demo_data, "_encode_jpeg", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        make_demo_set(out, faces_dir=faces_dir, per_face=2, seed=1)

    assert not (out / "manifest.csv").exists()
    assert not list(out.rglob("*.tmp*"))


def test_folder_portraits_subject_ids(tmp_path, grace_hopper_path):
    folder = tmp_path / "faces"
    (folder / "men").mkdir(parents=True)
    shutil.copy(grace_hopper_path, folder / "men" / "001.jpg")
    shutil.copy(grace_hopper_path, folder / "a.jpg")
    shutil.copy(grace_hopper_path, folder / "a_jpg.jpg")
    Image.open(grace_hopper_path).save(folder / "a.png")

    subjects = [portrait.subject for portrait in demo_data.folder_portraits(folder)]

    assert len(set(subjects)) == len(subjects) == 4
    assert "men/001" in subjects
    assert "a_png" in subjects


def test_make_demo_set_ignores_photos_inside_out(tmp_path, faces_dir):
    out = faces_dir / "demo"
    make_demo_set(out, faces_dir=faces_dir, per_face=2, seed=0)

    manifest = make_demo_set(out, faces_dir=faces_dir, per_face=2, seed=0)

    assert {row.subject for row in read_manifest(manifest).rows} == {"grace"}


def test_default_portraits_include_grace_hopper():
    subjects = [portrait.subject for portrait in default_portraits()]

    assert subjects[0] == "grace_hopper"
    image = default_portraits()[0].load()
    assert image.dtype == np.uint8
    assert image.shape[2] == 3


# --- Command line ----------------------------------------------------------------------------


def test_cli_demo_data_default_portraits(tmp_path):
    out = tmp_path / "demo"

    result = CliRunner().invoke(app, ["demo-data", str(out), "--per-face", "2", "--seed", "3"])

    assert result.exit_code == 0, result.output
    assert str(out / "manifest.csv") in result.output
    rows = read_manifest(out / "manifest.csv").rows
    subjects = [row.subject for row in rows]
    assert subjects.count("grace_hopper") == 2
    assert (out / "preview.png").is_file()
    assert (out / "images" / "grace_hopper_000.jpg").is_file()


def test_cli_demo_data_default_per_face_matches_library():
    import typer.main

    command = typer.main.get_command(app).commands["demo-data"]
    per_face = next(param for param in command.params if param.name == "per_face")

    assert per_face.default == demo_data.DEFAULT_PER_FACE


def test_cli_demo_data_rejects_zero_per_face(tmp_path):
    result = CliRunner().invoke(app, ["demo-data", str(tmp_path / "demo"), "--per-face", "0"])

    assert result.exit_code == 2
    assert not (tmp_path / "demo").exists()
