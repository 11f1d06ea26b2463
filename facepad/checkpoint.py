"""Checkpoint files: one file contains all that `embed`, `score` and `evaluate` need.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts written with
`torch.save` and read with `torch.load(weights_only=True)`, which rebuilds only those
types: a file from someone else cannot run code when it is loaded. Writes go to a
temporary file that `os.replace` moves into place.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from facepad.errors import CheckpointError
from facepad.io_utils import atomic_path

_logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "facepad-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a checkpoint atomically, adding the format name and version."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint safely and check its format.

    Raises CheckpointError when the file is missing, truncated or corrupt, holds objects
    other than plain data (for example code that would run on unpickling), or is not a
    facepad checkpoint of a version this release reads.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; train one with `facepad train --config FILE`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the blocked class ("Unsupported global: GLOBAL posix.system") when a
        # file requests an object to be rebuilt, and reports other failures as unsupported opcodes.
        if "unsupported global" in str(error).lower():
            raise CheckpointError(
                f"checkpoint {path} contains objects other than tensors and plain data, so it was not loaded "
                "(it could run code); use a checkpoint written by facepad"
            ) from None
        raise CheckpointError(f"checkpoint {path} is not a readable checkpoint file (corrupt or another format); "
                              "use another copy") from None
    except Exception as error:  # noqa: BLE001 - on damaged bytes the unpickler raises arbitrary types (IndexError, KeyError, ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({reason}); use another copy") from None

    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a facepad checkpoint; pass a best.pt or last.pt from a facepad run")
    version = state.get("format_version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, but this facepad reads version {CHECKPOINT_VERSION}; "
            "use the facepad release that wrote it"
        )
    return state


def find_latest_checkpoint(runs_dir: str | os.PathLike = "runs") -> Path:
    """Return the newest `best.pt` under `runs_dir`, by modification time.

    Raises CheckpointError saying how to get one when there is none.
    """
    runs_dir = Path(runs_dir)
    candidates = sorted(runs_dir.glob("*/best.pt"), key=lambda p: p.stat().st_mtime) if runs_dir.is_dir() else []
    if not candidates:
        raise CheckpointError(
            f"no checkpoint given and none found under {runs_dir}/; train one with "
            "`facepad train --config configs/demo.yaml` or pass --checkpoint PATH"
        )
    return candidates[-1]
