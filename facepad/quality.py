"""Quality checks: head pose and face size from landmarks, rejections and flags.

A photo is rejected (with `FaceError` and the reason) when its head pose or face size
makes the region crops unreliable. Problems that leave the crops usable are reported as
flags instead.

NOTE: nothing checks whether a region is hidden (by a hand, a camera, sunglasses or hair):
FaceMesh places all 478 points even on covered parts of a face, so such crops pass
unflagged. Neither skin-colour statistics nor the detector's score separated hidden from
visible regions on the shared test portraits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from facepad.crops import RegionCrop
from facepad.errors import ConfigError, FaceError
from facepad.landmarks import FaceLandmarks
from facepad.regions import REGION_TYPES, eye_centers, interocular_distance

# Midline landmarks: the top of the forehead and the bottom of the chin.
FOREHEAD = 10
CHIN = 152

# Flag of a photo with more than one face; the largest face was used.
FLAG_SEVERAL_FACES = "several_faces"
# Suffixes of region side flags: the polygon runs past the image border, or the side
# faces away from the camera so that its crop is foreshortened.
FLAG_OUTSIDE_IMAGE = "outside_image"
FLAG_TURNED_AWAY = "turned_away"


@dataclass(frozen=True)
class QualitySettings:
    """Limits beyond which a photo is rejected. The defaults here are facepad's defaults.

    `max_yaw_deg` and `max_pitch_deg` bound the absolute head angles in degrees;
    `min_interocular_px` is the smallest (3D) inter-ocular distance in pixels of the
    full-size photo. Beyond `turned_away_yaw_deg` of |yaw|, the regions of the side
    that faces away from the camera are flagged but still cropped.
    """

    # NOTE: the yaw limit is lenient on purpose: 8 of the 100 test portraits are turned
    # 50-60 degrees and still give usable near-side crops. Their far-side crops carry the
    # "turned_away" flag; filter on it where foreshortening matters.
    max_yaw_deg: float = 60.0
    max_pitch_deg: float = 35.0
    min_interocular_px: float = 30.0
    turned_away_yaw_deg: float = 30.0

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("max_yaw_deg", self.max_yaw_deg, 0.0, 90.0),
            ("max_pitch_deg", self.max_pitch_deg, 0.0, 90.0),
            ("min_interocular_px", self.min_interocular_px, 0.0, math.inf),
            ("turned_away_yaw_deg", self.turned_away_yaw_deg, 0.0, 90.0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(f"{name}={value!r} is invalid; give a number in [{low:g}, {high:g}]")


@dataclass(frozen=True)
class HeadPose:
    """Head angles in degrees, from the landmarks' 3D face frame.

    `yaw` is positive when the subject turns toward their own left, so that the nose
    points to the viewer's right. `pitch` is positive when the subject looks up. `roll` is
    the eye line's angle in the image, positive when the line runs downhill toward the
    viewer's right (a clockwise tilt on screen).
    """

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass(frozen=True)
class QualityReport:
    """Pose, face size and flags of a photo that passed the quality checks.

    `flags` contains `"several_faces"` when more than one face was found,
    `"<region side>_turned_away"` for the regions of the side facing away from the camera
    when |yaw| exceeds `turned_away_yaw_deg`, and `"<region side>_outside_image"` for each
    region side whose polygon runs past the image border.
    """

    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    interocular_px: float
    flags: tuple[str, ...]


def estimate_pose(points: np.ndarray) -> HeadPose:
    """Estimate yaw, pitch and roll from [478, 3] landmarks in pixels.

    The face frame's x axis runs from the right to the left eye centre. Its y axis runs
    from the forehead to the chin, made orthogonal to x. Both axes are 3D because z
    shares the pixel scale of x. The angles are those of that frame relative to the camera.
    """
    left, right = eye_centers(points)
    x_axis = _unit(left - right)
    down = points[CHIN] - points[FOREHEAD]
    y_axis = _unit(down - np.dot(down, x_axis) * x_axis)

    # z grows away from the camera, so an eye line that recedes on the subject's left
    # (positive x_axis z) is a turn toward the subject's left.
    yaw = math.degrees(math.atan2(x_axis[2], math.hypot(x_axis[0], x_axis[1])))
    # A chin nearer the camera than the forehead (negative y_axis z) is a look up.
    pitch = math.degrees(math.atan2(-y_axis[2], math.hypot(y_axis[0], y_axis[1])))
    roll = math.degrees(math.atan2(x_axis[1], x_axis[0]))
    return HeadPose(yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)


def assess_quality(
    landmarks: FaceLandmarks,
    crops: Mapping[str, RegionCrop] | None = None,
    settings: QualitySettings = QualitySettings(),
) -> QualityReport:
    """Check pose and face size, and collect flags from the landmarks and crops.

    Raises:
        FaceError: |yaw| or |pitch| exceeds its limit, or the face is too small; the
            message names the measured value and the limit.
    """
    pose = estimate_pose(landmarks.points)
    interocular = interocular_distance(landmarks.points)

    if interocular < settings.min_interocular_px:
        raise FaceError(
            f"face too small: inter-ocular distance {interocular:.1f} px is below the minimum of "
            f"{settings.min_interocular_px:g} px; use a closer or larger photo, or lower the limit (crop --min-iod, config quality.min_interocular_px)"
        )
    if abs(pose.yaw_deg) > settings.max_yaw_deg:
        raise FaceError(
            f"head turned too far: yaw {pose.yaw_deg:+.0f} degrees exceeds the limit of "
            f"{settings.max_yaw_deg:g}; use a frontal photo, or raise the limit (crop --max-yaw, config quality.max_yaw_deg)"
        )
    if abs(pose.pitch_deg) > settings.max_pitch_deg:
        raise FaceError(
            f"head tilted too far up or down: pitch {pose.pitch_deg:+.0f} degrees exceeds the limit of "
            f"{settings.max_pitch_deg:g}; use a frontal photo, or raise the limit (crop --max-pitch, config quality.max_pitch_deg)"
        )

    flags = []
    if landmarks.num_faces > 1:
        flags.append(FLAG_SEVERAL_FACES)
    if abs(pose.yaw_deg) > settings.turned_away_yaw_deg:
        # A turn toward the subject's left (positive yaw) takes their left side away.
        far_side = "left" if pose.yaw_deg > 0 else "right"
        flags.extend(f"{region}_{far_side}_{FLAG_TURNED_AWAY}" for region in REGION_TYPES)
    for name, crop in (crops or {}).items():
        if crop.outside_image:
            flags.append(f"{name}_{FLAG_OUTSIDE_IMAGE}")
    return QualityReport(
        yaw_deg=pose.yaw_deg,
        pitch_deg=pose.pitch_deg,
        roll_deg=pose.roll_deg,
        interocular_px=interocular,
        flags=tuple(flags),
    )


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    norm = np.linalg.norm(vector)
    if norm < 1e-9:
        raise FaceError("degenerate landmarks: two reference points coincide")
    return vector / norm
