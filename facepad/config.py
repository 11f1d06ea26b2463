"""Training configuration: defaults, YAML loading, `--set` overrides and validation.

The defaults live in the dataclasses below (crop and quality defaults in `crops.py` and
`quality.py`). A YAML file only lists what it changes. Every key is checked: an unknown
key, a value of the wrong type or a value out of range raises `ConfigError` naming the key
path and the value.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facepad.crops import CropSettings
from facepad.errors import ConfigError
from facepad.quality import QualitySettings


@dataclass
class DataConfig:
    manifest: str = "data/demo/manifest.csv"  # relative paths resolve against the working directory
    cache_dir: str | None = None  # None: $FACEPAD_CACHE, else ~/.cache/facepad/crops
    val_fraction: float = 0.2  # share of subjects held out when the manifest has no split column
    split_seed: int = 0
    score_bins: int = 5  # N-pair classes per region type when the manifest has no grade columns
    workers: int = 0  # processes that detect landmarks when the crop cache is filled; 0 or 1: this process


@dataclass
class LandmarkConfig:
    model_path: str | None = None  # a MediaPipe FaceLandmarker .task file; None: the built-in FaceMesh
    max_side: int = 1280  # photos larger than this are downscaled for detection only


@dataclass
class ModelConfig:
    backbone: str = "resnet18"  # any timm model name
    pretrained: bool = False  # True without pretrained_path lets timm download weights
    pretrained_path: str | None = None  # local .safetensors / .pth / .bin weights for the backbone
    embedding_dim: int = 128
    head_hidden: int = 64
    drop_rate: float = 0.0


@dataclass
class LossConfig:
    kind: str = "npair"  # "npair", or "triplet" for comparison runs
    l2_weight: float = 0.002  # penalty on squared embedding norms (unnormalised N-pair)
    normalize: bool = False  # L2-normalise embeddings and divide similarities by temperature
    temperature: float = 0.1
    triplet_margin: float = 0.2
    score_weight: float = 1.0  # weight of the score regression loss added to the metric loss
    gather: bool = True  # under torchrun, every anchor meets the positives of every rank


@dataclass
class SamplerConfig:
    classes_per_batch: int = 32  # N: a batch has N classes x 2 crops
    batches_per_epoch: int | None = None  # None: enough batches to visit every crop about once
    hard_negatives: bool = False  # build batches from classes whose embeddings lie close


@dataclass
class AugmentConfig:
    enabled: bool = True
    rotate_deg: float = 8.0
    scale: float = 0.08
    shift: float = 0.04  # fraction of the crop size
    brightness: float = 0.15
    contrast: float = 0.15
    hue_saturation: float = 0.1
    blur_prob: float = 0.1
    noise_prob: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 30
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 5.0  # maximum gradient norm; 0 disables clipping
    device: str = "auto"  # auto, cpu, cuda, cuda:N, mps
    amp: bool = True  # mixed precision on CUDA; ignored on CPU and MPS
    channels_last: bool = True  # NHWC memory format on CUDA and CPU (about 10 % faster for resnet10t on CPU)
    early_stop_patience: int = 8  # epochs without a better validation score; 0 disables
    max_minutes: float | None = None  # stop after this much training time, keeping the best checkpoint
    max_steps: int | None = None  # stop after this many optimiser steps
    threads: int | None = None  # torch CPU threads; None keeps torch's default
    out_dir: str = "runs"
    run_name: str | None = None  # None: the config file's name and a time stamp
    log_every: int = 10  # steps between TensorBoard scalar writes
    projector_crops: int = 300  # crops shown in TensorBoard's embedding projector at the end
    exemplars: int = 2000  # training crops whose embeddings are stored for nearest-neighbour scoring


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    crop: CropSettings = field(default_factory=CropSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain nested dicts, suitable for YAML and checkpoints."""
        return dataclasses.asdict(self)


_CHOICES = {
    "loss.kind": ("npair", "triplet"),
}
_POSITIVE = {
    "data.score_bins", "landmarks.max_side", "model.embedding_dim", "model.head_hidden",
    "loss.temperature", "sampler.classes_per_batch", "train.epochs", "train.lr",
    "train.log_every", "crop.size", "train.max_steps", "train.max_minutes",
}
_NON_NEGATIVE = {
    "data.workers", "loss.l2_weight", "loss.score_weight", "loss.triplet_margin",
    "train.weight_decay", "train.warmup_steps", "train.grad_clip", "train.early_stop_patience",
    "train.projector_crops", "train.exemplars", "model.drop_rate",
}


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config, apply `key=value` overrides and validate the result.

    Raises ConfigError for a missing or unreadable file, invalid YAML, an unknown key, a
    value of the wrong type or out of range.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} not found; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}: fix the syntax") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} could not be read: {error}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, found {type(loaded).__name__}")
        raw = loaded

    for override in overrides:
        _apply_override(raw, override)

    config = _build(Config, raw, prefix="")
    _check_ranges(config)
    return config


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r} is not of the form key=value, e.g. --set train.epochs=5")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        name = prefix.rstrip(".") or "the config"
        raise ConfigError(f"{name} must be a mapping of keys, found {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            choices = ", ".join(sorted(known))
            raise ConfigError(f"unknown config key {prefix}{key}; known keys here: {choices}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            continue
        values[f.name] = _convert(hints[f.name], raw[f.name], prefix + f.name)
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid values in {prefix.rstrip('.') or 'config'}: {error}") from None


def _convert(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, key)

    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple or origin is list:
        if isinstance(value, (list, tuple)):
            return hint(value) if origin is tuple else list(value)
    else:
        return value
    expected = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key {key} must be of type {expected}, got {value!r}")


def _check_ranges(config: Config) -> None:
    flat = _flatten(config.to_dict())
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"config key {key}={flat[key]!r} must be one of: {', '.join(choices)}")
    for key in _POSITIVE:
        if flat[key] is not None and flat[key] <= 0:
            raise ConfigError(f"config key {key}={flat[key]!r} must be greater than 0")
    for key in _NON_NEGATIVE:
        if flat[key] is not None and flat[key] < 0:
            raise ConfigError(f"config key {key}={flat[key]!r} must not be negative")
    if not 0.0 <= config.data.val_fraction < 1.0:
        raise ConfigError(f"config key data.val_fraction={config.data.val_fraction!r} must lie in [0, 1)")
    if config.sampler.classes_per_batch < 2:
        raise ConfigError(
            f"config key sampler.classes_per_batch={config.sampler.classes_per_batch} must be at least 2: "
            "the N-pair loss needs negatives"
        )
    if config.model.pretrained_path is not None and not Path(config.model.pretrained_path).is_file():
        raise ConfigError(
            f"config key model.pretrained_path={config.model.pretrained_path!r}: file not found; "
            "give a local weights file or remove the key"
        )
    if config.landmarks.model_path is not None and not Path(config.landmarks.model_path).is_file():
        raise ConfigError(
            f"config key landmarks.model_path={config.landmarks.model_path!r}: file not found; "
            "give a MediaPipe .task file or remove the key"
        )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from facepad.io_utils import atomic_write_text

    text = yaml.safe_dump(config.to_dict(), sort_keys=False)
    atomic_write_text(Path(path), text)


def config_from_dict(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Rebuild a Config from `Config.to_dict()` output, as stored in a checkpoint, then apply overrides."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        _apply_override(raw, override)
    config = _build(Config, raw, prefix="")
    if overrides:
        _check_ranges(config)
    return config
