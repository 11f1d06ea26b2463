"""Measure training throughput: facepad's full step against two references.

1. facepad: a full training step as `facepad train` runs it (sampler, cached crops,
   albumentations, normalisation, channels-last forward, N-pair + score loss, backward,
   clipping, AdamW step).
2. The bound: the same model (channels-last too), loss and optimiser on random tensors of
   the same shape, already in memory. facepad's crops per second divided by this is the data-path
   efficiency (target >= 0.85).
3. A hand-written loop as a user would write it in a notebook: timm model,
   pytorch-metric-learning `NPairsLoss` and `MPerClassSampler` (m=2), decoding each photo
   from disk every step and cropping it with landmarks detected once up front (kinder to
   that loop than detecting every step). facepad's speed-up over it has a target of >= 1.5.

Usage:
    python scripts/bench_train.py [--faces ../shared/faces] [--backbone resnet10t] [--size 64]
        [--classes 16] [--steps 60] [--out /tmp/facepad-bench-train]
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import logging
import platform
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_common import small_demo_set  # scripts/bench_common.py, beside this script

from facepad.cache import CropCache
from facepad.classes import ClassTable
from facepad.config import load_config
from facepad.crops import crop_regions
from facepad.dataset import CropDataset, build_augmentation, build_crop_set
from facepad.landmarks import create_detector
from facepad.losses import NPairLoss
from facepad.manifest import read_manifest
from facepad.model import FatPadNet
from facepad.regions import REGION_SIDES, REGION_TYPES
from facepad.sampler import NPairBatchSampler
from facepad.training import _build_optimizer, _train_step

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "faces")
    parser.add_argument("--faces-used", type=int, default=24, help="portraits taken from --faces")
    parser.add_argument("--per-face", type=int, default=4)
    parser.add_argument("--backbone", default="resnet10t")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=16, help="N: classes per batch (batch = 2N crops)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/facepad-bench-train"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    manifest_path = small_demo_set(args.faces, args.out, args.faces_used, args.per_face)
    config = load_config(None, [
        f"data.manifest={manifest_path}", f"data.cache_dir={args.out / 'cache'}", "data.score_bins=8",
        f"crop.size={args.size}", f"model.backbone={args.backbone}", "model.embedding_dim=64",
        f"sampler.classes_per_batch={args.classes}", "train.device=cpu",
    ])
    manifest = read_manifest(manifest_path)
    classes = ClassTable.from_manifest(manifest, config.data.score_bins)
    with CropCache(config.data.cache_dir, config.crop, config.quality) as cache:
        crops = build_crop_set(manifest.rows, cache, classes, show_progress=False)
    crops = crops.subset(crops.classes >= 0)
    batch = 2 * min(args.classes, len(np.unique(crops.classes)))

    facepad_rate = _bench_facepad(config, crops, args)
    bound_rate = _bench_random_tensors(config, batch, args)
    manual_rate = _bench_manual_loop(config, manifest, crops, args)

    print(f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; date {date.today()}")
    print(f"Backbone {args.backbone}, crops {args.size} px, batch {batch} crops ({batch // 2} classes x 2), "
          f"{args.steps} timed steps after {args.warmup} warm-up steps.\n")
    print("| loop | crops/s | relative to facepad |")
    print("|---|---:|---:|")
    print(f"| facepad full step (cached crops, augmentation) | {facepad_rate:.1f} | 1.00 |")
    print(f"| same model on random in-memory tensors (bound) | {bound_rate:.1f} | {bound_rate / facepad_rate:.2f} |")
    print(f"| hand-written loop (pml NPairsLoss, MPerClassSampler, decode every step) | {manual_rate:.1f} | "
          f"{manual_rate / facepad_rate:.2f} |")
    print(f"\nfacepad / bound = {facepad_rate / bound_rate:.2f} (target >= 0.85); "
          f"facepad / hand-written = {facepad_rate / manual_rate:.2f} (target >= 1.5)")


def _timed(steps: int, warmup: int, step) -> float:
    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def _bench_facepad(config, crops, args) -> float:
    from facepad.distributed import DistributedContext

    device = torch.device("cpu")
    context = DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    sampler = NPairBatchSampler(crops.classes.tolist(), config.sampler.classes_per_batch, seed=0,
                                batches_per_epoch=10_000)
    dataset = CropDataset(crops, build_augmentation(config.augment, 0))
    loader = iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0))
    model = FatPadNet(config.model).to(memory_format=torch.channels_last)
    optimizer = _build_optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss = NPairLoss(config.loss.l2_weight)
    batch_size = [0]

    def step():
        images, region_index, scores, labels = next(loader)
        batch_size[0] = images.shape[0]
        _train_step(model, model, images, region_index, scores, labels, loss, optimizer, scheduler, scaler,
                    None, config, context, config.train.channels_last)

    seconds = _timed(args.steps, args.warmup, step)
    return batch_size[0] / seconds


def _bench_random_tensors(config, batch: int, args) -> float:
    device = torch.device("cpu")
    model = FatPadNet(config.model).to(memory_format=torch.channels_last)
    optimizer = _build_optimizer(model, config)
    loss_fn = NPairLoss(config.loss.l2_weight)
    images = torch.randn(batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    region_index = torch.arange(batch) % len(REGION_TYPES)
    targets = torch.rand(batch)

    def step():
        embeddings, scores = model(images, region_index)
        loss = loss_fn(embeddings[: batch // 2], embeddings[batch // 2 :])
        loss = loss + config.loss.score_weight * torch.nn.functional.smooth_l1_loss(scores, targets, beta=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()

    del device
    return batch / _timed(args.steps, args.warmup, step)


def _bench_manual_loop(config, manifest, crops, args) -> float:
    """Time a notebook-style loop: photos decoded from disk at every step, pml loss and sampler."""
    import albumentations as A
    import timm
    from pytorch_metric_learning.distances import DotProductSimilarity
    from pytorch_metric_learning.losses import NPairsLoss
    from pytorch_metric_learning.samplers import MPerClassSampler

    # One entry per (photo, region side), with landmarks detected once up front.
    entries, labels = [], []
    with create_detector() as detector:
        for row in manifest.rows:
            image = cv2.cvtColor(cv2.imread(str(row.image)), cv2.COLOR_BGR2RGB)
            landmarks = detector.detect(image)
            for name in REGION_SIDES:
                region = name.split("_")[0]
                score = row.scores[name]
                offset = REGION_TYPES.index(region) * config.data.score_bins
                entries.append((row.image, landmarks, name))
                labels.append(offset + min(int(score * config.data.score_bins), config.data.score_bins - 1))
    batch = 2 * args.classes
    sampler = iter(MPerClassSampler(labels, m=2, batch_size=batch, length_before_new_iter=10**6))
    augment = A.Compose([A.Affine(rotate=(-8, 8), scale=(0.92, 1.08), p=0.8),
                         A.RandomBrightnessContrast(p=0.8)])
    backbone = timm.create_model(args.backbone, pretrained=False, num_classes=0)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(backbone.num_features, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def step():
        indices = [next(sampler) for _ in range(batch)]
        tensors = []
        for index in indices:
            path, landmarks, name = entries[index]
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            crop = crop_regions(image, landmarks, config.crop)[name].image
            tensors.append(torch.from_numpy(augment(image=crop)["image"]).permute(2, 0, 1))
        images = (torch.stack(tensors).float() / 255 - mean) / std
        embeddings = model(images)
        loss = loss_fn(embeddings, torch.tensor([labels[i] for i in indices]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    del crops
    return batch / _timed(args.steps, args.warmup, step)


if __name__ == "__main__":
    main()
