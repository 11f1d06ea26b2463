"""Tests of `facepad train` under torchrun: 2 CPU processes with Gloo, a tiny timm model.

Each launch starts real processes on 127.0.0.1, so these tests take about half a minute.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from facepad.cache import CropCache
from facepad.checkpoint import load_checkpoint
from facepad.classes import ClassTable
from facepad.dataset import build_crop_set
from facepad.inference import Predictor, load_model
from facepad.manifest import read_manifest, split_by_subject
from facepad.model import predict_crops
from facepad.training import validation_metrics

pytestmark = pytest.mark.slow


def torchrun(args, cwd, timeout=240):
    """Run `torchrun --standalone --nproc_per_node=2 -m facepad ARGS` and return the finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "facepad", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def distributed_run(trained_run, tmp_path_factory):
    """A 2-process run with the tiny run's settings; returns (run folder, finished process, work folder)."""
    work = tmp_path_factory.mktemp("torchrun")
    config = work / "tiny.yaml"
    config.write_text("train:\n  run_name: ddp\n  out_dir: runs\n")
    sets = []
    for override in trained_run.overrides:
        sets += ["--set", override]
    finished = torchrun(["train", "--config", config, *sets], cwd=work)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return work / "runs" / "ddp", finished, work


def test_torchrun_writes_one_run_from_rank_zero(distributed_run):
    run_dir, finished, work = distributed_run
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["ddp"]
    assert (run_dir / "best.pt").is_file()
    assert (run_dir / "last.pt").is_file()
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert finished.stdout.count("best checkpoint") == 1  # only rank 0 prints the summary


def test_torchrun_checkpoint_records_world_size(distributed_run):
    state = load_checkpoint(distributed_run[0] / "last.pt")
    assert state["world_size"] == 2
    assert len(state["random_state"]) == 2
    assert not any(key.startswith("module.") for key in state["model_state"])


def test_torchrun_validation_covers_whole_set(distributed_run, trained_run):
    """The metrics stored by the 2-process run equal those of one process over all validation crops."""
    config = trained_run.config
    manifest = read_manifest(config.data.manifest)
    _, val_rows = split_by_subject(manifest, config.data.val_fraction, config.data.split_seed)
    with CropCache(config.data.cache_dir, config.crop, config.quality) as cache:
        crops = build_crop_set(val_rows, cache, ClassTable.from_manifest(manifest, config.data.score_bins),
                               show_progress=False)
    state = load_checkpoint(distributed_run[0] / "best.pt")
    loaded = load_model(distributed_run[0] / "best.pt", device="cpu")
    embeddings, scores = predict_crops(loaded.model, crops.images, crops.region_index, torch.device("cpu"))
    expected = validation_metrics(embeddings, scores, crops)
    assert len(crops) == trained_run.result.val_crops
    # Each rank embeds its share in smaller batches, which moves float32 results by about 1e-5;
    # one rank's share alone would change the metrics far more than the tolerance.
    for name in ("val/cheek/mae", "val/undereye/mae", "val/cheek/precision_at_1"):
        assert state["metrics"][name] == pytest.approx(expected[name], abs=1e-3), name


def test_torchrun_checkpoint_scores_in_one_process(distributed_run, trained_run):
    loaded = load_model(distributed_run[0] / "best.pt", device="cpu")
    photo = sorted((trained_run.result.run_dir.parents[2] / "demo0" / "images").rglob("*.jpg"))[0]
    with Predictor(loaded) as predictor:
        (result,) = list(predictor.predict([photo]))
    assert result.error is None
    scores = np.array([region.score for region in result.regions.values()])
    assert np.all((scores > 0) & (scores < 1))


def test_torchrun_resume(distributed_run):
    run_dir, _, work = distributed_run
    state = load_checkpoint(run_dir / "last.pt")
    epochs = state["training_state"]["epoch"]
    finished = torchrun(["train", "--resume", run_dir, "--set", f"train.epochs={epochs + 1}"], cwd=work)
    assert finished.returncode == 0, finished.stderr[-3000:]
    resumed = load_checkpoint(run_dir / "last.pt")
    assert resumed["training_state"]["epoch"] == epochs + 1
    assert resumed["training_state"]["step"] > state["training_state"]["step"]
