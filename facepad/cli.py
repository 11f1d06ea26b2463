"""Command-line interface: parses options and calls into the pipeline modules.

Exit status: 0 on success, 1 when a batch command processed no photo at all, 2 for
usage errors and invalid input (a `FacepadError`, printed as one line).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from facepad.crops import CropSettings
from facepad.errors import FacepadError
from facepad.quality import QualitySettings

app = typer.Typer(
    name="facepad",
    help="Embeddings and 0-1 scores of facial fat-pad regions (cheek and under-eye).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


# Commands are registered below, one function per command.


@app.command("crop")
def crop_command(
    paths: list[Path] = typer.Argument(..., help="Photos, or folders searched recursively for photos."),
    out: Path = typer.Option(..., "--out", help="Output folder for crops/, previews/, index.csv and skipped.csv."),
    size: int = typer.Option(CropSettings.size, "--size", help="Side of each square crop, in pixels."),
    margin: float = typer.Option(CropSettings.margin, "--margin", help="Border added around each region on every side, as a fraction of the region's square."),
    mask: bool = typer.Option(CropSettings.mask, "--mask", help="Black out the pixels outside each region's polygon."),
    max_yaw: float = typer.Option(QualitySettings.max_yaw_deg, "--max-yaw", help="Reject photos whose head is turned more than this, in degrees."),
    max_pitch: float = typer.Option(QualitySettings.max_pitch_deg, "--max-pitch", help="Reject photos whose head is tilted up or down more than this, in degrees."),
    min_iod: float = typer.Option(QualitySettings.min_interocular_px, "--min-iod", help="Reject faces whose inter-ocular distance is below this, in pixels."),
    model: Path = typer.Option(None, "--model", help="MediaPipe FaceLandmarker .task file; default: the FaceMesh models inside mediapipe."),
) -> None:
    """Crop the cheek and under-eye regions of each photo; write a preview per photo to check them."""
    from facepad.crop_command import format_summary, run_crop

    crop = CropSettings(size=size, margin=margin, mask=mask)
    quality = QualitySettings(
        max_yaw_deg=max_yaw,
        max_pitch_deg=max_pitch,
        min_interocular_px=min_iod,
        turned_away_yaw_deg=min(QualitySettings.turned_away_yaw_deg, max_yaw),
    )
    summary = run_crop(paths, out, crop=crop, quality=quality, model_path=model)
    typer.echo(format_summary(summary))
    raise typer.Exit(0 if summary.cropped > 0 else 1)


@app.command("train")
def train_command(
    config: Path = typer.Option(None, "--config", "-c", help="YAML config file; keys it omits keep their defaults."),
    overrides: list[str] = typer.Option([], "--set", help="Override one config key, e.g. --set train.epochs=5. Repeatable."),
    resume: Path = typer.Option(
        None, "--resume", help="Run folder to continue from its last.pt, with its own config; --set still applies."
    ),
) -> None:
    """Train a model on a manifest; write checkpoints, TensorBoard logs and the config to a run folder."""
    from facepad.config import load_config
    from facepad.training import train

    if config is None and resume is None:
        raise typer.BadParameter("give --config FILE, or --resume RUN_DIR to continue a run", param_hint="--config")
    if config is not None and resume is not None:
        raise typer.BadParameter(
            "--resume continues with the run's own config; drop --config and change keys with --set",
            param_hint="--config",
        )
    if resume is not None:
        if not (resume / "last.pt").is_file():
            raise FacepadError(f"--resume {resume}: no last.pt in that folder; give a run folder that facepad train wrote")
        result = train(None, resume=resume, resume_overrides=overrides)
    else:
        result = train(load_config(config, overrides), config_name=config.stem)
    if not result.is_main:
        return  # under torchrun only rank 0 prints the summary
    typer.echo(format_training_summary(result))


def format_training_summary(result) -> str:
    """Return the closing table of a training run."""
    lines = [
        "",
        f"run folder        {result.run_dir}",
        f"best checkpoint   {result.best_checkpoint} (epoch {result.best_epoch} of {result.epochs})",
        f"crops             {result.train_crops} training, {result.val_crops} validation",
        f"time              {result.minutes:.1f} min" + ("  (stopped early)" if result.stopped_early else ""),
    ]
    if result.best_metrics:
        lines.append("")
        lines.append(f"{'metric':<34}{'best epoch':>12}")
        for name, value in result.best_metrics.items():
            lines.append(f"{name:<34}{value:>12.4f}")
    if result.skipped_photos:
        lines.append("")
        lines.append(f"skipped {len(result.skipped_photos)} photo(s):")
        lines.extend(f"  {path}: {reason}" for path, reason in result.skipped_photos)
    lines.append("")
    lines.append(f"TensorBoard: tensorboard --logdir {result.run_dir / 'tensorboard'}")
    return "\n".join(lines)


def _checkpoint_for(checkpoint: Path | None) -> Path:
    from facepad.inference import resolve_checkpoint

    path, found = resolve_checkpoint(checkpoint)
    if found:
        typer.echo(f"using checkpoint {path} (the newest best.pt under runs/)", err=True)
    return path


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        typer.echo(f"skipped {len(skipped)} photo(s):", err=True)
        for path, reason in skipped:
            typer.echo(f"  {path}: {reason}", err=True)


CHECKPOINT_HELP = "Checkpoint file; default: the newest runs/*/best.pt."
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cuda, mps or cpu."


@app.command("embed")
def embed_command(
    paths: list[Path] = typer.Argument(..., help="Photos and folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file: .npz, .csv or .parquet."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Write one embedding per photo and region side."""
    from tqdm import tqdm

    from facepad.inference import (
        Predictor,
        embedding_table,
        load_model,
        write_embeddings,
    )
    from facepad.io_utils import check_output_folder
    from facepad.loading import find_images

    check_output_folder(out)
    if out.suffix.lower() not in (".npz", ".csv", ".parquet"):
        raise FacepadError(f"--out {out}: unknown extension {out.suffix!r}; use .npz, .csv or .parquet")
    files, skipped = find_images(paths)
    if not files:
        if skipped:
            reasons = "; ".join(f"{path}: {reason}" for path, reason in skipped)
            raise FacepadError(f"no photo to embed ({reasons})")
        raise FacepadError(f"no image files found in {', '.join(map(str, paths))}; give photos or folders of photos")
    loaded = load_model(_checkpoint_for(checkpoint), device)
    with Predictor(loaded) as predictor:
        results = list(tqdm(predictor.predict(files), total=len(files), desc="embedding", unit="photo", disable=None))
    skipped += [(r.path, r.error) for r in results if r.error is not None]
    table = embedding_table(results)
    if len(table["paths"]) == 0:
        _print_skipped(skipped)
        typer.echo("no photo could be embedded; nothing written", err=True)
        raise typer.Exit(1)
    write_embeddings(table, out)
    photos = len(files) - sum(1 for r in results if r.error is not None)
    typer.echo(f"wrote {len(table['paths'])} embeddings of {photos} photo(s) to {out}")
    _print_skipped(skipped)


@app.command("score")
def score_command(
    photos: list[Path] = typer.Argument(..., help="Photos to score."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per photo (JSON Lines)."),
    overlay: Path = typer.Option(
        None, "--overlay", help="PNG with region outlines and scores; a folder when several photos are given."
    ),
    neighbours: int = typer.Option(5, "--neighbours", min=0, help="Nearest training crops to show per region side."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Score photos per region side, with left/right asymmetry, quality flags and nearest training crops."""
    import json

    from facepad.inference import Predictor, format_score_table, load_model

    overlay_paths = _overlay_paths(photos, overlay)
    loaded = load_model(_checkpoint_for(checkpoint), device)
    scored = 0
    with Predictor(loaded) as predictor:
        for result, overlay_path in zip(predictor.predict(photos, neighbours=neighbours), overlay_paths):
            if result.error is None:
                scored += 1
                if overlay_path is not None:
                    _write_overlay(result, overlay_path)
            if json_output:
                typer.echo(json.dumps(result.to_json()))
            else:
                typer.echo(format_score_table(result))
                if overlay_path is not None and result.error is None:
                    typer.echo(f"  overlay: {overlay_path}")
    if scored == 0:
        raise typer.Exit(1)


def _overlay_paths(photos: list[Path], overlay: Path | None) -> list[Path | None]:
    from facepad.io_utils import check_output_folder

    if overlay is None:
        return [None] * len(photos)
    if len(photos) == 1 and not overlay.is_dir():
        if overlay.suffix.lower() != ".png":
            raise FacepadError(f"--overlay {overlay}: give a .png file name")
        return [check_output_folder(overlay)]
    if not overlay.is_dir():
        raise FacepadError(f"--overlay {overlay}: with several photos, give an existing folder for the overlays")
    names = [overlay / f"{photo.stem}_overlay.png" for photo in photos]
    counts: dict[Path, int] = {}
    unique = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
        unique.append(name if counts[name] == 1 else name.with_stem(f"{name.stem}_{counts[name]}"))
    return unique


def _write_overlay(result, path: Path) -> None:
    from PIL import Image

    from facepad.io_utils import atomic_path
    from facepad.loading import load_image
    from facepad.preview import draw_regions

    image = load_image(result.path)
    labels = {name: f"{region.score:.2f}" for name, region in result.regions.items()}
    drawn = draw_regions(image, result.crops.landmarks, labels=labels)
    with atomic_path(path) as temp:
        Image.fromarray(drawn).save(temp, format="PNG")


@app.command("evaluate")
def evaluate_command(
    manifest: Path = typer.Option(..., "--manifest", help="Manifest CSV with labels for the photos."),
    out: Path = typer.Option(Path("evaluation"), "--out", help="Folder for metrics.json, metrics.txt and plots."),
    split: str = typer.Option(
        "all", "--split", help="Rows to evaluate: all, train, val or test. train/val without a split column "
        "repeat the subject split of the checkpoint's training run."
    ),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
) -> None:
    """Measure a model against labelled photos: agreement, retrieval and plots."""
    from facepad.evaluation import format_metrics_table, write_evaluation
    from facepad.inference import Predictor, load_model, predict_manifest_rows
    from facepad.io_utils import check_output_folder
    from facepad.manifest import read_manifest, split_by_subject

    if split not in ("all", "train", "val", "test"):
        raise typer.BadParameter(f"{split!r} is not one of all, train, val, test", param_hint="--split")
    check_output_folder(out)
    table = read_manifest(manifest)
    loaded = load_model(_checkpoint_for(checkpoint), device)
    if split == "all":
        rows = table.rows
    elif split == "test":
        rows = [row for row in table.rows if row.split == "test"]
    else:
        data_config = loaded.config.data
        train_rows, val_rows = split_by_subject(table, data_config.val_fraction, data_config.split_seed)
        rows = train_rows if split == "train" else val_rows
    if not rows:
        raise FacepadError(f"manifest {manifest} has no rows in split {split!r}")
    with Predictor(loaded) as predictor:
        data, skipped = predict_manifest_rows(predictor, rows)
    if len(data.region_sides) < 2:
        _print_skipped(skipped)
        raise FacepadError(f"fewer than 2 labelled region sides could be scored from {manifest}; nothing to evaluate")
    out.mkdir(exist_ok=True)
    metrics = write_evaluation(data, out)
    typer.echo(format_metrics_table(metrics))
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'metrics.txt'} and plots to {out}")
    _print_skipped(skipped)


@app.command("demo-data")
def demo_data_command(
    out: Path = typer.Argument(..., help="Folder for the photos, manifest.csv and preview.png; created if missing."),
    faces: Path = typer.Option(
        None, "--faces", help="Folder of face photos, searched recursively; default: the portraits matplotlib and scikit-image ship."
    ),
    per_face: int = typer.Option(64, "--per-face", min=1, help="Variants written per source photo."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed; the same seed gives byte-identical files."),
) -> None:
    """Write a demo set: face photos with cheek and under-eye warps whose magnitudes (0-1) are the labels."""
    from facepad.demo_data import PREVIEW_NAME, make_demo_set

    manifest = make_demo_set(out, faces_dir=faces, per_face=per_face, seed=seed)
    typer.echo(f"wrote {manifest} and {manifest.parent / PREVIEW_NAME}")


def run() -> int:
    """Run the command in sys.argv and return its exit status.

    A `FacepadError` is printed as one line instead of a traceback, with status 2.
    """
    try:
        app()
    except FacepadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:
        if exit_.code is None:
            return 0
        if isinstance(exit_.code, int):
            return exit_.code
        print(exit_.code, file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """Console entry point: run the command, then exit without the interpreter's teardown.

    Every command has closed its files when `run` returns. Skipping the teardown saves
    about a second per command on a 2-core machine, which is what unloading torch and
    its libraries at exit takes there (measured with torch 2.14.1).
    """
    code = run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
