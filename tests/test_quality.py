"""Tests of head pose estimation and the quality checks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from facepad.crops import CropSettings, crop_regions
from facepad.errors import ConfigError, FaceError
from facepad.loading import load_image
from facepad.quality import QualitySettings, assess_quality, estimate_pose


def _rotate_3d(landmarks, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0):
    """Turn synthetic landmarks about the image centre by angles in degrees, in the
    conventions of `HeadPose`."""
    yaw, pitch, roll = (math.radians(angle) for angle in (yaw, pitch, roll))
    # Turning toward the subject's left moves their left eye (larger x) away (larger z).
    turn = np.array([[math.cos(yaw), 0, -math.sin(yaw)], [0, 1, 0], [math.sin(yaw), 0, math.cos(yaw)]])
    # Looking up moves the chin (larger y) nearer the camera (smaller z).
    nod = np.array([[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)], [0, -math.sin(pitch), math.cos(pitch)]])
    # Clockwise on screen, where y grows downward.
    tilt = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    center = np.array([landmarks.image_size[0] / 2, landmarks.image_size[1] / 2, 0.0])
    points = (landmarks.points.astype(np.float64) - center) @ (tilt @ turn @ nod).T + center
    return dataclasses.replace(landmarks, points=points.astype(np.float32))


def test_estimate_pose_frontal(synthetic_landmarks):
    pose = estimate_pose(synthetic_landmarks().points)
    assert pose.yaw_deg == pytest.approx(0.0, abs=1e-3)
    assert pose.pitch_deg == pytest.approx(0.0, abs=1e-3)
    assert pose.roll_deg == pytest.approx(0.0, abs=1e-3)


# Single-axis turns come back exactly. For combined turns the estimate follows other
# Euler conventions than `_rotate_3d`, which shifts pitch by 0.6 degrees at (20, -10, 15).
@pytest.mark.parametrize(
    "yaw, pitch, roll, tolerance",
    [(35, 0, 0, 0.01), (-50, 0, 0, 0.01), (0, 20, 0, 0.01), (0, -25, 0, 0.01), (0, 0, 30, 0.01), (20, -10, 15, 1.0)],
)
def test_estimate_pose_known_rotation(synthetic_landmarks, yaw, pitch, roll, tolerance):
    pose = estimate_pose(_rotate_3d(synthetic_landmarks(), yaw, pitch, roll).points)
    assert pose.yaw_deg == pytest.approx(yaw, abs=tolerance)
    assert pose.pitch_deg == pytest.approx(pitch, abs=tolerance)
    assert pose.roll_deg == pytest.approx(roll, abs=tolerance)


def test_assess_quality_frontal_passes(synthetic_landmarks):
    report = assess_quality(synthetic_landmarks(interocular=100.0))
    assert report.interocular_px == pytest.approx(100.0, rel=1e-4)
    assert report.flags == ()


def test_assess_quality_rejects_yaw(synthetic_landmarks):
    landmarks = _rotate_3d(synthetic_landmarks(), yaw=-45)
    with pytest.raises(FaceError, match=r"yaw -45 degrees exceeds the limit of 40"):
        assess_quality(landmarks, settings=QualitySettings(max_yaw_deg=40))
    assess_quality(landmarks, settings=QualitySettings(max_yaw_deg=50))


def test_assess_quality_rejects_pitch(synthetic_landmarks):
    landmarks = _rotate_3d(synthetic_landmarks(), pitch=30)
    with pytest.raises(FaceError, match=r"pitch \+30 degrees exceeds the limit of 20"):
        assess_quality(landmarks, settings=QualitySettings(max_pitch_deg=20))


def test_assess_quality_rejects_small_face(synthetic_landmarks):
    with pytest.raises(FaceError, match=r"face too small: inter-ocular distance 20.0 px is below the minimum of 30"):
        assess_quality(synthetic_landmarks(interocular=20.0), settings=QualitySettings(min_interocular_px=30))


def test_assess_quality_several_faces_flag(synthetic_landmarks):
    landmarks = dataclasses.replace(synthetic_landmarks(), num_faces=3, face_index=1)
    assert assess_quality(landmarks).flags == ("several_faces",)


def test_assess_quality_turned_away_flags(synthetic_landmarks):
    settings = QualitySettings(turned_away_yaw_deg=30)
    # Turned toward the subject's left: the left side faces away from the camera.
    report = assess_quality(_rotate_3d(synthetic_landmarks(), yaw=40), settings=settings)
    assert report.flags == ("cheek_left_turned_away", "undereye_left_turned_away")
    report = assess_quality(_rotate_3d(synthetic_landmarks(), yaw=-40), settings=settings)
    assert report.flags == ("cheek_right_turned_away", "undereye_right_turned_away")
    assert assess_quality(_rotate_3d(synthetic_landmarks(), yaw=20), settings=settings).flags == ()


def test_assess_quality_outside_image_flags(synthetic_landmarks):
    landmarks = synthetic_landmarks()
    points = landmarks.points.copy()
    points[:, 0] += 210
    shifted = dataclasses.replace(landmarks, points=points)
    crops = crop_regions(np.zeros((500, 500, 3), dtype=np.uint8), shifted, CropSettings())
    assert assess_quality(shifted, crops).flags == ("cheek_left_outside_image", "undereye_left_outside_image")


def test_quality_settings_validation():
    for bad in (
        {"max_yaw_deg": -1},
        {"max_yaw_deg": 120},
        {"max_pitch_deg": "30"},
        {"min_interocular_px": -5},
        {"turned_away_yaw_deg": True},
    ):
        with pytest.raises(ConfigError, match="invalid"):
            QualitySettings(**bad)


def test_estimate_pose_flipped_photo(detector, faces_dir):
    # A horizontal flip negates yaw and roll and keeps pitch. Measured on photos 040 and
    # 058 (turned 30-50 degrees): the two estimates differ by at most 3 degrees.
    for name in ("040", "058"):
        image = load_image(faces_dir / f"{name}.jpg")
        pose = estimate_pose(detector.detect(image).points)
        mirrored = estimate_pose(detector.detect(np.ascontiguousarray(image[:, ::-1])).points)
        assert abs(pose.yaw_deg) > 25, name
        assert mirrored.yaw_deg == pytest.approx(-pose.yaw_deg, abs=6), name
        assert mirrored.pitch_deg == pytest.approx(pose.pitch_deg, abs=6), name
        assert mirrored.roll_deg == pytest.approx(-pose.roll_deg, abs=6), name


def test_estimate_pose_turn_direction(detector, faces_dir):
    # In photo 040 the man looks toward the viewer's right, which is his own left.
    pose = estimate_pose(detector.detect(load_image(faces_dir / "040.jpg")).points)
    assert pose.yaw_deg > 30
