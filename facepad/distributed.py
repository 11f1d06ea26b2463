"""Process-group set-up for torchrun and collectives that training needs.

`init_distributed` reads the environment that `torchrun` sets (`RANK`, `WORLD_SIZE`,
`LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) and joins the process group: NCCL when the
device is CUDA, Gloo on CPU. Without those variables, or with a world size of 1, it returns
a single-process context and creates no process group, and the helpers below then act as
if there were one rank.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from facepad.errors import ConfigError, FacepadError

_logger = logging.getLogger(__name__)

DEVICE_PREFERENCES = ("auto", "cuda", "mps", "cpu")
_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
_MAX_COMPARED_DIMS = 8


@dataclass(frozen=True)
class DistributedContext:
    """The position of this process in the job and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes logs, checkpoints and summaries."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def init_distributed(device_preference: str = "auto") -> DistributedContext:
    """Join the torchrun process group, if any, and choose this process's device.

    `device_preference` is "auto" (CUDA, then MPS, then CPU), "cuda", "mps" or "cpu". Under
    torchrun each process uses the CUDA device numbered by its `LOCAL_RANK`. MPS has no
    collective backend, so "auto" skips it when more than one process runs.

    Raises:
        ConfigError: the preference is unknown or names a device that is not available.
        FacepadError: the torchrun variables are incomplete or not integers, or there are
            fewer CUDA devices than processes on this machine.
    """
    if device_preference not in DEVICE_PREFERENCES:
        raise ConfigError(
            f"device={device_preference!r} is invalid: expected one of {', '.join(DEVICE_PREFERENCES)}"
        )

    rank, world_size, local_rank = _read_torchrun_environment()
    device = _select_device(device_preference, local_rank, distributed=world_size > 1)
    if world_size == 1:
        return DistributedContext(rank=0, world_size=1, local_rank=0, device=device)

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if dist.is_initialized():
        _logger.debug("process group already initialised, reusing it")
    else:
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    _logger.info("rank %d of %d joined the %s process group on %s", rank, world_size, backend, device)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def select_device(preference: str = "auto") -> torch.device:
    """Return the device for a single process: "auto" picks CUDA, then MPS, then CPU.

    Raises ConfigError when the preference is unknown or names a device that is not available.
    """
    if preference not in DEVICE_PREFERENCES:
        raise ConfigError(
            f"device={preference!r} is invalid: expected one of {', '.join(DEVICE_PREFERENCES)}"
        )
    return _select_device(preference, 0, distributed=False)


def cleanup_distributed() -> None:
    """Destroy the process group if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, in rank order, keeping autograd.

    The backward pass sums the gradient of the gathered tensor over all ranks and returns
    this rank's slice. Each rank's input therefore receives the gradient of the sum of
    every rank's objective. Because DistributedDataParallel averages parameter gradients,
    training then follows the gradient of the mean of the per-rank objectives.

    Every rank must pass a tensor of the same shape. Without a process group the input is
    returned unchanged.

    Raises:
        ValueError: the ranks passed tensors of different shapes, or of more than 8
            dimensions.
    """
    if not _process_group_active():
        return tensor
    _check_same_shape_on_all_ranks(tensor)
    return _GatherWithGrad.apply(tensor)


def all_gather_object_list(obj: Any) -> list[Any]:
    """Return the list of `obj` from every rank, in rank order (pickled, for small objects).

    Without a process group the list holds only `obj`.
    """
    if not _process_group_active():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward pass sum-reduces the gradient across ranks."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        ctx.local_rows = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        # all_reduce moves about twice the data of reduce_scatter, which not every backend
        # implements (torch's own autograd all_gather avoids it outside NCCL).
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.local_rows
        return grad[start : start + ctx.local_rows]


def _process_group_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _check_same_shape_on_all_ranks(tensor: torch.Tensor) -> None:
    if tensor.dim() > _MAX_COMPARED_DIMS:
        raise ValueError(
            f"gather_with_grad supports at most {_MAX_COMPARED_DIMS} dimensions, got shape {tuple(tensor.shape)}"
        )
    # A shape mismatch makes all_gather fail with an unclear message or, with NCCL, possibly
    # hang. One small collective compares the shapes first, padded to a fixed length so that
    # tensors of different dimensionality compare too.
    padded_shape = list(tensor.shape) + [-1] * (_MAX_COMPARED_DIMS - tensor.dim())
    shape = torch.tensor(padded_shape, dtype=torch.int64, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size())]
    dist.all_gather(shapes, shape)
    shape_lists = [tuple(d for d in s.tolist() if d >= 0) for s in shapes]
    if any(s != shape_lists[0] for s in shape_lists):
        raise ValueError(
            f"gather_with_grad needs the same tensor shape on every rank, got {shape_lists} by rank"
        )


def _read_torchrun_environment() -> tuple[int, int, int]:
    present = [name for name in _TORCHRUN_VARIABLES if name in os.environ]
    if not present:
        return 0, 1, 0
    missing = [name for name in _TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise FacepadError(
            f"{', '.join(present)} set but {', '.join(missing)} missing from the environment; "
            "start the command with torchrun, or unset these variables for a single process"
        )

    values = {}
    for name in _TORCHRUN_VARIABLES:
        text = os.environ[name]
        try:
            values[name] = int(text)
        except ValueError:
            raise FacepadError(f"{name}={text!r} is invalid: expected an integer as torchrun sets it") from None

    rank, world_size, local_rank = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise FacepadError(
            f"RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank} are inconsistent: "
            "expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0"
        )
    return rank, world_size, local_rank


def _select_device(preference: str, local_rank: int, *, distributed: bool) -> torch.device:
    cuda_available = torch.cuda.is_available()
    mps_available = torch.backends.mps.is_available()

    if preference == "cuda" and not cuda_available:
        raise ConfigError("device='cuda' requested but CUDA is not available; set device to auto or cpu")
    if preference == "mps" and not mps_available:
        raise ConfigError("device='mps' requested but MPS is not available; set device to auto or cpu")
    if preference == "mps" and distributed:
        raise ConfigError(
            "device='mps' cannot be used with several processes because MPS has no collective "
            "backend; set device to cpu or run a single process"
        )

    if preference == "cuda" or (preference == "auto" and cuda_available):
        device_count = torch.cuda.device_count()
        if local_rank >= device_count:
            raise FacepadError(
                f"LOCAL_RANK={local_rank} but only {device_count} CUDA devices are visible; "
                f"start at most {device_count} processes per machine"
            )
        return torch.device("cuda", local_rank)
    if preference == "mps" or (preference == "auto" and mps_available and not distributed):
        return torch.device("mps")
    return torch.device("cpu")
