"""The training loop: N-pair embedding loss plus score regression, on one or many processes.

`train` reads top to bottom: set-up, data, model, optimiser, loop, checkpoints, summary.
Under torchrun every rank runs the same code; only rank 0 writes logs, checkpoints and
the summary. Validation runs on held-out subjects after each epoch.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from facepad.cache import CropCache
from facepad.checkpoint import load_checkpoint, save_checkpoint
from facepad.classes import ClassTable
from facepad.config import Config, config_from_dict, save_config
from facepad.dataset import (
    CropDataset,
    CropSet,
    build_augmentation,
    build_crop_set,
    require_crops,
)
from facepad.distributed import (
    DistributedContext,
    all_gather_object_list,
    cleanup_distributed,
    init_distributed,
)
from facepad.errors import ConfigError, FacepadError
from facepad.losses import NPairLoss
from facepad.manifest import read_manifest, split_by_subject
from facepad.metrics import agreement_metrics, retrieval_metrics
from facepad.model import FatPadNet, predict_crops, to_model_input
from facepad.regions import REGION_TABLE_VERSION, REGION_TYPES
from facepad.sampler import NPairBatchSampler

_logger = logging.getLogger(__name__)

# The validation score that selects the best checkpoint is the mean MAE of the score heads
# over region types (lower is better). Without labelled validation crops it is the training loss.
SELECTION_METRIC = "val/score_mae_mean"


@dataclass
class TrainingState:
    """Progress counters that `--resume` restores besides the weights."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    best_value: float = math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    skipped_steps: int = 0  # steps skipped for a non-finite loss
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainingResult:
    """The outcome that the CLI reports."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    epochs: int
    best_metrics: dict[str, float]
    skipped_photos: list[tuple[str, str]]
    train_crops: int
    val_crops: int
    stopped_early: bool
    minutes: float
    is_main: bool = True  # False on ranks other than 0 under torchrun


def train(config: Config | None, config_name: str = "run", resume: Path | None = None,
          resume_overrides: list[str] | tuple[str, ...] = ()) -> TrainingResult:
    """Train a model as `config` sets out and return where the run was written.

    With `resume`, `config` is ignored. The run folder's `last.pt` supplies the config,
    with `resume_overrides` applied (for example a larger `train.epochs`), and the weights,
    optimiser, scheduler, sampler epoch and random states. The run continues where it stopped.
    """
    started = time.monotonic()
    resumed_state = None
    if resume is not None:
        resumed_state = load_checkpoint(Path(resume) / "last.pt")
        config = config_from_dict(resumed_state["config"], resume_overrides)
    context = init_distributed(config.train.device)
    try:
        return _train(config, config_name, resume, resumed_state, context, started)
    finally:
        cleanup_distributed()


def _train(config: Config, config_name: str, resume: Path | None, resumed_state: dict[str, Any] | None,
           context: DistributedContext, started: float) -> TrainingResult:
    device = context.device
    if resume is not None:
        run_dir = Path(resume)
    else:
        run_dir = _new_run_dir(config, config_name, context)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    _seed_everything(config.seed + context.rank)

    # Data: manifest, subject split, classes, crops through the cache
    if not Path(config.data.manifest).is_file():
        raise ConfigError(
            f"config key data.manifest={config.data.manifest!r}: file not found; give the path of a manifest CSV "
            "(`facepad demo-data data/demo` writes data/demo/manifest.csv)"
        )
    manifest = read_manifest(config.data.manifest)
    train_rows, val_rows = split_by_subject(manifest, config.data.val_fraction, config.data.split_seed)
    classes = ClassTable.from_manifest(manifest, config.data.score_bins)
    cache = CropCache(config.data.cache_dir, config.crop, config.quality,
                      config.landmarks.model_path, config.landmarks.max_side)
    with cache:
        if context.is_distributed and not context.is_main:
            torch.distributed.barrier()  # rank 0 fills the cache first
        show = context.is_main
        if context.is_main:
            cache.fill([row.image for row in train_rows + val_rows], config.data.workers)
        train_all = build_crop_set(train_rows, cache, classes, "cropping training photos", show_progress=show)
        val_set = build_crop_set(val_rows, cache, classes, "cropping validation photos", show_progress=show)
        if context.is_distributed and context.is_main:
            torch.distributed.barrier()
    train_set = train_all.subset(train_all.classes >= 0)
    val_set = val_set.subset(~np.isnan(val_set.scores))
    require_crops(train_set, "training")
    skipped = train_all.skipped + val_set.skipped
    _log_data_summary(train_set, val_set, skipped, classes, context)

    sampler = NPairBatchSampler(
        train_set.classes.tolist(),
        config.sampler.classes_per_batch,
        batches_per_epoch=config.sampler.batches_per_epoch,
        seed=config.seed,
        rank=context.rank,
        world_size=context.world_size,
        hard_negatives=config.sampler.hard_negatives,
    )
    dataset = CropDataset(train_set, build_augmentation(config.augment, config.seed + context.rank))
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=0)

    # Model, loss, optimiser, schedule
    model = FatPadNet(config.model).to(device)
    channels_last = config.train.channels_last and device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    ddp_model: torch.nn.Module = model
    if context.is_distributed:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    metric_loss = NPairLoss(config.loss.l2_weight, config.loss.normalize, config.loss.temperature,
                            gather=config.loss.gather and context.is_distributed)
    optimizer = _build_optimizer(model, config)
    total_steps = max(1, config.train.epochs * len(sampler))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.train.warmup_steps, total_steps))
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    state = TrainingState()
    if resumed_state is not None:
        model.load_state_dict(resumed_state["model_state"])
        optimizer.load_state_dict(resumed_state["optimizer_state"])
        scheduler.load_state_dict(resumed_state["scheduler_state"])
        scaler.load_state_dict(resumed_state["scaler_state"])
        state = TrainingState(**resumed_state["training_state"])
        _restore_random_state(resumed_state["random_state"][min(context.rank, len(resumed_state["random_state"]) - 1)])
        if "class_centroids" in resumed_state and config.sampler.hard_negatives:
            class_ids, class_centroids = resumed_state["class_centroids"]
            sampler.set_class_embeddings(class_ids, class_centroids.numpy())
        if context.is_main:
            _logger.info("resuming %s after epoch %d (step %d)", run_dir, state.epoch, state.step)

    if context.is_main:
        _create_run_dir(run_dir)
    writer = SummaryWriter(str(run_dir / "tensorboard")) if context.is_main else None
    if context.is_main and resumed_state is None:
        save_config(config, run_dir / "config.yaml")
    checkpoint_base = {
        "backbone": config.model.backbone,
        "config": config.to_dict(),
        "crop": config.crop.to_dict(),
        "region_table_version": REGION_TABLE_VERSION,
        "region_types": list(REGION_TYPES),
        "classes": classes.to_dict(),
        "class_names": classes.names,
        "world_size": context.world_size,
    }

    # The loop
    start_epoch = state.epoch
    if resumed_state is not None and start_epoch >= config.train.epochs and context.is_main:
        _logger.warning("%s already ran its %d epochs; to train on, raise them with --set train.epochs=N",
                        run_dir, config.train.epochs)
    stopped_early = False
    deadline = None if config.train.max_minutes is None else started + 60 * config.train.max_minutes
    while state.epoch < config.train.epochs:
        epoch = state.epoch
        sampler.set_epoch(epoch)
        dataset.set_epoch(config.seed * 1000 + epoch * 16 + context.rank)
        model.train()
        epoch_losses: list[float] = []
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch",
                        disable=None if context.is_main else True, leave=False)
        for images, region_index, scores, labels in progress:
            losses = _train_step(ddp_model, model, images, region_index, scores, labels, metric_loss, optimizer,
                                 scheduler, scaler, amp_dtype, config, context, channels_last)
            if losses is None:
                state.skipped_steps += 1
                continue
            state.step += 1
            epoch_losses.append(losses["loss/total"])
            progress.set_postfix(loss=f"{losses['loss/total']:.3f}")
            if writer is not None and state.step % config.train.log_every == 0:
                for name, value in losses.items():
                    writer.add_scalar(name, value, state.step)
                writer.add_scalar("lr", scheduler.get_last_lr()[0], state.step)
            if writer is not None and epoch == 0 and state.step == 1:
                _log_crop_grid(writer, images, state.step)
            if _budget_spent(state, config, deadline, context):
                break

        metrics = {"train/loss_epoch": float(np.mean(epoch_losses)) if epoch_losses else math.nan}
        metrics.update(_validate(model, val_set, context, device))
        if config.sampler.hard_negatives:
            centroids = _class_centroids(model, train_set, device)
            sampler.set_class_embeddings(*centroids)
        else:
            centroids = None
        state.epoch = epoch + 1
        state.history.append({"epoch": state.epoch, **metrics})

        selection = metrics.get(SELECTION_METRIC, metrics["train/loss_epoch"])
        improved = state.best_epoch < 0 or selection < state.best_value
        if improved:
            state.best_value, state.best_epoch = selection, state.epoch
            state.epochs_without_improvement = 0
        else:
            state.epochs_without_improvement += 1

        if context.is_main:
            assert writer is not None
            for name, value in metrics.items():
                if not math.isnan(value):
                    writer.add_scalar(name, value, state.step)
            writer.flush()
            _logger.info("epoch %d/%d: %s", state.epoch, config.train.epochs, _format_metrics(metrics))
            checkpoint = {
                **checkpoint_base,
                "model_state": model.state_dict(),
                "epoch": state.epoch,
                "metrics": metrics,
            }
            if improved:
                save_checkpoint(checkpoint, run_dir / "best.pt")
        random_states = all_gather_object_list(_capture_random_state())
        if context.is_main:
            last = {
                **checkpoint,
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "scaler_state": scaler.state_dict(),
                "training_state": state.__dict__.copy(),
                "random_state": random_states,
            }
            if centroids is not None:
                last["class_centroids"] = (centroids[0], torch.from_numpy(centroids[1]))
            save_checkpoint(last, run_dir / "last.pt")

        patience = config.train.early_stop_patience
        if patience and state.epochs_without_improvement >= patience:
            stopped_early = True
            if context.is_main:
                _logger.info("no better %s for %d epochs; stopping early", SELECTION_METRIC, patience)
            break
        if _budget_spent(state, config, deadline, context):
            stopped_early = True
            if context.is_main:
                _logger.info("the time or step budget (train.max_minutes=%s, train.max_steps=%s) is spent; stopping",
                             config.train.max_minutes, config.train.max_steps)
            break

    # Finish: exemplars for nearest-neighbour scoring, the projector, the summary
    best_path, last_path = run_dir / "best.pt", run_dir / "last.pt"
    best_metrics: dict[str, float] = {}
    if context.is_main:
        assert writer is not None
        best = load_checkpoint(best_path)
        best_metrics = best["metrics"]
        if state.epoch > start_epoch:
            model.load_state_dict(best["model_state"])
            best["exemplars"] = _exemplars(model, train_set, config.train.exemplars, device, config.seed,
                                           manifest.path.parent)
            save_checkpoint(best, best_path)
            _log_projector(writer, model, val_set if len(val_set) else train_set, config.train.projector_crops,
                           classes, device, config.seed, state.step)
        writer.close()

    return TrainingResult(
        run_dir=run_dir,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        best_epoch=state.best_epoch,
        epochs=state.epoch,
        best_metrics=best_metrics,
        skipped_photos=skipped,
        train_crops=len(train_set),
        val_crops=len(val_set),
        stopped_early=stopped_early,
        minutes=(time.monotonic() - started) / 60,
        is_main=context.is_main,
    )


def _budget_spent(state: TrainingState, config: Config, deadline: float | None, context: DistributedContext) -> bool:
    """Return whether train.max_steps or train.max_minutes is reached, by rank 0's clock."""
    if config.train.max_steps is not None and state.step >= config.train.max_steps:
        return True
    if deadline is None:
        return False
    spent = torch.tensor([float(time.monotonic() > deadline)])
    if context.is_distributed:
        # Clocks differ between ranks; all ranks follow rank 0 so that none waits alone in a collective.
        spent = spent.to(context.device)
        torch.distributed.broadcast(spent, src=0)
    return bool(spent.item())


def _train_step(ddp_model, model, images, region_index, scores, labels, metric_loss, optimizer, scheduler,
                scaler, amp_dtype, config: Config, context: DistributedContext, channels_last: bool):
    """Run one optimiser step; return the loss values, or None when the loss was not finite."""
    device = context.device
    inputs = to_model_input(images, device, channels_last)
    region_index = region_index.to(device)
    scores = scores.to(device)
    half = inputs.shape[0] // 2

    with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        embeddings, predicted = ddp_model(inputs, region_index)
    anchors, positives = embeddings[:half], embeddings[half:]
    if config.loss.kind == "npair":
        embedding_loss = metric_loss(anchors, positives)
    else:
        embedding_loss = _triplet_loss(anchors.float(), positives.float(), config.loss.triplet_margin)
    labelled = ~torch.isnan(scores)
    if labelled.any():
        score_loss = F.smooth_l1_loss(predicted.float()[labelled], scores[labelled], beta=0.1)
    else:
        score_loss = predicted.sum() * 0.0
    loss = embedding_loss + config.loss.score_weight * score_loss

    finite = torch.isfinite(loss).float()
    if context.is_distributed:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    if finite.item() < 1.0:
        optimizer.zero_grad(set_to_none=True)
        _logger.warning("non-finite loss (%s); skipping this step", loss.item())
        return None

    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(
        model.parameters(), config.train.grad_clip if config.train.grad_clip > 0 else math.inf
    )
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return {
        "loss/total": loss.item(),
        f"loss/{config.loss.kind}": embedding_loss.item(),
        "loss/score": score_loss.item(),
        "grad_norm": float(grad_norm),
    }


def _triplet_loss(anchors: torch.Tensor, positives: torch.Tensor, margin: float) -> torch.Tensor:
    """Triplet loss on normalised embeddings, the negative of anchor i being the positive of pair i+1.

    Each anchor meets one negative where the N-pair loss uses N-1, which is the comparison
    the N-pair paper (Sohn, NIPS 2016) makes at equal batch size.
    """
    anchors, positives = F.normalize(anchors, dim=1), F.normalize(positives, dim=1)
    negatives = positives.roll(1, dims=0)
    return F.triplet_margin_loss(anchors, positives, negatives, margin=margin)


def _validate(model: FatPadNet, val_set: CropSet, context: DistributedContext, device: torch.device) -> dict:
    """Embed and score the validation crops (sharded over ranks) and compute metrics on all of them."""
    if len(val_set) == 0:
        return {}
    share = np.arange(context.rank, len(val_set), context.world_size)
    embeddings, scores = predict_crops(model, val_set.images[share], val_set.region_index[share], device)
    parts = all_gather_object_list((share, embeddings, scores))
    order = np.concatenate([p[0] for p in parts])
    embeddings = np.concatenate([p[1] for p in parts])[np.argsort(order)]
    scores = np.concatenate([p[2] for p in parts])[np.argsort(order)]
    return validation_metrics(embeddings, scores, val_set)


def validation_metrics(embeddings: np.ndarray, scores: np.ndarray, crops: CropSet) -> dict[str, float]:
    """Return retrieval metrics by class and score agreement per region type."""
    metrics: dict[str, float] = {}
    maes = []
    for index, region in enumerate(REGION_TYPES):
        mask = crops.region_index == index
        labelled = mask & ~np.isnan(crops.scores)
        if labelled.sum() >= 2:
            agreement = agreement_metrics(scores[labelled], crops.scores[labelled])
            metrics[f"val/{region}/mae"] = agreement["mae"]
            metrics[f"val/{region}/pearson_r"] = agreement["pearson_r"]
            maes.append(agreement["mae"])
        with_class = mask & (crops.classes >= 0)
        if with_class.sum() >= 2 and len(np.unique(crops.classes[with_class])) >= 1:
            try:
                retrieval = retrieval_metrics(embeddings[with_class], crops.classes[with_class])
            except ValueError as error:
                _logger.debug("retrieval metrics for %s skipped: %s", region, error)
                continue
            for name in ("precision_at_1", "map_at_r", "recall_at_1", "recall_at_2", "recall_at_4", "recall_at_8"):
                if name in retrieval:
                    metrics[f"val/{region}/{name}"] = float(retrieval[name])
    if maes:
        metrics[SELECTION_METRIC] = float(np.mean(maes))
    return metrics


def _class_centroids(model: FatPadNet, train_set: CropSet, device: torch.device) -> tuple[list[int], np.ndarray]:
    """Return the class ids and the mean embedding of each class's crops, for hard negative mining."""
    embeddings, _ = predict_crops(model, train_set.images, train_set.region_index, device)
    ids = sorted(int(c) for c in np.unique(train_set.classes))
    centroids = np.stack([embeddings[train_set.classes == c].mean(0) for c in ids])
    return ids, centroids


def _exemplars(model: FatPadNet, train_set: CropSet, count: int, device: torch.device, seed: int,
               root: Path) -> dict:
    """Embed up to `count` training crops; `score` shows a new crop's nearest ones.

    Sources are stored relative to `root`, the manifest's folder, so that a checkpoint
    names no absolute path of the training machine.
    """
    rng = np.random.default_rng(seed)
    index = np.sort(rng.permutation(len(train_set))[:count])
    embeddings, _ = predict_crops(model, train_set.images[index], train_set.region_index[index], device)
    return {
        "embeddings": torch.from_numpy(embeddings),
        "scores": torch.from_numpy(train_set.scores[index]),
        "region_index": torch.from_numpy(train_set.region_index[index]),
        "region_sides": [train_set.region_side[i] for i in index],
        "sources": [_relative_to(train_set.sources[i], root) for i in index],
    }


def _relative_to(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(path).name


def _log_crop_grid(writer: SummaryWriter, images: torch.Tensor, step: int) -> None:
    from torchvision.utils import make_grid

    half = images.shape[0] // 2
    # Anchors on the top rows, their positives below, so a pair shares a column.
    ordered = torch.cat([images[:half][:16], images[half:][:16]])
    writer.add_image("train/crops_anchor_over_positive", make_grid(ordered, nrow=min(16, half)), step)


def _log_projector(writer: SummaryWriter, model: FatPadNet, crops: CropSet, count: int, classes: ClassTable,
                   device: torch.device, seed: int, step: int) -> None:
    if count <= 0 or len(crops) == 0:
        return
    index = np.sort(np.random.default_rng(seed).permutation(len(crops))[:count])
    embeddings, predicted = predict_crops(model, crops.images[index], crops.region_index[index], device)
    names = classes.names
    metadata = [
        [crops.region_side[i], names[crops.classes[i]] if crops.classes[i] >= 0 else "unlabelled",
         f"{crops.scores[i]:.2f}", f"{p:.2f}"]
        for i, p in zip(index, predicted)
    ]
    thumbnails = torch.from_numpy(crops.images[index]).permute(0, 3, 1, 2).float() / 255.0
    thumbnails = F.interpolate(thumbnails, size=(48, 48), mode="area")
    writer.add_embedding(
        torch.from_numpy(embeddings), metadata=metadata, label_img=thumbnails,
        metadata_header=["region_side", "class", "true_score", "predicted_score"], tag="embeddings",
        global_step=step,  # a resumed run adds a second projector entry instead of overwriting the first
    )


def _build_optimizer(model: FatPadNet, config: Config) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases and normalisation weights."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.train.lr)


def _warmup_cosine(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _amp_dtype(config: Config, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype: bfloat16 or float16 on CUDA when enabled, else None (float32)."""
    if not config.train.amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _new_run_dir(config: Config, config_name: str, context: DistributedContext) -> Path:
    name = config.train.run_name or f"{config_name}-{datetime.now():%Y%m%d-%H%M%S}"
    name = all_gather_object_list(name)[0]  # every rank uses rank 0's name and time stamp
    run_dir = Path(config.train.out_dir) / name
    if context.is_main:
        if (run_dir / "last.pt").exists():
            raise FacepadError(
                f"run folder {run_dir} already contains a run; continue it with --resume {run_dir} "
                "or choose another train.run_name"
            )
    return run_dir


def _create_run_dir(run_dir: Path) -> None:
    """Create the run folder; called once data and model are set up, so a failed start leaves none."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FacepadError(f"cannot create run folder {run_dir}: {error.strerror}; check train.out_dir") from None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _capture_random_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _restore_random_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_as_tuple(v) for v in value)
    return value


def _log_data_summary(train_set: CropSet, val_set: CropSet, skipped: list[tuple[str, str]], classes: ClassTable,
                      context: DistributedContext) -> None:
    if not context.is_main:
        return
    counts = np.bincount(train_set.classes, minlength=len(classes.names))
    _logger.info("training crops: %d in %d classes; validation crops: %d; skipped photos: %d",
                 len(train_set), int((counts > 0).sum()), len(val_set), len(skipped))
    for path, reason in skipped:
        _logger.info("skipped %s: %s", path, reason)


def _format_metrics(metrics: dict[str, float]) -> str:
    """Return the short per-epoch line: training loss, then MAE, Pearson r and precision@1 per region type."""
    parts = [f"loss {metrics['train/loss_epoch']:.3f}"]
    for region in REGION_TYPES:
        values = [(label, metrics.get(f"val/{region}/{name}")) for label, name in
                  (("MAE", "mae"), ("r", "pearson_r"), ("P@1", "precision_at_1"))]
        region_text = " ".join(
            f"{label} {value:.3f}" for label, value in values if value is not None and not math.isnan(value)
        )
        if region_text:
            parts.append(f"{region} {region_text}")
    return "; ".join(parts)
