"""Shared fixtures: the face photos, grace_hopper.jpg, one MediaPipe detector, synthetic landmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from facepad.landmarks import NUM_LANDMARKS, FaceLandmarks, create_detector
from facepad.regions import EYE_CORNERS, mirror_permutation, region_polygon

# The repository sits beside `shared/` on development machines and in CI.
FACES_DIR = Path(__file__).resolve().parents[2] / "shared" / "faces"

# Portraits of the shared set whose head pose is within a few degrees of frontal.
FRONTAL_FACES = ("001", "023", "035", "037", "060", "074")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The folder of 100 shared portraits (001.jpg ... 100.jpg); skips the test when absent."""
    if not (FACES_DIR / "001.jpg").is_file():
        pytest.skip(f"shared face photos not found at {FACES_DIR}; place the repository beside shared/")
    return FACES_DIR


@pytest.fixture(scope="session")
def grace_hopper() -> Path:
    """Path of matplotlib's public-domain portrait grace_hopper.jpg (512 x 600)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def detector():
    """One FaceMesh detector for the whole test session."""
    with create_detector() as shared:
        yield shared


def make_synthetic_landmarks(
    width: int = 500, height: int = 500, interocular: float = 100.0, seed: int = 0
) -> FaceLandmarks:
    """Build mirror-symmetric landmarks of a flat, frontal face centred in the image.

    Points come in mirror pairs (`mirror_permutation`) at (x, y) and (2 cx - x, y), with
    midline points at x = cx and z = 0 everywhere. Eye corners, forehead and chin sit at
    face-like places. The left region polygons lie right of the midline on screen, around
    their usual places. The other points are random.
    """
    rng = np.random.default_rng(seed)
    permutation = mirror_permutation()
    cx, cy = width / 2, height / 2
    points = np.zeros((NUM_LANDMARKS, 3), dtype=np.float64)
    points[:, 0] = cx + rng.uniform(0.05, 1.0, NUM_LANDMARKS) * interocular
    points[:, 1] = cy + rng.uniform(-1.0, 1.0, NUM_LANDMARKS) * interocular

    # Left polygons: vertices on ellipses around the under-eye and cheek centres.
    placed = set()
    for region, center, radii in (
        ("undereye", (0.5, -0.2), (0.3, 0.1)),
        ("cheek", (0.5, 0.25), (0.25, 0.22)),
    ):
        indices = [index for index in region_polygon(f"{region}_left") if index not in placed]
        angles = np.linspace(0, 2 * np.pi, len(indices), endpoint=False)
        for index, angle in zip(indices, angles):
            points[index, 0] = cx + (center[0] + radii[0] * np.cos(angle)) * interocular
            points[index, 1] = cy + (center[1] + radii[1] * np.sin(angle)) * interocular
            placed.add(index)

    outer, inner = EYE_CORNERS["left"]
    points[outer, :2] = (cx + 0.75 * interocular, cy - 0.3 * interocular)
    points[inner, :2] = (cx + 0.25 * interocular, cy - 0.3 * interocular)
    points[10, :2] = (cx, cy - 1.2 * interocular)  # forehead
    points[152, :2] = (cx, cy + 1.4 * interocular)  # chin

    # Mirror: the partner of a left point is its reflection; midline points sit at cx.
    for index in range(NUM_LANDMARKS):
        partner = permutation[index]
        if partner == index:
            points[index, 0] = cx
        elif (
            index in placed
            or index in (outer, inner)
            or (partner not in placed and partner not in (outer, inner) and index < partner)
        ):
            points[partner, 0] = 2 * cx - points[index, 0]
            points[partner, 1] = points[index, 1]
    return FaceLandmarks(points=points.astype(np.float32), num_faces=1, face_index=0, image_size=(width, height))


@pytest.fixture
def synthetic_landmarks():
    """Factory of mirror-symmetric synthetic landmarks (see `make_synthetic_landmarks`)."""
    return make_synthetic_landmarks


# --- A small demo set and one short training run, shared by the training and CLI tests ---


@dataclass
class TrainedRun:
    """A finished two-epoch run on a small demo set, with the config and overrides that made it."""

    config: object
    overrides: list
    result: object


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory):
    """Return the manifest of a demo set: 4 warped variants of each of the two default portraits."""
    from facepad.demo_data import make_demo_set

    folder = tmp_path_factory.mktemp("demo")
    return make_demo_set(folder, per_face=4, seed=0)


@pytest.fixture(scope="session")
def trained_run(demo_set, tmp_path_factory):
    """Train `test_resnet` (a tiny timm model) for 2 epochs on the demo set, with real crops."""
    from facepad.config import load_config
    from facepad.training import train

    root = tmp_path_factory.mktemp("training")
    overrides = [
        f"data.manifest={demo_set}",
        f"data.cache_dir={root / 'cache'}",
        "data.score_bins=4",
        "crop.size=32",
        "model.backbone=test_resnet",
        "model.embedding_dim=16",
        "model.head_hidden=8",
        "sampler.classes_per_batch=6",
        "train.epochs=2",
        "train.warmup_steps=2",
        "train.log_every=1",
        "train.exemplars=40",
        "train.projector_crops=20",
        "augment.enabled=true",
    ]
    config = load_config(None, overrides + [f"train.out_dir={root / 'runs'}", "train.run_name=tiny"])
    result = train(config)
    return TrainedRun(config, overrides, result)
