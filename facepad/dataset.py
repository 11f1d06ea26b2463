"""Training data: crop sets built through the cache, augmentation, and the dataset.

A manifest row gives up to four labelled crops, one per region side, each with the
N-pair class that `facepad.classes.ClassTable` assigns.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from facepad.cache import CropCache
from facepad.classes import ClassTable
from facepad.config import AugmentConfig
from facepad.errors import FacepadError, ImageError
from facepad.manifest import ManifestRow
from facepad.regions import REGION_SIDES, REGION_TYPES

_logger = logging.getLogger(__name__)


@dataclass
class CropSet:
    """Region crops of many photos with their labels, one entry per crop."""

    images: np.ndarray  # [M, size, size, 3] uint8, right-side crops mirrored
    region_index: np.ndarray  # [M] int64 index into REGION_TYPES
    region_side: list[str]  # [M] e.g. "cheek_left"
    scores: np.ndarray  # [M] float32, NaN when unlabelled
    grades: np.ndarray  # [M] int64, -1 when none
    classes: np.ndarray  # [M] int64, -1 when unlabelled
    sources: list[str]  # [M] photo path
    subjects: list[str]  # [M]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # photos left out, with the reason

    def __len__(self) -> int:
        return len(self.region_side)

    def subset(self, mask: np.ndarray) -> "CropSet":
        """Return the crops where `mask` is true."""
        index = np.flatnonzero(mask)
        return CropSet(
            self.images[index], self.region_index[index], [self.region_side[i] for i in index],
            self.scores[index], self.grades[index], self.classes[index],
            [self.sources[i] for i in index], [self.subjects[i] for i in index], list(self.skipped),
        )


def build_crop_set(
    rows: Sequence[ManifestRow],
    cache: CropCache,
    classes: ClassTable,
    description: str = "cropping",
    keep_outside: bool = False,
    show_progress: bool = True,
) -> CropSet:
    """Crop every photo of `rows` through the cache and collect the labelled crops.

    Photos that cannot be read or have no usable face are listed in `skipped`. A crop
    whose region runs past the image border is left out unless `keep_outside`, because
    its padding would teach the model the border rather than the face.
    """
    images, region_index, region_side, scores, grades, labels, sources, subjects = [], [], [], [], [], [], [], []
    skipped: list[tuple[str, str]] = []
    for row in tqdm(rows, desc=description, unit="photo", disable=None if show_progress else True, leave=False):
        try:
            cached = cache.get(row.image)
        except (ImageError, OSError) as error:
            skipped.append((str(row.image), str(error)))
            continue
        if cached.error is not None:
            skipped.append((str(row.image), cached.error))
            continue
        for k, name in enumerate(REGION_SIDES):
            if cached.outside_image[k] and not keep_outside:
                continue
            region = name.split("_")[0]
            score = row.scores.get(name, math.nan)
            grade = row.grades.get(name)
            images.append(cached.crops[k])
            region_index.append(REGION_TYPES.index(region))
            region_side.append(name)
            scores.append(score)
            grades.append(-1 if grade is None else grade)
            labels.append(classes.class_of(region, score, grade))
            sources.append(str(row.image))
            subjects.append(row.subject)

    if images:
        stacked = np.stack(images)
    else:
        size = cache.crop.size
        stacked = np.zeros((0, size, size, 3), dtype=np.uint8)
    return CropSet(
        stacked,
        np.asarray(region_index, dtype=np.int64),
        region_side,
        np.asarray(scores, dtype=np.float32),
        np.asarray(grades, dtype=np.int64),
        np.asarray(labels, dtype=np.int64),
        sources,
        subjects,
        skipped,
    )


def build_augmentation(config: AugmentConfig, seed: int) -> A.Compose | None:
    """Return the training augmentation, or None when it is disabled.

    Nothing here flips or moves a region across the midline: a horizontal flip would turn
    a left crop into a right one, whose orientation the mirroring already fixed.
    """
    if not config.enabled:
        return None
    transforms = [
        A.Affine(
            rotate=(-config.rotate_deg, config.rotate_deg),
            scale=(1 - config.scale, 1 + config.scale),
            translate_percent=(-config.shift, config.shift),
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.8,
        ),
        A.RandomBrightnessContrast(brightness_limit=config.brightness, contrast_limit=config.contrast, p=0.8),
        A.HueSaturationValue(
            hue_shift_limit=round(20 * config.hue_saturation),
            sat_shift_limit=round(40 * config.hue_saturation),
            val_shift_limit=0,
            p=0.5,
        ),
        A.GaussianBlur(blur_limit=(3, 5), p=config.blur_prob),
        A.GaussNoise(std_range=(0.01, 0.04), p=config.noise_prob),
    ]
    return A.Compose(transforms, seed=seed)


class CropDataset(Dataset):
    """Serve crops as uint8 tensors [3, size, size] with region index, score and class.

    Normalisation happens on the batch (see `facepad.model.to_model_input`), so the data
    path stays in uint8 and cheap to copy.
    """

    def __init__(self, crops: CropSet, augmentation: A.Compose | None = None) -> None:
        self.crops = crops
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.crops)

    def set_epoch(self, seed: int) -> None:
        """Reseed the augmentation so that an epoch's random views depend only on the seed."""
        if self.augmentation is not None:
            self.augmentation.set_random_seed(seed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, float, int]:
        image = self.crops.images[index]
        if self.augmentation is not None:
            image = self.augmentation(image=image)["image"]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return (
            tensor,
            int(self.crops.region_index[index]),
            float(self.crops.scores[index]),
            int(self.crops.classes[index]),
        )


def require_crops(crops: CropSet, set_name: str) -> None:
    """Raise FacepadError when a crop set is empty, listing why the photos were skipped."""
    if len(crops) > 0:
        return
    reasons = "; ".join(f"{path}: {reason}" for path, reason in crops.skipped[:3])
    more = f" (and {len(crops.skipped) - 3} more)" if len(crops.skipped) > 3 else ""
    raise FacepadError(f"no usable labelled crop in the {set_name} set; {reasons or 'no photos'}{more}")
