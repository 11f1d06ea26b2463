"""Tests of the landmark backends with real MediaPipe on real faces."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from facepad.errors import ConfigError, FaceError
from facepad.landmarks import MODEL_ENV_VAR, NUM_LANDMARKS, FaceLandmarkerDetector, create_detector
from facepad.loading import load_image
from facepad.regions import interocular_distance


def test_detect_frontal_face(detector, faces_dir):
    image = load_image(faces_dir / "001.jpg")
    landmarks = detector.detect(image)
    assert landmarks.points.shape == (NUM_LANDMARKS, 3)
    assert landmarks.points.dtype == np.float32
    assert landmarks.num_faces == 1
    assert landmarks.face_index == 0
    assert landmarks.image_size == (500, 500)
    assert np.all(landmarks.points[:, :2] > 0)
    assert np.all(landmarks.points[:, :2] < 500)


def test_detect_subject_left_eye_on_viewer_right(detector, grace_hopper):
    points = detector.detect(load_image(grace_hopper)).points
    # 263 is the outer corner of the subject's left eye, 33 that of the right eye.
    assert points[263, 0] > points[1, 0] > points[33, 0]


def test_detect_no_face(detector, tmp_path):
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8), (0, 0), 3)
    with pytest.raises(FaceError, match="no face found"):
        detector.detect(np.ascontiguousarray(texture))


def test_detect_static_mode_keeps_no_state(detector, faces_dir):
    # In tracking mode a face found in one image would be carried into the next.
    detector.detect(load_image(faces_dir / "001.jpg"))
    with pytest.raises(FaceError):
        detector.detect(np.full((500, 500, 3), 128, dtype=np.uint8))


def test_detect_several_faces_takes_largest(detector, faces_dir):
    large = cv2.resize(load_image(faces_dir / "001.jpg"), (400, 400))
    small = cv2.resize(load_image(faces_dir / "035.jpg"), (200, 200))
    canvas = np.full((500, 800, 3), 120, dtype=np.uint8)
    canvas[50:450, 0:400] = large
    canvas[150:350, 500:700] = small

    landmarks = detector.detect(canvas)
    assert landmarks.num_faces == 2
    center = landmarks.points[:, :2].mean(axis=0)
    assert 0 < center[0] < 400, "the smaller face on the right was taken"
    assert 50 < center[1] < 450


def test_detect_huge_photo_maps_points_back(detector, faces_dir):
    image = load_image(faces_dir / "001.jpg")
    reference = detector.detect(image).points[:, :2]
    # The same face 12 times larger, in an 8000 x 6000 photo, 1000 px from the left edge.
    huge = np.zeros((6000, 8000, 3), dtype=np.uint8)
    huge[:, 1000:7000] = cv2.resize(image, (6000, 6000), interpolation=cv2.INTER_LINEAR)

    landmarks = detector.detect(huge)
    assert landmarks.image_size == (8000, 6000)
    expected = reference * 12 + np.array([1000, 0])
    error = np.linalg.norm(landmarks.points[:, :2] - expected, axis=1) / interocular_distance(landmarks.points)
    # Measured: 0.014 inter-ocular distances on average (detection on a 1280 x 960 copy).
    assert error.mean() < 0.04


def test_detect_rejects_non_rgb_array(detector):
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(np.zeros((100, 100, 3), dtype=np.float32))


def test_create_detector_missing_task_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        create_detector(tmp_path / "face_landmarker.task")


def test_create_detector_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match="not a .task file"):
        create_detector(tmp_path / "face_landmarker.tflite")


def test_create_detector_corrupt_task_file(tmp_path):
    path = tmp_path / "broken.task"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        create_detector(path)


def test_create_detector_reads_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_ENV_VAR, str(tmp_path / "absent.task"))
    with pytest.raises(ConfigError, match=MODEL_ENV_VAR):
        create_detector()


def _task_model() -> Path | None:
    path = os.environ.get(MODEL_ENV_VAR)
    return Path(path) if path and Path(path).is_file() else None


@pytest.mark.skipif(
    _task_model() is None, reason=f"no FaceLandmarker .task model; set {MODEL_ENV_VAR} to run this test"
)
def test_face_landmarker_backend_matches_face_mesh(detector, faces_dir):
    image = load_image(faces_dir / "001.jpg")
    with FaceLandmarkerDetector(_task_model()) as tasks_detector:
        landmarks = tasks_detector.detect(image)
    assert landmarks.points.shape == (NUM_LANDMARKS, 3)
    reference = detector.detect(image).points
    error = np.linalg.norm(landmarks.points[:, :2] - reference[:, :2], axis=1) / interocular_distance(reference)
    assert error.mean() < 0.1
