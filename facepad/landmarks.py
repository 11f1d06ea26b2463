"""Face landmarks: 478 MediaPipe points per photo, from one of two backends.

The default backend is MediaPipe FaceMesh (the `mp.solutions` API of mediapipe 0.10.21,
whose wheel contains the face-detection and refined face-mesh models, so it works offline).
The second backend is the MediaPipe Tasks `FaceLandmarker`, used when a `.task` model file
is given. Both run in static-image mode, so no tracking state passes from one photo to the
next, and both return a `FaceLandmarks` in pixels of the full-size photo.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facepad.errors import ConfigError, FaceError

_logger = logging.getLogger(__name__)

NUM_LANDMARKS = 478

# Environment variable naming a FaceLandmarker `.task` file; it selects the Tasks backend.
MODEL_ENV_VAR = "FACEPAD_FACE_LANDMARKER"

# Faces the backends look for; the largest is taken and the count is reported.
MAX_FACES = 5

# Photos whose longer side exceeds this are downscaled for detection.
DEFAULT_MAX_SIDE = 1280


@dataclass(frozen=True)
class FaceLandmarks:
    """The 478 landmarks of one face in a photo.

    `points` is [478, 3] float32. x and y are in pixels of the full-size photo, measured
    from its top-left corner, so that pixel i spans [i, i + 1]. z is in the same pixel
    scale as x: MediaPipe's normalised depth times the photo width, smaller nearer the
    camera.
    """

    points: np.ndarray
    num_faces: int
    face_index: int
    image_size: tuple[int, int]  # (width, height)


class LandmarkDetector(Protocol):
    """A landmark backend. Detectors hold MediaPipe graphs: close them after use."""

    def detect(self, image: np.ndarray) -> FaceLandmarks:
        """Find the largest face in an RGB uint8 photo; raise `FaceError` when none is found."""
        ...

    def close(self) -> None:
        """Release the MediaPipe graph."""
        ...


class _DetectorBase:
    """Downscaling, face selection and context-manager support shared by both backends."""

    def __init__(self, max_side: int) -> None:
        if max_side < 64:
            raise ConfigError(f"max_side={max_side} is too small; give at least 64 pixels")
        self.max_side = max_side

    def detect(self, image: np.ndarray) -> FaceLandmarks:
        _check_image(image)
        height, width = image.shape[:2]
        small = _downscale(image, self.max_side)
        faces = self._detect_normalized(small)
        if not faces:
            raise FaceError("no face found; use a photo with the whole face visible and turned toward the camera")

        # Normalised coordinates do not depend on the image size, so scaling them by the
        # full-size width and height maps points found on the downscaled copy back.
        scale = np.array([width, height, width], dtype=np.float32)
        candidates = [face * scale for face in faces]
        areas = [_box_area(points) for points in candidates]
        face_index = int(np.argmax(areas))
        return FaceLandmarks(
            points=np.ascontiguousarray(candidates[face_index], dtype=np.float32),
            num_faces=len(candidates),
            face_index=face_index,
            image_size=(width, height),
        )

    def _detect_normalized(self, image: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FaceMeshDetector(_DetectorBase):
    """MediaPipe FaceMesh with refined landmarks (478 points), models from the wheel."""

    def __init__(self, max_side: int = DEFAULT_MAX_SIDE, min_detection_confidence: float = 0.5) -> None:
        super().__init__(max_side)
        with _native_logs_silenced():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=MAX_FACES,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
            )
            # The graph starts its threads on the first image; wait for them here.
            self._mesh.process(np.zeros((64, 64, 3), dtype=np.uint8))
        self._first_call = True

    def _detect_normalized(self, image: np.ndarray) -> list[np.ndarray]:
        if self._first_call:
            # MediaPipe's graph logs its start-up on the first image.
            with _native_logs_silenced():
                result = self._mesh.process(image)
            self._first_call = False
        else:
            result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return []
        return [_to_array(face.landmark) for face in result.multi_face_landmarks]

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


class FaceLandmarkerDetector(_DetectorBase):
    """MediaPipe Tasks `FaceLandmarker` from a `.task` model file, in image mode."""

    def __init__(self, model_path: str | os.PathLike, max_side: int = DEFAULT_MAX_SIDE) -> None:
        super().__init__(max_side)
        path = Path(model_path)
        if path.suffix != ".task":
            raise ConfigError(f"face landmarker model {path} is not a .task file; give a FaceLandmarker .task model")
        if not path.is_file():
            raise ConfigError(f"face landmarker model {path} not found; check the path or unset {MODEL_ENV_VAR}")

        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=MAX_FACES,
        )
        try:
            with _native_logs_silenced():
                self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as error:
            raise ConfigError(
                f"face landmarker model {path} cannot be loaded ({error}); give a valid .task file"
            ) from None
        self._mp_image = mp.Image
        self._image_format = mp.ImageFormat.SRGB

    def _detect_normalized(self, image: np.ndarray) -> list[np.ndarray]:
        result = self._landmarker.detect(self._mp_image(image_format=self._image_format, data=image))
        faces = [_to_array(face) for face in result.face_landmarks]
        # Models without iris refinement give 468 points; the pipeline needs all 478.
        for face in faces:
            if len(face) != NUM_LANDMARKS:
                raise ConfigError(
                    f"face landmarker model gives {len(face)} points, expected {NUM_LANDMARKS}; "
                    "use a FaceLandmarker model with iris landmarks"
                )
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None


def create_detector(model_path: str | os.PathLike | None = None, max_side: int = DEFAULT_MAX_SIDE) -> LandmarkDetector:
    """Create the Tasks backend when a `.task` file is given or named by
    `FACEPAD_FACE_LANDMARKER`, and the FaceMesh backend otherwise.

    Raises:
        ConfigError: the model file is missing, not a `.task` file, or cannot be loaded.
    """
    if model_path is None:
        model_path = os.environ.get(MODEL_ENV_VAR) or None
    if model_path is not None:
        _logger.debug("Using the MediaPipe Tasks FaceLandmarker from %s", model_path)
        return FaceLandmarkerDetector(model_path, max_side=max_side)
    return FaceMeshDetector(max_side=max_side)


@contextlib.contextmanager
def _native_logs_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while MediaPipe's C++ code starts up.

    MediaPipe 0.10.21 logs start-up notices (TensorFlow Lite delegate, feedback manager)
    through absl straight to the process's stderr, and no environment variable of that
    release turns them off. Python-level errors are raised as exceptions and not lost.
    Set FACEPAD_MEDIAPIPE_LOGS=1 to keep the notices.
    """
    if os.environ.get("FACEPAD_MEDIAPIPE_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        description = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected an RGB uint8 array of shape [height, width, 3], got {description}")


def _downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    longer = max(height, width)
    if longer <= max_side:
        return np.ascontiguousarray(image)
    factor = max_side / longer
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    _logger.debug("Detecting on a %d x %d copy of a %d x %d photo", size[0], size[1], width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _to_array(landmarks) -> np.ndarray:
    return np.array([(point.x, point.y, point.z) for point in landmarks], dtype=np.float32)


def _box_area(points: np.ndarray) -> float:
    extent = points[:, :2].max(axis=0) - points[:, :2].min(axis=0)
    return float(extent[0] * extent[1])
