"""The multi-class N-pair loss for embedding training.

Source: K. Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
NeurIPS 2016. For N anchors f_i and their positives p_i (one pair per class),

    L = 1/N sum_i log(1 + sum_{j != i} exp(f_i . p_j - f_i . p_i)),

which equals the softmax cross-entropy over the N x N matrix of dot products f_i . p_j
with the diagonal as targets. This module computes that form, which needs O(N^2) memory
instead of the O(N^2 D) of building an [N, N-1, D] tensor of negatives.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from facepad.distributed import gather_with_grad
from facepad.errors import ConfigError


class NPairLoss(torch.nn.Module):
    """Multi-class N-pair loss with the L2 penalty on embedding norms, or with normalised
    embeddings and a temperature.

    With `normalize=False` (the paper's form) the logits are raw dot products and
    `l2_weight` times the mean squared L2 norm of all 2N embeddings is added, which keeps
    the norms from growing without bound. With `normalize=True` the embeddings are
    L2-normalised, the logits are cosine similarities divided by `temperature`, and
    `l2_weight` is ignored.

    With `gather=True` inside an initialised process group, the positives of every rank
    are gathered with gradients, so each local anchor is scored against the positives of
    all ranks. Every rank must pass the same number of pairs. Each rank's loss is the mean
    over its own anchors. Under DistributedDataParallel, which averages gradients, the
    update then equals that of one process holding all pairs, and the mean of the per-rank
    losses equals that process's loss. Without a process group, `gather` has no effect.

    The loss is computed in float32 (float64 inputs stay float64), with autocast disabled.
    """

    def __init__(
        self,
        l2_weight: float = 0.002,
        normalize: bool = False,
        temperature: float = 0.1,
        gather: bool = False,
    ) -> None:
        super().__init__()
        if not math.isfinite(l2_weight) or l2_weight < 0:
            raise ConfigError(f"l2_weight={l2_weight} is invalid: expected a finite number >= 0")
        if not math.isfinite(temperature) or temperature <= 0:
            raise ConfigError(f"temperature={temperature} is invalid: expected a finite number > 0")

        self.l2_weight = float(l2_weight)
        self.normalize = normalize
        self.temperature = float(temperature)
        self.gather = gather

    def forward(self, anchors: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        """Return the scalar loss for `anchors[i]` paired with `positives[i]`, both [N, D].

        Row i of `anchors` and row i of `positives` belong to the same class, and every
        row belongs to a different class.
        """
        if anchors.dim() != 2 or anchors.shape != positives.shape or anchors.shape[0] == 0:
            raise ValueError(
                "anchors and positives must both have shape [N, D] with N >= 1, got "
                f"{tuple(anchors.shape)} and {tuple(positives.shape)}"
            )

        compute_dtype = torch.promote_types(anchors.dtype, torch.float32)
        with torch.autocast(device_type=anchors.device.type, enabled=False):
            anchors = anchors.to(compute_dtype)
            positives = positives.to(compute_dtype)
            if self.normalize:
                anchors = F.normalize(anchors, dim=1)
                positives = F.normalize(positives, dim=1)

            all_positives, first_target = self._positives_of_all_ranks(positives)
            logits = anchors @ all_positives.T
            if self.normalize:
                logits = logits / self.temperature
            targets = torch.arange(anchors.shape[0], device=anchors.device) + first_target
            loss = F.cross_entropy(logits, targets)

            if not self.normalize and self.l2_weight > 0:
                # Anchors and positives have the same count, so the mean over all 2N
                # embeddings is the mean of the two per-set means.
                mean_squared_norm = 0.5 * (anchors.square().sum(1).mean() + positives.square().sum(1).mean())
                loss = loss + self.l2_weight * mean_squared_norm
        return loss

    def _positives_of_all_ranks(self, positives: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Return the positives to score against and the column of this rank's first one."""
        if not self.gather or not dist.is_available() or not dist.is_initialized():
            return positives, 0
        # gather_with_grad places rank r's rows at r * N because every rank has N rows.
        return gather_with_grad(positives), dist.get_rank() * positives.shape[0]

    def extra_repr(self) -> str:
        return (
            f"l2_weight={self.l2_weight}, normalize={self.normalize}, "
            f"temperature={self.temperature}, gather={self.gather}"
        )
