"""Measure how well the demo config recovers known warp magnitudes on unseen people.

Builds a demo set from the 100 CC0 portraits in ../shared/faces (`--per-face` warped
variants each), holds out 20 % of the people (20 of 100) for validation, and trains with
configs/demo.yaml twice from the same seed:

1. the multi-class N-pair loss, with the config's settings but 20 epochs and no time limit;
2. a triplet loss with one negative per anchor, at the same batch size, with the same
   learning-rate schedule and for the same number of optimiser steps as run 1 took.

Prints per region type the validation MAE, Pearson r and precision@1 of both runs as a
markdown table. Targets for the N-pair run: MAE <= 0.08 and r >= 0.9.

The warped photos stay under --out: the portraits' licence requests that warped versions are
not published.

Usage:
    python scripts/bench_quality.py [--faces ../shared/faces] [--per-face 16] [--out /tmp/facepad-bench-quality]
        [--set key=value ...]
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from datetime import date
from pathlib import Path

import torch

from facepad.checkpoint import load_checkpoint
from facepad.config import load_config
from facepad.demo_data import make_demo_set
from facepad.regions import REGION_TYPES
from facepad.training import train

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--per-face", type=int, default=16)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=Path("/tmp/facepad-bench-quality"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config override")
    parser.add_argument("--skip-triplet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    manifest = args.out / "demo" / "manifest.csv"
    started = time.monotonic()
    reused = manifest.is_file()
    if not reused:
        if not args.faces.is_dir():
            raise SystemExit(f"faces folder {args.faces} not found; pass --faces DIR")
        make_demo_set(args.out / "demo", faces_dir=args.faces, per_face=args.per_face, seed=0)
    generation_minutes = (time.monotonic() - started) / 60

    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The demo config's 80 epochs suit its set of 2 portraits. This set is about 40 times
    # larger, so the learning-rate schedule is set to 20 epochs (about 4.5 minutes on 2 cores).
    common = [
        f"data.manifest={manifest}",
        f"data.cache_dir={args.out / 'cache'}",
        "data.val_fraction=0.2",
        "data.workers=2",
        "train.epochs=20",
        "train.max_minutes=null",
        f"train.out_dir={args.out / 'runs'}",
        *args.overrides,
    ]
    npair_config = load_config(args.config, common + [f"train.run_name=npair-{stamp}"])
    npair = train(npair_config, config_name="npair")
    steps = load_checkpoint(npair.last_checkpoint)["training_state"]["step"]

    rows = [("N-pair", npair, steps)]
    if not args.skip_triplet:
        triplet_config = load_config(args.config, common + [
            f"train.run_name=triplet-{stamp}", "loss.kind=triplet", f"train.max_steps={steps}",
        ])
        triplet = train(triplet_config, config_name="triplet")
        rows.append(("triplet", triplet, load_checkpoint(triplet.last_checkpoint)["training_state"]["step"]))

    print(f"\nMachine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"date {date.today()}")
    generation = "reused from an earlier run" if reused else f"generated in {generation_minutes:.1f} min"
    print(f"Demo set: {manifest} ({args.per_face} variants per face), {generation}; "
          f"config {args.config.name} {' '.join(args.overrides)}\n")
    print("| loss | steps | minutes | best epoch | region | val MAE | val Pearson r | val precision@1 | val MAP@R |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for name, result, step_count in rows:
        metrics = result.best_metrics
        for region in REGION_TYPES:
            print(f"| {name} | {step_count} | {result.minutes:.1f} | {result.best_epoch} | {region} | "
                  f"{metrics.get(f'val/{region}/mae', float('nan')):.3f} | "
                  f"{metrics.get(f'val/{region}/pearson_r', float('nan')):.3f} | "
                  f"{metrics.get(f'val/{region}/precision_at_1', float('nan')):.3f} | "
                  f"{metrics.get(f'val/{region}/map_at_r', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
