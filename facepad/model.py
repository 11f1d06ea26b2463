"""The network: a timm backbone, an embedding head and one score head per region type."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import timm
import torch
from torch import nn

from facepad.config import ModelConfig
from facepad.errors import CheckpointError, ConfigError
from facepad.regions import REGION_TYPES

_logger = logging.getLogger(__name__)

# ImageNet statistics, which timm backbones expect whether or not their weights are pretrained.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


class FatPadNet(nn.Module):
    """Map region crops to embeddings (for the N-pair loss) and to 0-1 fat scores.

    `forward(images, region_index)` takes float images normalised with PIXEL_MEAN and
    PIXEL_STD, shape [B, 3, H, W], and the region type of each crop as an index into
    REGION_TYPES, shape [B]. It returns the embeddings [B, D] and the scores [B] in (0, 1),
    each crop scored by the head of its own region type.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        # Configuration
        self.config = config

        # Parts
        try:
            self.backbone = timm.create_model(
                config.backbone,
                pretrained=config.pretrained and config.pretrained_path is None,
                num_classes=0,
                drop_rate=config.drop_rate,
            )
        except RuntimeError as error:
            if "Unknown model" in str(error):
                raise ConfigError(
                    f"model.backbone={config.backbone!r} is not a timm model; list names with timm.list_models()"
                ) from None
            raise
        if config.pretrained_path is not None:
            load_backbone_weights(self.backbone, config.pretrained_path)
        features = self.backbone.num_features
        self.embedding = nn.Linear(features, config.embedding_dim)
        self.score_heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(config.embedding_dim, config.head_hidden),
                nn.GELU(),
                nn.Linear(config.head_hidden, 1),
            )
            for _ in REGION_TYPES
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Return the embeddings [B, D] of normalised images [B, 3, H, W]."""
        return self.embedding(self.backbone(images))

    def score(self, embeddings: torch.Tensor, region_index: torch.Tensor) -> torch.Tensor:
        """Return the scores [B] in (0, 1), each from the head of its crop's region type."""
        all_heads = torch.cat([head(embeddings) for head in self.score_heads], dim=1)  # [B, num_region_types]
        logits = all_heads.gather(1, region_index.long().view(-1, 1)).squeeze(1)
        return torch.sigmoid(logits.float())

    def forward(self, images: torch.Tensor, region_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.embed(images)
        return embeddings, self.score(embeddings, region_index)


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load local weights into a timm backbone, ignoring the classifier of the source model.

    Accepts `.safetensors` files and torch files read with `weights_only=True`, holding a
    state dict directly or under `state_dict` / `model`. Raises CheckpointError when the
    file is unreadable or none of the backbone's weights match.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - safetensors and torch raise many types for bad files
        raise CheckpointError(f"pretrained weights {path} could not be read: {type(error).__name__}: {error}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model", "model_state"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict):
        raise CheckpointError(f"pretrained weights {path} hold no state dict")

    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise CheckpointError(
            f"pretrained weights {path} match none of the {type(backbone).__name__} backbone's tensors; "
            "check that model.backbone names the architecture the weights were trained with"
        )
    missing = [k for k in own if k not in usable]
    backbone.load_state_dict(usable, strict=False)
    _logger.info("loaded %d of %d backbone tensors from %s", len(usable), len(own), path)
    if missing:
        _logger.warning("%d backbone tensors were not in %s and keep their initial values: %s",
                        len(missing), path, ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Turn a uint8 batch [B, 3, H, W] into the normalised float input the backbone expects."""
    mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1) * 255.0
    batch = (images.to(device, non_blocking=True).float() - mean) / std
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


@torch.no_grad()
def predict_crops(
    model: FatPadNet,
    images: np.ndarray,
    region_index: np.ndarray,
    device: torch.device,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Return embeddings [M, D] and scores [M] of uint8 crops [M, H, W, 3], in eval mode and float32.

    Training validation, `embed` and `score` all go through this function, so one crop
    gets the same embedding in each.
    """
    was_training = model.training
    model.eval()
    embeddings, scores = [], []
    try:
        for start in range(0, len(images), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).permute(0, 3, 1, 2)
            regions = torch.from_numpy(np.asarray(region_index[start : start + batch_size])).to(device)
            emb, score = model(to_model_input(chunk, device), regions)
            embeddings.append(emb.float().cpu().numpy())
            scores.append(score.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not embeddings:
        return np.zeros((0, model.config.embedding_dim), np.float32), np.zeros((0,), np.float32)
    return np.concatenate(embeddings), np.concatenate(scores)
