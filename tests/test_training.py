"""Tests of the training run: real MediaPipe crops of a small demo set, a real timm model.

One session-scoped run (`trained_run` in conftest.py) trains a tiny backbone for two epochs;
the tests read what it wrote.
"""

import math

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from facepad.cache import CropCache
from facepad.checkpoint import load_checkpoint
from facepad.classes import ClassTable
from facepad.config import load_config
from facepad.dataset import build_crop_set
from facepad.errors import FacepadError
from facepad.inference import Predictor, load_model
from facepad.manifest import read_manifest, split_by_subject
from facepad.model import predict_crops
from facepad.training import train


def test_run_folder_contents(trained_run):
    run_dir = trained_run.result.run_dir
    assert (run_dir / "best.pt").is_file()
    assert (run_dir / "last.pt").is_file()
    assert (run_dir / "config.yaml").is_file()
    assert load_config(run_dir / "config.yaml") == trained_run.config
    assert not list(run_dir.glob("*.tmp*")), "a temporary checkpoint file was left behind"


def test_checkpoint_holds_inference_contract(trained_run):
    state = load_checkpoint(trained_run.result.best_checkpoint)
    for key in ("model_state", "backbone", "crop", "region_table_version", "classes", "config", "exemplars"):
        assert key in state, key
    assert state["backbone"] == "test_resnet"
    assert state["crop"]["size"] == trained_run.config.crop.size
    exemplars = state["exemplars"]
    assert exemplars["embeddings"].shape[0] == len(exemplars["sources"]) > 0
    assert exemplars["embeddings"].shape[1] == trained_run.config.model.embedding_dim


def test_last_checkpoint_holds_resume_state(trained_run):
    state = load_checkpoint(trained_run.result.last_checkpoint)
    assert state["training_state"]["epoch"] == trained_run.config.train.epochs
    assert "optimizer_state" in state
    assert "scheduler_state" in state
    assert "random_state" in state


def test_tensorboard_events(trained_run):
    events = EventAccumulator(str(trained_run.result.run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "loss/total" in tags["scalars"]
    assert "loss/npair" in tags["scalars"]
    assert "lr" in tags["scalars"]
    assert "val/score_mae_mean" in tags["scalars"]
    assert "val/cheek/precision_at_1" in tags["scalars"]
    assert "train/crops_anchor_over_positive" in tags["images"]
    projector = trained_run.result.run_dir / "tensorboard" / "projector_config.pbtxt"
    assert projector.is_file()
    assert "sprite" in projector.read_text()


def test_validation_metrics_reported(trained_run):
    metrics = trained_run.result.best_metrics
    for name in ("val/cheek/mae", "val/undereye/mae", "val/cheek/pearson_r", "val/undereye/map_at_r"):
        assert name in metrics, name
    assert 0.0 <= metrics["val/cheek/mae"] <= 1.0


def test_second_run_reads_crop_cache(trained_run):
    config = trained_run.config
    manifest = read_manifest(config.data.manifest)
    cache = CropCache(config.data.cache_dir, config.crop, config.quality)
    classes = ClassTable.from_manifest(manifest, config.data.score_bins)
    crops = build_crop_set(manifest.rows, cache, classes, show_progress=False)
    assert cache.misses == 0
    assert cache.hits == len(manifest.rows)
    assert len(crops) > 0


def test_embedding_matches_validation(trained_run):
    """A photo embedded by `Predictor` gets the embedding validation computed from the cache."""
    config = trained_run.config
    manifest = read_manifest(config.data.manifest)
    _, val_rows = split_by_subject(manifest, config.data.val_fraction, config.data.split_seed)
    loaded = load_model(trained_run.result.best_checkpoint, device="cpu")
    cache = CropCache(config.data.cache_dir, config.crop, config.quality)
    classes = ClassTable.from_manifest(manifest, config.data.score_bins)
    val_crops = build_crop_set(val_rows[:2], cache, classes, show_progress=False, keep_outside=True)
    expected, _ = predict_crops(loaded.model, val_crops.images, val_crops.region_index, torch.device("cpu"))
    with Predictor(loaded) as predictor:
        results = list(predictor.predict([row.image for row in val_rows[:2]]))
    actual = np.stack([region.embedding for result in results for region in result.regions.values()])
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_resume_continues_from_last(trained_run, tmp_path):
    import shutil

    run_dir = tmp_path / "resumed"
    shutil.copytree(trained_run.result.run_dir, run_dir)
    before = load_checkpoint(run_dir / "last.pt")["training_state"]
    epochs = trained_run.config.train.epochs + 1
    result = train(None, resume=run_dir, resume_overrides=[f"train.epochs={epochs}"])
    assert result.epochs == epochs
    after = load_checkpoint(run_dir / "last.pt")
    assert after["training_state"]["step"] > before["step"]
    assert after["config"]["train"]["epochs"] == epochs
    assert len(after["training_state"]["history"]) == epochs


def test_resume_of_finished_run_trains_no_more(trained_run, tmp_path, caplog):
    import shutil

    run_dir = tmp_path / "finished"
    shutil.copytree(trained_run.result.run_dir, run_dir)
    before = load_checkpoint(run_dir / "last.pt")["training_state"]["step"]
    best_before = (run_dir / "best.pt").read_bytes()
    result = train(None, resume=run_dir)
    assert result.epochs == trained_run.config.train.epochs
    assert result.best_metrics == trained_run.result.best_metrics
    assert load_checkpoint(run_dir / "last.pt")["training_state"]["step"] == before
    assert (run_dir / "best.pt").read_bytes() == best_before
    assert "raise them with --set train.epochs=N" in caplog.text


def test_same_run_name_is_rejected(trained_run):
    config = trained_run.config
    with pytest.raises(FacepadError, match="already contains a run; continue it with --resume"):
        train(config, resume=None)


def test_non_finite_loss_skips_step(trained_run, tmp_path, monkeypatch, caplog):
    import facepad.training as training

    config = load_config(None, trained_run.overrides + [f"train.out_dir={tmp_path}", "train.run_name=nan",
                                                      "train.epochs=1"])
    monkeypatch.setattr(training.NPairLoss, "forward", lambda self, a, p: (a * math.nan).sum())
    result = train(config)
    assert "non-finite loss" in caplog.text
    state = load_checkpoint(result.last_checkpoint)
    assert state["training_state"]["skipped_steps"] > 0
    assert state["training_state"]["step"] == 0


def test_classes_per_batch_above_class_count_is_capped(trained_run, tmp_path, caplog):
    config = load_config(None, trained_run.overrides + [f"train.out_dir={tmp_path}", "train.run_name=capped",
                                                      "train.epochs=1", "sampler.classes_per_batch=64"])
    result = train(config)
    assert result.best_checkpoint.is_file()
    assert "classes_per_batch=64 is larger than the number of classes (8)" in caplog.text


def test_triplet_loss_option_trains(trained_run, tmp_path):
    config = load_config(None, trained_run.overrides + [f"train.out_dir={tmp_path}", "train.run_name=triplet",
                                                      "train.epochs=1", "loss.kind=triplet"])
    result = train(config)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert "loss/triplet" in events.Tags()["scalars"]


def test_hard_negative_mining_uses_class_centroids(trained_run, tmp_path):
    config = load_config(None, trained_run.overrides + [f"train.out_dir={tmp_path}", "train.run_name=hard",
                                                      "train.epochs=2", "sampler.hard_negatives=true"])
    result = train(config)
    state = load_checkpoint(result.last_checkpoint)
    class_ids, centroids = state["class_centroids"]
    assert len(class_ids) == centroids.shape[0] > 1
    assert centroids.shape[1] == config.model.embedding_dim


def test_cache_workers_fill_before_training(trained_run, tmp_path):
    config = load_config(None, trained_run.overrides + [f"train.out_dir={tmp_path}", "train.run_name=workers",
                                                      "train.epochs=1", "data.workers=2",
                                                      f"data.cache_dir={tmp_path / 'fresh-cache'}"])
    result = train(config)
    assert result.best_checkpoint.is_file()
    assert len(list((tmp_path / "fresh-cache").rglob("*.npz"))) == 8
