"""Using a trained checkpoint: embed and score photos.

`load_model` rebuilds the network and its crop settings from one checkpoint file.
`Predictor` crops photos the way training did (same `Cropper`, same settings) and runs
them through `predict_crops`, the function validation used, so a photo gets the same
embedding here as in training.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facepad.checkpoint import find_latest_checkpoint, load_checkpoint
from facepad.classes import ClassTable
from facepad.config import Config, config_from_dict
from facepad.cropper import Cropper, PhotoCrops
from facepad.distributed import select_device
from facepad.errors import CheckpointError, ConfigError, FacepadError, strip_path_prefix
from facepad.loading import load_images_ahead
from facepad.model import FatPadNet, predict_crops
from facepad.regions import REGION_SIDES, REGION_TABLE_VERSION, REGION_TYPES

_logger = logging.getLogger(__name__)



@dataclass
class LoadedModel:
    """A network in eval mode with everything its checkpoint holds for inference."""

    model: FatPadNet
    config: Config
    classes: ClassTable
    path: Path
    device: torch.device
    exemplars: dict[str, Any] | None  # training crops' embeddings and scores, for nearest neighbours
    epoch: int


def resolve_checkpoint(path: str | os.PathLike | None, runs_dir: str | os.PathLike = "runs") -> tuple[Path, bool]:
    """Return the checkpoint to use and whether it was found automatically (newest best.pt)."""
    if path is not None:
        return Path(path), False
    return find_latest_checkpoint(runs_dir), True


def load_model(path: str | os.PathLike, device: str = "auto") -> LoadedModel:
    """Load a checkpoint into a network ready for inference.

    Raises CheckpointError when the file is unsafe, corrupt, from another region table
    version, or contains weights that do not fit the backbone it names.
    """
    path = Path(path)
    state = load_checkpoint(path)
    for key in ("model_state", "config", "classes", "region_table_version"):
        if key not in state:
            raise CheckpointError(f"checkpoint {path} lacks {key!r}; it was not written by facepad train")
    if state["region_table_version"] != REGION_TABLE_VERSION:
        raise CheckpointError(
            f"checkpoint {path} was trained with region table version {state['region_table_version']}, "
            f"but this facepad crops with version {REGION_TABLE_VERSION}; retrain or use the matching release"
        )
    try:
        config = config_from_dict(state["config"])
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path} contains a config this facepad cannot read: {error}") from None

    # The checkpoint contains the weights, so no pretrained file or download is needed.
    config.model.pretrained = False
    config.model.pretrained_path = None
    try:
        model = FatPadNet(config.model)
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from None
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"checkpoint {path}: its weights do not fit backbone {config.model.backbone!r} ({detail}); "
            "the file may come from another backbone or be damaged"
        ) from None
    target = select_device(device)
    model.to(target).eval()
    exemplars = state.get("exemplars")
    return LoadedModel(model, config, ClassTable.from_dict(state["classes"]), path, target, exemplars,
                       int(state.get("epoch", -1)))


@dataclass
class RegionResult:
    """The model's output for one region side of one photo."""

    name: str
    embedding: np.ndarray  # [D] float32
    score: float  # head score in (0, 1)
    outside_image: bool
    knn_score: float | None = None  # mean score of the nearest training crops
    neighbours: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PhotoResult:
    """The model's output for one photo, or the reason it could not be processed."""

    path: str
    error: str | None = None
    regions: dict[str, RegionResult] = field(default_factory=dict)
    crops: PhotoCrops | None = None

    def asymmetry(self) -> dict[str, float]:
        """Return left minus right score per region type (positive: the subject's left is fuller)."""
        result = {}
        for region in REGION_TYPES:
            left, right = self.regions.get(f"{region}_left"), self.regions.get(f"{region}_right")
            if left is not None and right is not None:
                result[region] = left.score - right.score
        return result

    def to_json(self) -> dict[str, Any]:
        """Return the documented JSON object of `facepad score --json`."""
        if self.error is not None or self.crops is None:
            return {"photo": self.path, "error": self.error}
        quality = self.crops.quality
        regions = {}
        for name, region in self.regions.items():
            regions[name] = {
                "score": round(region.score, 4),
                "knn_score": None if region.knn_score is None else round(region.knn_score, 4),
                "outside_image": region.outside_image,
                "neighbours": region.neighbours,
            }
        return {
            "photo": self.path,
            "error": None,
            "regions": regions,
            "asymmetry": {k: round(v, 4) for k, v in self.asymmetry().items()},
            "quality": {
                "yaw_deg": round(float(quality.yaw_deg), 2),
                "pitch_deg": round(float(quality.pitch_deg), 2),
                "roll_deg": round(float(quality.roll_deg), 2),
                "interocular_px": round(float(quality.interocular_px), 1),
                "flags": list(quality.flags),
                "faces_found": int(self.crops.landmarks.num_faces),
            },
        }


class Predictor:
    """Crop photos with a checkpoint's settings and run them through its network."""

    def __init__(self, loaded: LoadedModel, batch_photos: int = 16) -> None:
        # The model and what came with it
        self.loaded = loaded
        config = loaded.config

        # The cropper, with the settings the model was trained on
        self.cropper = Cropper(config.crop, config.quality, model_path=config.landmarks.model_path,
                               max_side=config.landmarks.max_side)

        # Configuration
        self.batch_photos = batch_photos

    def predict(self, paths: Iterable[str | os.PathLike], neighbours: int = 0) -> Iterator[PhotoResult]:
        """Yield one result per path, in order; a photo that fails yields its error instead.

        Crops of `batch_photos` photos go through the network together.
        """
        pending: list[PhotoResult] = []
        for path, image in load_images_ahead(list(paths)):
            result = PhotoResult(str(path))
            try:
                if isinstance(image, FacepadError):
                    raise image
                result.crops = self.cropper.process_image(image, source=str(path))
            except FacepadError as error:
                result.error = strip_path_prefix(str(error), str(path))
            pending.append(result)
            if len(pending) >= self.batch_photos:
                yield from self._run(pending, neighbours)
                pending = []
        if pending:
            yield from self._run(pending, neighbours)

    def _run(self, results: list[PhotoResult], neighbours: int) -> list[PhotoResult]:
        ready = [r for r in results if r.crops is not None]
        if ready:
            images = np.stack([r.crops.crops[name].image for r in ready for name in REGION_SIDES])
            regions = np.array([REGION_TYPES.index(name.split("_")[0]) for _ in ready for name in REGION_SIDES])
            embeddings, scores = predict_crops(self.loaded.model, images, regions, self.loaded.device)
            k = 0
            for result in ready:
                for name in REGION_SIDES:
                    result.regions[name] = RegionResult(
                        name, embeddings[k], float(scores[k]), bool(result.crops.crops[name].outside_image)
                    )
                    k += 1
                if neighbours > 0:
                    self._add_neighbours(result, neighbours)
        return results

    def _add_neighbours(self, result: PhotoResult, count: int) -> None:
        exemplars = self.loaded.exemplars
        if not exemplars:
            return
        bank = torch.nn.functional.normalize(exemplars["embeddings"].float(), dim=1).numpy()
        bank_regions = exemplars["region_index"].numpy()
        bank_scores = exemplars["scores"].numpy()
        for name, region in result.regions.items():
            same_type = np.flatnonzero(bank_regions == REGION_TYPES.index(name.split("_")[0]))
            if same_type.size == 0:
                continue
            query = region.embedding / max(float(np.linalg.norm(region.embedding)), 1e-12)
            similarity = bank[same_type] @ query
            order = np.argsort(-similarity)[:count]
            chosen = same_type[order]
            region.neighbours = [
                {
                    "score": round(float(bank_scores[i]), 4),
                    "similarity": round(float(similarity[j]), 4),
                    "source": exemplars["sources"][i],
                    "region_side": exemplars["region_sides"][i],
                }
                for j, i in zip(order, chosen)
            ]
            labelled = [float(bank_scores[i]) for i in chosen if not math.isnan(float(bank_scores[i]))]
            region.knn_score = float(np.mean(labelled)) if labelled else None

    def close(self) -> None:
        self.cropper.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def embedding_table(results: Sequence[PhotoResult]) -> dict[str, np.ndarray]:
    """Flatten photo results into the arrays written by `facepad embed`: one row per photo and region side."""
    embeddings, paths, regions, sides, flags, scores, outside = [], [], [], [], [], [], []
    for result in results:
        if result.crops is None:
            continue
        for name, region in result.regions.items():
            region_type, side = name.split("_")
            embeddings.append(region.embedding)
            paths.append(result.path)
            regions.append(region_type)
            sides.append(side)
            quality_flags = list(result.crops.quality.flags) + (["outside_image"] if region.outside_image else [])
            flags.append(";".join(quality_flags))
            scores.append(region.score)
            outside.append(region.outside_image)
    dim = embeddings[0].shape[0] if embeddings else 0
    return {
        "embeddings": np.stack(embeddings).astype(np.float32) if embeddings else np.zeros((0, dim), np.float32),
        "paths": np.array(paths, dtype=str),
        "regions": np.array(regions, dtype=str),
        "sides": np.array(sides, dtype=str),
        "flags": np.array(flags, dtype=str),
        "scores": np.array(scores, dtype=np.float32),
    }


EMBEDDING_FORMATS = (".npz", ".csv", ".parquet")


def write_embeddings(table: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write an embedding table atomically; the format follows the extension (.npz, .csv, .parquet).

    Raises FacepadError for an unknown extension, a missing output folder, or .parquet
    without pyarrow installed.
    """
    from facepad.io_utils import atomic_path, check_output_folder

    path = check_output_folder(path)
    suffix = path.suffix.lower()
    if suffix not in EMBEDDING_FORMATS:
        raise FacepadError(f"--out {path}: unknown extension {suffix!r}; use one of {', '.join(EMBEDDING_FORMATS)}")
    columns = ("paths", "regions", "sides", "flags", "scores")
    dim = table["embeddings"].shape[1]
    if suffix == ".npz":
        with atomic_path(path) as temp:
            np.savez(temp, **table)
    elif suffix == ".csv":
        import csv

        with atomic_path(path) as temp:
            with open(temp, "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(["path", "region", "side", "flags", "score", *(f"e{i}" for i in range(dim))])
                for row in range(len(table["paths"])):
                    values = [table[c][row] for c in columns]
                    values[-1] = f"{values[-1]:.6f}"
                    writer.writerow([*values, *(f"{v:.8g}" for v in table["embeddings"][row])])
    else:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as error:
            raise FacepadError(
                f"--out {path}: writing .parquet needs a working pyarrow ({error}); "
                "install it with pip install 'facepad[parquet]', or use .npz or .csv"
            ) from None
        arrow = pa.table({
            "path": table["paths"].tolist(),
            "region": table["regions"].tolist(),
            "side": table["sides"].tolist(),
            "flags": table["flags"].tolist(),
            "score": table["scores"],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(table["embeddings"].reshape(-1)), dim),
        })
        with atomic_path(path) as temp:
            pq.write_table(arrow, temp)


def format_score_table(result: PhotoResult) -> str:
    """Return the readable table that `facepad score` prints for one photo."""
    if result.error is not None or result.crops is None:
        return f"{result.path}: not scored: {result.error}"

    lines = [result.path]
    has_knn = any(r.knn_score is not None for r in result.regions.values())
    header = f"  {'region':<10}{'left':>8}{'right':>8}{'L-R':>8}"
    if has_knn:
        header += f"{'knn left':>10}{'knn right':>11}"
    lines.append(header)
    asymmetry = result.asymmetry()
    for region in REGION_TYPES:
        left, right = result.regions[f"{region}_left"], result.regions[f"{region}_right"]
        line = f"  {region:<10}{left.score:>8.3f}{right.score:>8.3f}{asymmetry[region]:>+8.3f}"
        if has_knn:
            line += f"{_format_optional(left.knn_score):>10}{_format_optional(right.knn_score):>11}"
        marks = [name for name in (left, right) if name.outside_image]
        if marks:
            line += "  (" + ", ".join(f"{m.name} runs past the image border" for m in marks) + ")"
        lines.append(line)

    quality = result.crops.quality
    flags = ", ".join(quality.flags) if quality.flags else "none"
    lines.append(
        f"  pose: yaw {quality.yaw_deg:+.1f} deg, pitch {quality.pitch_deg:+.1f} deg, roll {quality.roll_deg:+.1f} deg; "
        f"inter-ocular {quality.interocular_px:.0f} px; faces found {result.crops.landmarks.num_faces}; flags: {flags}"
    )

    for name, region in result.regions.items():
        if region.neighbours:
            nearest = ", ".join(f"{n['score']:.2f}" for n in region.neighbours)
            lines.append(f"  nearest training crops, {name}: {nearest}")
    return "\n".join(lines)


def _format_optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def predict_manifest_rows(predictor: Predictor, rows: Sequence, show_progress: bool = True):
    """Score every labelled region side of manifest rows; return an EvaluationInput and the skipped photos.

    Grades are the manifest's grade columns when the checkpoint's classes are grades, and
    the checkpoint's score bins otherwise, so that retrieval is measured by the classes the
    model was trained on.
    """
    from tqdm import tqdm

    from facepad.evaluation import EvaluationInput

    classes = predictor.loaded.classes
    region_sides, predicted, true, grades, embeddings, labels = [], [], [], [], [], []
    skipped: list[tuple[str, str]] = []
    results = predictor.predict([row.image for row in rows])
    for row, result in tqdm(zip(rows, results), total=len(rows), desc="scoring", unit="photo",
                            disable=None if show_progress else True, leave=False):
        if result.error is not None:
            skipped.append((result.path, result.error))
            continue
        for name, region in result.regions.items():
            score = row.scores.get(name, math.nan)
            grade = row.grades.get(name)
            if math.isnan(score) and grade is None:
                continue
            region_type = name.split("_")[0]
            region_sides.append(name)
            predicted.append(region.score)
            true.append(score)
            grades.append(-1 if grade is None else grade)
            embeddings.append(region.embedding)
            labels.append(classes.class_of(region_type, score, grade))
    has_grades = any(g >= 0 for g in grades)
    data = EvaluationInput(
        region_sides=region_sides,
        predicted=np.asarray(predicted, dtype=np.float64),
        true=np.asarray(true, dtype=np.float64),
        true_grades=np.asarray(grades, dtype=np.int64) if has_grades else None,
        embeddings=np.stack(embeddings) if embeddings else np.zeros((0, 1), np.float32),
        classes=np.asarray(labels, dtype=np.int64),
    )
    return data, skipped
