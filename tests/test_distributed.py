"""Tests of the torchrun helpers, including two Gloo processes on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from facepad.distributed import (
    DistributedContext,
    all_gather_object_list,
    cleanup_distributed,
    gather_with_grad,
    init_distributed,
)
from facepad.errors import ConfigError, FacepadError
from facepad.losses import NPairLoss

_PAIRS = 8
_INPUT_DIM = 6
_EMBEDDING_DIM = 5
# (gather, normalize): the loss settings each process runs.
_LOSS_CASES = [(True, False), (True, True), (False, False)]
_TIMEOUT_SECONDS = 120


@pytest.fixture
def no_torchrun_environment(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_init_without_torchrun_is_single_process(no_torchrun_environment):
    context = init_distributed("cpu")

    assert context == DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert context.is_main
    assert not context.is_distributed
    assert not dist.is_initialized()


def test_init_partial_environment_raises(no_torchrun_environment, monkeypatch):
    monkeypatch.setenv("RANK", "0")

    with pytest.raises(FacepadError, match="LOCAL_RANK missing"):
        init_distributed("cpu")


def test_init_non_integer_rank_raises(no_torchrun_environment, monkeypatch):
    monkeypatch.setenv("RANK", "first")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")

    with pytest.raises(FacepadError, match="RANK='first'"):
        init_distributed("cpu")


def test_init_unknown_device_raises(no_torchrun_environment):
    with pytest.raises(ConfigError, match="device='tpu'"):
        init_distributed("tpu")


def test_helpers_without_process_group_act_locally():
    tensor = torch.arange(6.0).reshape(3, 2)

    assert gather_with_grad(tensor) is tensor
    assert all_gather_object_list({"rank": 0}) == [{"rank": 0}]
    cleanup_distributed()


def _free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _make_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "anchor_inputs": torch.randn(_PAIRS, _INPUT_DIM, generator=generator),
        "positive_inputs": torch.randn(_PAIRS, _INPUT_DIM, generator=generator),
        "weight": torch.randn(_EMBEDDING_DIM, _INPUT_DIM, generator=generator),
        "bias": torch.randn(_EMBEDDING_DIM, generator=generator),
    }


def _make_model(inputs: dict[str, torch.Tensor]) -> torch.nn.Linear:
    model = torch.nn.Linear(_INPUT_DIM, _EMBEDDING_DIM)
    with torch.no_grad():
        model.weight.copy_(inputs["weight"])
        model.bias.copy_(inputs["bias"])
    return model


def _loss_and_gradients(model, anchor_inputs, positive_inputs, gather: bool, normalize: bool) -> dict:
    """Run one forward and backward pass as the training loop does, with one model call per batch."""
    model.zero_grad()
    embeddings = model(torch.cat([anchor_inputs, positive_inputs]))
    anchors, positives = embeddings.chunk(2)
    loss = NPairLoss(l2_weight=0.01, normalize=normalize, temperature=0.5, gather=gather)(anchors, positives)
    loss.backward()
    parameters = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return {
        "loss": loss.detach(),
        "weight_grad": parameters.weight.grad.clone(),
        "bias_grad": parameters.bias.grad.clone(),
    }


def _run_rank(rank: int, world_size: int, inputs: dict, result_dir: str) -> None:
    """Body of one launched process: join the group, run every loss case under DDP, save results."""
    torch.set_num_threads(1)
    context = init_distributed("cpu")
    try:
        results = _rank_results(rank, world_size, inputs, context)
        # Every rank is done with the group before it is destroyed.
        torch.distributed.barrier()
    finally:
        cleanup_distributed()
    torch.save(results, Path(result_dir) / f"rank{rank}.pt")


def _rank_results(rank: int, world_size: int, inputs: dict, context) -> dict:
    """Run every loss case under DDP; the DDP model is freed on return, before the group is destroyed.

    A DDP model that outlives its process group makes Gloo abort the process at exit.
    """
    model = torch.nn.parallel.DistributedDataParallel(_make_model(inputs))
    share = slice(rank * _PAIRS // world_size, (rank + 1) * _PAIRS // world_size)
    results = {
        "context": (context.rank, context.world_size, context.device.type),
        "objects": all_gather_object_list(f"rank {rank}"),
    }
    for gather, normalize in _LOSS_CASES:
        results[(gather, normalize)] = _loss_and_gradients(
            model, inputs["anchor_inputs"][share], inputs["positive_inputs"][share], gather, normalize
        )

    try:
        gather_with_grad(torch.zeros(rank + 1, 3))
    except ValueError as error:
        results["mismatch_error"] = str(error)
    return results


def _spawn_ranks(world_size: int, inputs: dict, result_dir: Path) -> list[dict]:
    """Start `world_size` processes the way torchrun does and return what each saved.

    torchrun's launcher hosts the rendezvous store in its own agent process. With plain
    multiprocessing rank 0 would host it, and a rank still talking to the store while rank 0
    exits is aborted by Gloo now and then.
    """
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=world_size,
        run_id=f"facepad-test-{time.monotonic_ns()}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_local_port()}",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    elastic_launch(config, _run_launched_rank)(world_size, inputs, str(result_dir))
    return [torch.load(result_dir / f"rank{rank}.pt", weights_only=True) for rank in range(world_size)]


def _run_launched_rank(world_size: int, inputs: dict, result_dir: str) -> None:
    import os

    _run_rank(int(os.environ["RANK"]), world_size, inputs, result_dir)


def test_two_gloo_ranks_match_single_process(tmp_path):
    inputs = _make_inputs()
    single_model = _make_model(inputs)

    ranks = _spawn_ranks(2, inputs, tmp_path)

    assert [rank["context"] for rank in ranks] == [(0, 2, "cpu"), (1, 2, "cpu")]
    assert ranks[0]["objects"] == ["rank 0", "rank 1"]
    assert "got [(1, 3), (2, 3)] by rank" in ranks[0]["mismatch_error"]
    for gather, normalize in _LOSS_CASES:
        expected = _loss_and_gradients(
            single_model, inputs["anchor_inputs"], inputs["positive_inputs"], gather=False, normalize=normalize
        )
        mean_loss = (ranks[0][(gather, normalize)]["loss"] + ranks[1][(gather, normalize)]["loss"]) / 2
        case = f"gather={gather}, normalize={normalize}"

        # DDP leaves identical averaged gradients on both ranks.
        torch.testing.assert_close(
            ranks[0][(gather, normalize)]["weight_grad"], ranks[1][(gather, normalize)]["weight_grad"]
        )
        if gather:
            torch.testing.assert_close(mean_loss, expected["loss"], msg=case)
            for name in ("weight_grad", "bias_grad"):
                torch.testing.assert_close(ranks[0][(gather, normalize)][name], expected[name], msg=case)
        else:
            # Without gathering, each rank scores its anchors only against its own positives.
            assert abs(mean_loss.item() - expected["loss"].item()) > 1e-3
