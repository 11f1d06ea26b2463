"""The cropper: load, detect, check and crop one photo.

`Cropper` keeps one landmark detector (a MediaPipe graph) and reuses it for every photo,
so create one per process and close it when done.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from facepad.crops import CropSettings, RegionCrop, crop_regions
from facepad.errors import FaceError
from facepad.landmarks import (
    DEFAULT_MAX_SIDE,
    FaceLandmarks,
    LandmarkDetector,
    create_detector,
)
from facepad.loading import load_image
from facepad.quality import QualityReport, QualitySettings, assess_quality

_logger = logging.getLogger(__name__)


@dataclass
class PhotoCrops:
    """The landmarks, quality report and four region crops of one photo."""

    source: str
    landmarks: FaceLandmarks
    quality: QualityReport
    crops: dict[str, RegionCrop]


class Cropper:
    """Turns photos into region crops with one detector and fixed settings.

    Pass `detector` to share an open detector (the cropper then leaves closing it to the
    caller); otherwise one is created from `model_path` (see `create_detector`).
    """

    def __init__(
        self,
        crop: CropSettings = CropSettings(),
        quality: QualitySettings = QualitySettings(),
        detector: LandmarkDetector | None = None,
        model_path: str | os.PathLike | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
    ) -> None:
        # Settings
        self.crop_settings = crop
        self.quality_settings = quality

        # Detector, and whether this cropper must close it
        self._owns_detector = detector is None
        self.detector = detector if detector is not None else create_detector(model_path, max_side)

    def process_image(self, image: np.ndarray, source: str = "<array>") -> PhotoCrops:
        """Detect, check and crop a photo given as an RGB uint8 array.

        Raises:
            FaceError: no face, or the face fails a quality check; the message starts
                with `source`.
        """
        try:
            landmarks = self.detector.detect(image)
            crops = crop_regions(image, landmarks, self.crop_settings)
            quality = assess_quality(landmarks, crops, self.quality_settings)
        except FaceError as error:
            raise FaceError(f"{source}: {error}") from None
        return PhotoCrops(source=source, landmarks=landmarks, quality=quality, crops=crops)

    def process_path(self, path: str | os.PathLike) -> PhotoCrops:
        """Load a photo with `load_image`, then detect, check and crop it.

        Raises:
            ImageError: the file cannot be read as an image.
            FaceError: no face, or the face fails a quality check.
        """
        return self.process_image(load_image(path), source=str(path))

    def close(self) -> None:
        """Close the detector if this cropper created it."""
        if self._owns_detector and self.detector is not None:
            self.detector.close()
        self.detector = None

    def __enter__(self) -> Cropper:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
