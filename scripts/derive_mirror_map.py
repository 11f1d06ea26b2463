"""Derive the 478-point landmark mirror permutation from detections on flipped photos.

For each photo, landmarks are detected on the photo and on its horizontal flip, and the
flipped detection is mapped back into the photo's coordinates. Landmark j found on the
flipped photo then lies where the mirror partner of j lies on the photo, so the nearest
landmark of the photo's own detection votes for that partner. Distances are averaged
over all photos, and a greedy matching on the symmetrised mean distance turns the votes
into an involution: pairs (i, j) with perm[i] == j and perm[j] == i, and fixed points on
the facial midline.

Usage:
    python scripts/derive_mirror_map.py [--faces DIR] [--out facepad/data/mirror_permutation.txt]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from facepad.errors import FacepadError
from facepad.landmarks import NUM_LANDMARKS, create_detector
from facepad.loading import find_images, load_image
from facepad.regions import eye_centers

_logger = logging.getLogger("derive_mirror_map")

REPO = Path(__file__).resolve().parents[1]


def collect_distances(files: list[Path]) -> tuple[np.ndarray, np.ndarray, int]:
    """Return the mean normalised distance matrix, the nearest-point votes and the photo count.

    distance[j, i] is the mean distance, in inter-ocular distances, between landmark j of
    the flipped detection (mapped back) and landmark i of the photo's detection.
    """
    distance = np.zeros((NUM_LANDMARKS, NUM_LANDMARKS), dtype=np.float64)
    votes = np.zeros((NUM_LANDMARKS, NUM_LANDMARKS), dtype=np.int64)
    used = 0
    with create_detector() as detector:
        for file in files:
            try:
                image = load_image(file)
                original = detector.detect(image)
                flipped = detector.detect(np.ascontiguousarray(image[:, ::-1]))
            except FacepadError as error:
                _logger.info("Skipping %s: %s", file, error)
                continue
            points = original.points[:, :2].astype(np.float64)
            mirrored = flipped.points[:, :2].astype(np.float64)
            mirrored[:, 0] = image.shape[1] - mirrored[:, 0]
            left, right = eye_centers(original.points)
            interocular = np.linalg.norm(left[:2] - right[:2])
            pair = np.linalg.norm(mirrored[:, None, :] - points[None, :, :], axis=2) / interocular
            distance += pair
            votes[np.arange(NUM_LANDMARKS), pair.argmin(axis=1)] += 1
            used += 1
    if used == 0:
        raise SystemExit("no photo with a detectable face; give a folder of frontal portraits")
    return distance / used, votes, used


def match_involution(distance: np.ndarray) -> np.ndarray:
    """Pair landmarks greedily by symmetrised mean distance; unpaired ones map to themselves."""
    symmetric = (distance + distance.T) / 2
    order = np.argsort(symmetric, axis=None)
    permutation = np.full(NUM_LANDMARKS, -1, dtype=np.int64)
    for flat in order:
        i, j = divmod(int(flat), NUM_LANDMARKS)
        if permutation[i] < 0 and permutation[j] < 0:
            permutation[i] = j
            permutation[j] = i
        if np.all(permutation >= 0):
            break
    return permutation


def write_permutation(permutation: np.ndarray, path: Path, photos: int) -> None:
    header = (
        "Landmark mirror permutation of the 478 MediaPipe face-mesh points (refined, with iris).\n"
        "Column 2 is the index of the point that mirrors the point of column 1 across the facial\n"
        f"midline. Derived by scripts/derive_mirror_map.py from {photos} photos and their\n"
        "horizontal flips; points that map to themselves lie on the midline.\n"
        "index mirror"
    )
    table = np.stack([np.arange(NUM_LANDMARKS), permutation], axis=1)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    np.savetxt(temporary, table, fmt="%d", header=header)
    os.replace(temporary, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--out", type=Path, default=REPO / "facepad" / "data" / "mirror_permutation.txt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    files, rejected = find_images([args.faces])
    if rejected or not files:
        raise SystemExit(f"no photos in {args.faces}; give a folder of frontal portraits with --faces")
    distance, votes, photos = collect_distances(files)
    permutation = match_involution(distance)

    if not np.array_equal(permutation[permutation], np.arange(NUM_LANDMARKS)):
        raise SystemExit("the matching is not an involution; this is a bug in match_involution")
    majority = votes.argmax(axis=1)
    share = votes.max(axis=1) / photos
    disagree = np.flatnonzero(majority != permutation)
    residual = distance[np.arange(NUM_LANDMARKS), permutation]
    print(f"photos: {photos}")
    print(f"fixed points (midline): {int(np.sum(permutation == np.arange(NUM_LANDMARKS)))}")
    print(f"points whose majority vote differs from the matching: {disagree.tolist()}")
    print(f"lowest majority share: {share.min():.2f} (point {int(share.argmin())})")
    print(
        f"mean distance to the matched partner: median {np.median(residual):.4f}, "
        f"max {residual.max():.4f} inter-ocular distances (point {int(residual.argmax())})"
    )
    write_permutation(permutation, args.out, photos)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
