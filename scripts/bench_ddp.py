"""Measure distributed training overhead: step time and crops per second for 1 and 2 processes.

Launches `torchrun --standalone --nproc_per_node=K` for K in --procs, each running the
worker below: cached crops of a demo set, `NPairBatchSampler` sharded over the ranks,
DistributedDataParallel and `NPairLoss` with gathering. The global batch (N classes x 2
crops) is the same for every K, so on a machine with K idle devices the step time should
fall with K. On 2 CPU cores with Gloo it shows the overhead of the collectives instead.

Usage:
    python scripts/bench_ddp.py [--faces ../shared/faces] [--procs 1 2] [--device cpu|cuda]
        [--backbone resnet10t] [--size 64] [--classes 16] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from bench_common import small_demo_set  # scripts/bench_common.py, beside this script

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--faces-used", type=int, default=24)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("/tmp/facepad-bench-ddp"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    manifest = small_demo_set(args.faces, args.out, args.faces_used, per_face=4)
    rows = []
    for procs in args.procs:
        env = {**os.environ, "GLOG_minloglevel": "2", "FACEPAD_BENCH_MANIFEST": str(manifest)}
        if args.device == "cpu":
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // procs))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                   __file__, "--worker", *_forwarded(args)]
        finished = subprocess.run(command, capture_output=True, text=True, env=env)
        if finished.returncode != 0:
            raise SystemExit(f"{procs} process(es) failed:\n{finished.stderr[-3000:]}")
        result = json.loads(finished.stdout.strip().splitlines()[-1])
        rows.append((procs, result))

    import torch

    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, device {args.device}, torch {torch.__version__}; "
          f"date {date.today()}")
    print(f"Backbone {args.backbone}, crops {args.size} px, global batch {2 * args.classes} crops "
          f"({args.classes} classes x 2), {args.steps} timed steps, NPairLoss with gathering.\n")
    print("| processes | step time | crops/s (all processes) |")
    print("|---:|---:|---:|")
    for procs, result in rows:
        print(f"| {procs} | {1000 * result['step_seconds']:.0f} ms | {result['crops_per_second']:.1f} |")


def _forwarded(args) -> list[str]:
    return ["--device", args.device, "--backbone", args.backbone, "--size", str(args.size),
            "--classes", str(args.classes), "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--out", str(args.out)]


def _worker(args) -> None:
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from facepad.cache import CropCache
    from facepad.classes import ClassTable
    from facepad.config import load_config
    from facepad.dataset import CropDataset, build_augmentation, build_crop_set
    from facepad.distributed import cleanup_distributed, init_distributed
    from facepad.losses import NPairLoss
    from facepad.manifest import read_manifest
    from facepad.model import FatPadNet
    from facepad.sampler import NPairBatchSampler
    from facepad.training import _build_optimizer, _train_step

    logging.basicConfig(level=logging.WARNING)
    context = init_distributed(args.device)
    config = load_config(None, [
        f"data.manifest={os.environ['FACEPAD_BENCH_MANIFEST']}", f"data.cache_dir={args.out / 'cache'}",
        "data.score_bins=8", f"crop.size={args.size}", f"model.backbone={args.backbone}",
        "model.embedding_dim=64", f"sampler.classes_per_batch={args.classes}",
    ])
    manifest = read_manifest(config.data.manifest)
    classes = ClassTable.from_manifest(manifest, config.data.score_bins)
    if context.is_distributed and not context.is_main:
        torch.distributed.barrier()
    with CropCache(config.data.cache_dir, config.crop, config.quality) as cache:
        crops = build_crop_set(manifest.rows, cache, classes, show_progress=False)
    if context.is_distributed and context.is_main:
        torch.distributed.barrier()
    crops = crops.subset(crops.classes >= 0)

    sampler = NPairBatchSampler(crops.classes.tolist(), args.classes, batches_per_epoch=10_000, seed=0,
                                rank=context.rank, world_size=context.world_size)
    loader = iter(torch.utils.data.DataLoader(CropDataset(crops, build_augmentation(config.augment, context.rank)),
                                              batch_sampler=sampler))
    model = FatPadNet(config.model).to(context.device)
    wrapped = DistributedDataParallel(model) if context.is_distributed else model
    optimizer = _build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss = NPairLoss(config.loss.l2_weight, gather=context.is_distributed)

    def step():
        images, region_index, scores, labels = next(loader)
        _train_step(wrapped, model, images, region_index, scores, labels, loss, optimizer, scheduler, scaler,
                    None, config, context, False)

    for _ in range(args.warmup):
        step()
    if context.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if context.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / args.steps
    if context.is_main:
        print(json.dumps({"step_seconds": seconds, "crops_per_second": 2 * sampler.classes_per_batch / seconds}))
    cleanup_distributed()


if __name__ == "__main__":
    main()
