"""Tests of `facepad embed`, `facepad score`, `facepad evaluate` and `facepad train` as a user runs them.

They call the CLI's entry point in-process with real MediaPipe, real photos of the demo
set and the checkpoint of the session's short training run.
"""

import csv
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from facepad import cli
from facepad.checkpoint import load_checkpoint, save_checkpoint


def run_cli(args, capsys, monkeypatch, cwd=None):
    """Run `facepad ARGS...` and return (exit status, stdout, stderr)."""
    if cwd is not None:
        monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["facepad", *map(str, args)])
    code = cli.run()  # main() would end the test process with os._exit
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(stderr):
    """Return the lines of stderr that are not progress bars or MediaPipe's own logging."""
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def photos(trained_run):
    """Two labelled demo photos of the validation subject."""
    folder = trained_run.result.run_dir.parents[2] / "demo0" / "images"
    files = sorted(p for p in folder.rglob("*.jpg"))
    assert files, f"no demo photos under {folder}"
    return files[:2]


@pytest.fixture
def checkpoint(trained_run):
    return trained_run.result.best_checkpoint


@pytest.fixture
def no_face_photo(tmp_path):
    path = tmp_path / "wall.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(100, 140, (300, 300, 3), dtype=np.uint8)).save(path)
    return path


def test_embed_writes_npz(checkpoint, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "emb.npz"
    code, stdout, _ = run_cli(["embed", *photos, "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 0
    assert "wrote 8 embeddings of 2 photo(s)" in stdout
    with np.load(out) as data:
        assert data["embeddings"].shape == (8, 16)
        assert data["embeddings"].dtype == np.float32
        assert sorted(set(data["regions"])) == ["cheek", "undereye"]
        assert sorted(set(data["sides"])) == ["left", "right"]
        assert len(data["paths"]) == 8


def test_embed_same_photo_same_embedding(checkpoint, photos, tmp_path, capsys, monkeypatch):
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    run_cli(["embed", photos[0], "--out", first, "--checkpoint", checkpoint], capsys, monkeypatch)
    run_cli(["embed", photos[0], "--out", second, "--checkpoint", checkpoint], capsys, monkeypatch)
    with np.load(first) as a, np.load(second) as b:
        np.testing.assert_allclose(a["embeddings"], b["embeddings"], atol=1e-5)


def test_embed_csv_and_parquet(checkpoint, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "emb.csv"
    assert run_cli(["embed", photos[0], "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch)[0] == 0
    with open(out, newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0][:5] == ["path", "region", "side", "flags", "score"]
    assert len(rows) == 5
    assert len(rows[1]) == 5 + 16
    pytest.importorskip("pyarrow", reason="pyarrow is an optional dependency for .parquet output")
    import pyarrow.parquet as pq

    out = tmp_path / "emb.parquet"
    assert run_cli(["embed", photos[0], "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch)[0] == 0
    table = pq.read_table(out)
    assert table.num_rows == 4
    assert len(table.column("embedding")[0]) == 16


def test_embed_skips_bad_photos_and_lists_them(checkpoint, photos, no_face_photo, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    out = tmp_path / "emb.npz"
    code, stdout, stderr = run_cli(
        ["embed", photos[0], no_face_photo, broken, "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch
    )
    assert code == 0
    assert "wrote 4 embeddings of 1 photo(s)" in stdout
    assert "skipped 2 photo(s):" in stderr
    assert f"{no_face_photo}:" in stderr
    assert f"{broken}:" in stderr


def test_embed_only_bad_photos_writes_nothing(checkpoint, no_face_photo, tmp_path, capsys, monkeypatch):
    out = tmp_path / "emb.npz"
    code, _, stderr = run_cli(["embed", no_face_photo, "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 1
    assert "nothing written" in stderr
    assert not out.exists()


def test_embed_folder_without_images(checkpoint, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos here")
    code, _, stderr = run_cli(["embed", empty, "--out", tmp_path / "e.npz", "--checkpoint", checkpoint],
                              capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr) == [f"error: no image files found in {empty}; give photos or folders of photos"]


def test_embed_missing_file_is_one_line(checkpoint, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "missing.jpg"
    code, _, stderr = run_cli(["embed", missing, "--out", tmp_path / "e.npz", "--checkpoint", checkpoint],
                              capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr) == [f"error: no photo to embed ({missing}: file or folder not found)"]


def test_embed_output_folder_missing(checkpoint, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "absent" / "emb.npz"
    code, _, stderr = run_cli(["embed", photos[0], "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 2
    assert len(error_lines(stderr)) == 1
    assert "output folder" in error_lines(stderr)[0]
    assert "does not exist" in error_lines(stderr)[0]


def test_embed_unknown_extension(checkpoint, photos, tmp_path, capsys, monkeypatch):
    code, _, stderr = run_cli(["embed", photos[0], "--out", tmp_path / "e.h5", "--checkpoint", checkpoint],
                              capsys, monkeypatch)
    assert code == 2
    assert "unknown extension '.h5'" in stderr


def test_score_table(checkpoint, photos, capsys, monkeypatch):
    code, stdout, _ = run_cli(["score", photos[0], "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 0
    assert "cheek" in stdout
    assert "undereye" in stdout
    assert "L-R" in stdout
    assert "nearest training crops, cheek_left:" in stdout
    assert "yaw" in stdout


def test_score_json_documented_fields(checkpoint, photos, no_face_photo, capsys, monkeypatch):
    code, stdout, _ = run_cli(["score", photos[0], no_face_photo, "--json", "--checkpoint", checkpoint],
                              capsys, monkeypatch)
    assert code == 0
    objects = [json.loads(line) for line in stdout.splitlines()]
    assert len(objects) == 2
    good, bad = objects
    assert good["error"] is None
    assert set(good["regions"]) == {"cheek_left", "cheek_right", "undereye_left", "undereye_right"}
    region = good["regions"]["cheek_left"]
    assert 0 < region["score"] < 1
    assert len(region["neighbours"]) == 5
    assert region["knn_score"] == pytest.approx(np.mean([n["score"] for n in region["neighbours"]]), abs=1e-3)
    left, right = good["regions"]["undereye_left"]["score"], good["regions"]["undereye_right"]["score"]
    assert good["asymmetry"]["undereye"] == pytest.approx(left - right, abs=2e-4)
    assert set(good["quality"]) >= {"yaw_deg", "pitch_deg", "roll_deg", "interocular_px", "flags", "faces_found"}
    assert bad["photo"] == str(no_face_photo)
    assert bad["error"]


def test_score_agrees_with_embed(checkpoint, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "emb.npz"
    run_cli(["embed", photos[0], "--out", out, "--checkpoint", checkpoint], capsys, monkeypatch)
    code, stdout, _ = run_cli(["score", photos[0], "--json", "--checkpoint", checkpoint], capsys, monkeypatch)
    scored = json.loads(stdout)
    with np.load(out) as data:
        for region, side, score in zip(data["regions"], data["sides"], data["scores"]):
            assert scored["regions"][f"{region}_{side}"]["score"] == pytest.approx(float(score), abs=1e-4)


def test_score_overlay_png(checkpoint, photos, tmp_path, capsys, monkeypatch):
    out = tmp_path / "overlay.png"
    code, stdout, _ = run_cli(["score", photos[0], "--overlay", out, "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 0
    with Image.open(out) as image:
        original = Image.open(photos[0])
        assert image.size == original.size
        assert np.abs(np.asarray(image.convert("RGB"), dtype=int) - np.asarray(original, dtype=int)).max() > 50


def test_score_no_face_only(checkpoint, no_face_photo, capsys, monkeypatch):
    code, stdout, _ = run_cli(["score", no_face_photo, "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 1
    assert f"{no_face_photo}: not scored: no face found" in stdout


def test_score_newest_checkpoint_under_runs(trained_run, photos, capsys, monkeypatch):
    code, _, stderr = run_cli(["score", photos[0]], capsys, monkeypatch, cwd=trained_run.result.run_dir.parents[1])
    assert code == 0
    assert "using checkpoint runs/" in stderr


def test_score_without_any_checkpoint(photos, tmp_path, capsys, monkeypatch):
    code, _, stderr = run_cli(["score", photos[0]], capsys, monkeypatch, cwd=tmp_path)
    assert code == 2
    assert error_lines(stderr) == [
        "error: no checkpoint given and none found under runs/; train one with "
        "`facepad train --config configs/demo.yaml` or pass --checkpoint PATH"
    ]


def test_score_corrupt_checkpoint(photos, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(os.urandom(1000))
    code, _, stderr = run_cli(["score", photos[0], "--checkpoint", broken], capsys, monkeypatch)
    assert code == 2
    assert len(error_lines(stderr)) == 1
    assert str(broken) in error_lines(stderr)[0]


def test_score_checkpoint_of_other_backbone(checkpoint, photos, tmp_path, capsys, monkeypatch):
    state = load_checkpoint(checkpoint)
    state["config"]["model"]["backbone"] = "test_convnext"
    other = tmp_path / "other.pt"
    save_checkpoint(state, other)
    code, _, stderr = run_cli(["score", photos[0], "--checkpoint", other], capsys, monkeypatch)
    assert code == 2
    assert "do not fit backbone 'test_convnext'" in stderr


def test_score_checkpoint_from_other_region_table(checkpoint, photos, tmp_path, capsys, monkeypatch):
    state = load_checkpoint(checkpoint)
    state["region_table_version"] = 999
    other = tmp_path / "other.pt"
    torch.save(state, other)
    code, _, stderr = run_cli(["score", photos[0], "--checkpoint", other], capsys, monkeypatch)
    assert code == 2
    assert "region table version 999" in stderr


def test_evaluate_writes_metrics_and_plots(trained_run, checkpoint, tmp_path, capsys, monkeypatch):
    out = tmp_path / "evaluation"
    manifest = trained_run.config.data.manifest
    code, stdout, _ = run_cli(["evaluate", "--manifest", manifest, "--split", "val", "--out", out,
                               "--checkpoint", checkpoint], capsys, monkeypatch)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["region_types"]["cheek"]["agreement"]["n"] == 8
    for name in ("predicted_vs_true_cheek.png", "bland_altman_undereye.png", "metrics.txt"):
        assert (out / name).is_file(), name
    assert "MAE" in stdout
    assert "MAP@R" in stdout
    best = trained_run.result.best_metrics
    assert metrics["region_types"]["cheek"]["agreement"]["mae"] == pytest.approx(best["val/cheek/mae"], abs=1e-4)


def test_evaluate_manifest_without_labels(checkpoint, photos, tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "unlabelled.csv"
    manifest.write_text(f"image,subject\n{photos[0]},s1\n")
    code, _, stderr = run_cli(["evaluate", "--manifest", manifest, "--checkpoint", checkpoint, "--out",
                               tmp_path / "ev"], capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr) == [
        f"error: manifest {manifest} has no score column; add at least one of "
        "cheek_left, cheek_right, undereye_left, undereye_right"
    ]
    assert not (tmp_path / "ev").exists()


def test_train_bad_config_is_one_line(tmp_path, capsys, monkeypatch):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  epochs: ten\n")
    code, _, stderr = run_cli(["train", "--config", config], capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr) == ["error: config key train.epochs must be of type int, got 'ten'"]


def test_train_unknown_set_key(tmp_path, capsys, monkeypatch):
    config = tmp_path / "ok.yaml"
    config.write_text("seed: 1\n")
    code, _, stderr = run_cli(["train", "--config", config, "--set", "train.epoch=3"], capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr)[0].startswith("error: unknown config key train.epoch;")


def test_train_with_one_class_is_one_line(trained_run, tmp_path, capsys, monkeypatch):
    photos = sorted((trained_run.result.run_dir.parents[2] / "demo0" / "images").rglob("*.jpg"))[:2]
    manifest = tmp_path / "one_class.csv"
    manifest.write_text("image,subject,cheek_left\n" + "".join(f"{p},s{i},0.5\n" for i, p in enumerate(photos)))
    config = tmp_path / "one_class.yaml"
    config.write_text("train:\n  epochs: 1\n")
    code, _, stderr = run_cli(["train", "--config", config, "--set", f"data.manifest={manifest}",
                               "--set", "data.val_fraction=0", "--set", f"train.out_dir={tmp_path / 'runs'}",
                               "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "crop.size=32",
                               "--set", "model.backbone=test_resnet"], capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr) == [
        "error: the labels contain 1 class, but N-pair batches need at least 2; label more grades or use more score bins"
    ]
    assert not (tmp_path / "runs").exists(), "a failed start left a run folder behind"


def test_train_resume_with_config_is_rejected(trained_run, tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 1\n")
    code, _, stderr = run_cli(["train", "--config", config, "--resume", trained_run.result.run_dir],
                              capsys, monkeypatch)
    assert code == 2
    assert "--resume continues with the run's own config" in stderr


def test_train_resume_without_last_checkpoint(tmp_path, capsys, monkeypatch):
    code, _, stderr = run_cli(["train", "--resume", tmp_path], capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr) == [
        f"error: --resume {tmp_path}: no last.pt in that folder; give a run folder that facepad train wrote"
    ]


def test_train_missing_manifest_names_key(tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  manifest: {tmp_path / 'absent.csv'}\ntrain:\n  out_dir: {tmp_path / 'runs'}\n")
    code, _, stderr = run_cli(["train", "--config", config], capsys, monkeypatch)
    assert code == 2
    assert error_lines(stderr)[0].startswith(f"error: config key data.manifest='{tmp_path / 'absent.csv'}': file not found")
    assert not (tmp_path / "runs").exists()


def test_console_entry_point_exit_status(checkpoint, tmp_path):
    """`facepad` as a process: main() ends with os._exit, so output and status must still arrive."""
    import subprocess

    missing = tmp_path / "absent.jpg"
    finished = subprocess.run([sys.executable, "-m", "facepad", "score", str(missing), "--json",
                               "--checkpoint", str(checkpoint)], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1
    assert json.loads(finished.stdout)["error"].startswith("file not found")
