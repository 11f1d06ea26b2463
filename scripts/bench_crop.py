"""Benchmark the crop path against landmark detection alone.

Two measurements over the same photos:

1. Per photo, in turn: landmark detection on the already-decoded image, then the whole
   crop path run serially (load, detect, check, crop, write four PNG crops), timed per
   stage. Interleaving the two per photo makes load from other processes hit both
   alike. Prints the median milliseconds of each.
2. `facepad crop` as users run it (`run_crop`: decoding one photo ahead and writing
   crops and previews behind, in worker threads): wall time divided by the number of
   photos, against the mean time of detection alone.

Usage:
    python scripts/bench_crop.py [--faces DIR] [--repeats N]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from facepad.crop_command import run_crop, write_png
from facepad.cropper import Cropper
from facepad.crops import crop_regions
from facepad.errors import FacepadError
from facepad.landmarks import create_detector
from facepad.loading import find_images, load_image
from facepad.quality import assess_quality

REPO = Path(__file__).resolve().parents[1]


def time_photo(cropper: Cropper, path: Path, image: np.ndarray, out_dir: Path) -> tuple[float, ...]:
    """Return seconds for detection alone, then for the serial crop path of one photo and
    its stages: load, detect, check and crop, write."""
    start = time.perf_counter()
    cropper.detector.detect(image)
    detection = time.perf_counter() - start

    start = time.perf_counter()
    loaded = load_image(path)
    loaded_at = time.perf_counter()
    landmarks = cropper.detector.detect(loaded)
    detected_at = time.perf_counter()
    crops = crop_regions(loaded, landmarks, cropper.crop_settings)
    assess_quality(landmarks, crops, cropper.quality_settings)
    cropped_at = time.perf_counter()
    for name, crop in crops.items():
        write_png(out_dir / f"{path.stem}_{name}.png", crop.image)
    written_at = time.perf_counter()
    return (
        detection,
        written_at - start,
        loaded_at - start,
        detected_at - loaded_at,
        cropped_at - detected_at,
        written_at - cropped_at,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces", help="folder of portraits")
    parser.add_argument("--repeats", type=int, default=2, help="passes over the photos")
    args = parser.parse_args()

    files, _ = find_images([args.faces])
    if not files:
        raise SystemExit(f"no photos in {args.faces}; give a folder of portraits with --faces")
    images = {path: load_image(path) for path in files}

    timings: list[tuple[float, ...]] = []
    skipped = set()
    with tempfile.TemporaryDirectory() as out, create_detector() as detector, Cropper(detector=detector) as cropper:
        # Warm-up: the first MediaPipe calls initialise the graph.
        for path in files[:3]:
            try:
                time_photo(cropper, path, images[path], Path(out))
            except FacepadError:
                pass
        for _ in range(args.repeats):
            for path in files:
                try:
                    timings.append(time_photo(cropper, path, images[path], Path(out)))
                except FacepadError:
                    skipped.add(path.name)

        command_ms = []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            run_crop([args.faces], Path(out) / f"run{repeat}", progress=False, detector=detector)
            command_ms.append((time.perf_counter() - start) * 1000 / len(files))

    detection, crop_path, load, detect, check_crop, write = (
        statistics.median(column) * 1000 for column in zip(*timings)
    )
    detection_mean = statistics.mean(row[0] for row in timings) * 1000
    command = min(command_ms)
    print(f"date: {datetime.date.today().isoformat()}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"photos: {len(files)} ({len(skipped)} rejected: {', '.join(sorted(skipped))}), repeats: {args.repeats}")
    print("| measurement | ms per photo | ratio to detection |")
    print("|---|---|---|")
    print(f"| landmark detection alone, median | {detection:.1f} | 1.00 |")
    print(
        f"| serial crop path (load, detect, check, crop, write 4 PNGs), median | {crop_path:.1f} | {crop_path / detection:.2f} |"
    )
    print(f"| - of which load (JPEG decode), median | {load:.1f} | {load / detection:.2f} |")
    print(f"| - of which detect, median | {detect:.1f} | {detect / detection:.2f} |")
    print(f"| - of which check and crop, median | {check_crop:.1f} | {check_crop / detection:.2f} |")
    print(f"| - of which write 4 PNGs, median | {write:.1f} | {write / detection:.2f} |")
    print(f"| landmark detection alone, mean | {detection_mean:.1f} | 1.00 |")
    print(
        f"| `run_crop` incl. previews and index, wall time / photos (best of {args.repeats}) | {command:.1f} | {command / detection_mean:.2f} |"
    )


if __name__ == "__main__":
    main()
