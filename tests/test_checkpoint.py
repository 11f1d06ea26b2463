"""Tests of checkpoint writing and safe loading."""

import os
import pickle
import time

import pytest
import torch

from facepad.checkpoint import CHECKPOINT_VERSION, find_latest_checkpoint, load_checkpoint, save_checkpoint
from facepad.errors import CheckpointError


class _CreatesMarkerWhenUnpickled:
    """An object whose unpickling runs os.system, as a hostile checkpoint would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint({"model_state": {"w": torch.arange(3.0)}, "backbone": "test_resnet"}, path)
    state = load_checkpoint(path)
    assert state["backbone"] == "test_resnet"
    assert torch.equal(state["model_state"]["w"], torch.arange(3.0))
    assert state["format_version"] == CHECKPOINT_VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind


def test_load_rejects_code_in_pickle(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "hostile.pt"
    torch.save({"format": "facepad-checkpoint", "payload": _CreatesMarkerWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="contains objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()


def test_load_rejects_plain_pickle_file(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "hostile.pkl"
    path.write_bytes(pickle.dumps(_CreatesMarkerWhenUnpickled(marker), protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_load_truncated_file(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint({"model_state": {"w": torch.randn(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_load_random_bytes(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_load_empty_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_load_foreign_torch_file(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="is not a facepad checkpoint"):
        load_checkpoint(path)


def test_load_other_format_version(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": "facepad-checkpoint", "format_version": CHECKPOINT_VERSION + 1}, path)
    with pytest.raises(CheckpointError, match=f"format version {CHECKPOINT_VERSION + 1}"):
        load_checkpoint(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_find_latest_checkpoint_picks_newest(tmp_path):
    for index, name in enumerate(["run-a", "run-b"]):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "best.pt"
        save_checkpoint({}, path)
        os.utime(path, (time.time() + index * 10, time.time() + index * 10))
    assert find_latest_checkpoint(tmp_path) == tmp_path / "run-b" / "best.pt"


def test_find_latest_checkpoint_none(tmp_path):
    with pytest.raises(CheckpointError, match="facepad train --config"):
        find_latest_checkpoint(tmp_path / "runs")


def test_load_random_bytes_is_called_corrupt_not_unsafe(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert "could run code" not in str(error.value)
    assert "corrupt" in str(error.value)


def test_saved_checkpoint_readable_by_group(tmp_path):
    path = tmp_path / "model.pt"
    old = os.umask(0o022)
    try:
        save_checkpoint({"w": torch.zeros(1)}, path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
