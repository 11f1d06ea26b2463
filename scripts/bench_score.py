"""Measure inference speed: `facepad score` cold start, warm latency, and `facepad embed` throughput.

1. Cold start: wall time of `facepad score PHOTO --checkpoint CKPT` as a new process, from
   start to exit (median of --repeats runs). Target <= 4 s.
2. Warm latency: one photo at a time through an open `Predictor` (load, detect, crop,
   network, 5 nearest training crops), median ms per photo.
3. Embed throughput over the photos in --faces: photos per second of `Predictor.predict`
   (what `facepad embed` runs), against the bound set by landmark detection alone plus
   network inference alone on the same photos' crops (each timed by itself, images
   already decoded). Target: embed >= 0.8 x the bound.

Usage:
    python scripts/bench_score.py --checkpoint runs/demo-.../best.pt [--faces ../shared/faces] [--repeats 5]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from facepad.checkpoint import find_latest_checkpoint
from facepad.cropper import Cropper
from facepad.errors import FacepadError
from facepad.inference import Predictor, load_model
from facepad.landmarks import create_detector
from facepad.loading import find_images, load_image
from facepad.model import predict_crops
from facepad.regions import REGION_SIDES, REGION_TYPES

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the newest runs/*/best.pt")
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    checkpoint = args.checkpoint or find_latest_checkpoint()
    photos, _ = find_images([args.faces])
    if not photos:
        raise SystemExit(f"no photos in {args.faces}")

    cold = _cold_start(checkpoint, photos[0], args.repeats)
    loaded = load_model(checkpoint, device="cpu")
    warm = _warm_latency(loaded, photos[:20])
    embed_rate, bound_rate, embedded = _embed_throughput(loaded, photos)

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; date {date.today()}")
    print(f"Checkpoint {checkpoint} (backbone {loaded.config.model.backbone}, crops {loaded.config.crop.size} px); "
          f"{len(photos)} photos from {args.faces}, {embedded} embedded.\n")
    print("| measure | value | target |")
    print("|---|---:|---|")
    print(f"| `facepad score` cold start, median of {args.repeats} | {cold:.2f} s | <= 4 s |")
    print(f"| warm latency per photo (load, detect, crop, network, neighbours) | {warm:.0f} ms | |")
    print(f"| `facepad embed` throughput | {embed_rate:.1f} photos/s | |")
    print(f"| bound: detection alone + network alone | {bound_rate:.1f} photos/s | |")
    print(f"| embed / bound | {embed_rate / bound_rate:.2f} | >= 0.8 |")


def _cold_start(checkpoint: Path, photo: Path, repeats: int) -> float:
    command = [sys.executable, "-m", "facepad", "score", str(photo), "--checkpoint", str(checkpoint)]
    env = {**os.environ, "GLOG_minloglevel": "2"}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _warm_latency(loaded, photos: list[Path]) -> float:
    times = []
    with Predictor(loaded, batch_photos=1) as predictor:
        list(predictor.predict(photos[:1], neighbours=5))  # warm-up
        for photo in photos:
            started = time.perf_counter()
            list(predictor.predict([photo], neighbours=5))
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _embed_throughput(loaded, photos: list[Path]) -> tuple[float, float, int]:
    with Predictor(loaded) as predictor:
        list(predictor.predict(photos[:2]))  # warm-up
        started = time.perf_counter()
        results = list(predictor.predict(photos))
        embed_seconds = time.perf_counter() - started
    embedded = sum(1 for r in results if r.error is None)

    # The bound: detection on decoded images, then the network on the crops, each timed alone.
    images = [load_image(photo) for photo in photos]
    with create_detector(loaded.config.landmarks.model_path) as detector:
        detector.detect(images[0])
        started = time.perf_counter()
        landmarks = []
        for image in images:
            try:
                landmarks.append(detector.detect(image))
            except FacepadError:
                landmarks.append(None)
        detect_seconds = time.perf_counter() - started
    with Cropper(loaded.config.crop, loaded.config.quality) as cropper:
        crops = []
        for image in images:
            try:
                photo = cropper.process_image(image)
            except FacepadError:
                continue
            crops.extend(photo.crops[name].image for name in REGION_SIDES)
    crops_array = np.stack(crops)
    regions = np.array([REGION_TYPES.index(name.split("_")[0]) for name in REGION_SIDES] * (len(crops) // 4))
    predict_crops(loaded.model, crops_array[:64], regions[:64], loaded.device)  # warm-up
    started = time.perf_counter()
    predict_crops(loaded.model, crops_array, regions, loaded.device)
    network_seconds = time.perf_counter() - started
    return len(photos) / embed_seconds, len(photos) / (detect_seconds + network_seconds), embedded


if __name__ == "__main__":
    main()
