"""Batch sampler for the N-pair loss: N distinct classes with two samples each.

Each batch is a list of 2N dataset indices: the N anchors first, then the N positives in
the same class order, as `NPairLoss` expects. Under torchrun every rank computes the same
global plan from the seed and the epoch and takes its own share of each step's classes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from facepad.errors import ConfigError, FacepadError

_logger = logging.getLogger(__name__)

# Hard negative mining draws each further class with probability proportional to
# exp(similarity / HARD_NEGATIVE_TEMPERATURE), where similarity is the class's highest
# cosine similarity to a class already in the batch. At 0.1 a class 0.1 closer is e times
# as likely, so near classes dominate but one seed class does not always give one batch.
HARD_NEGATIVE_TEMPERATURE = 0.1


class NPairBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yield batches of N distinct classes x 2 samples for `DataLoader(batch_sampler=...)`.

    Classes are the distinct values of `labels`, and `labels[i]` is the class of dataset
    index i. A class with a single sample yields that index as both anchor and positive.
    The dataset's random augmentation then turns it into two different views.

    `classes_per_batch` is the global N. It is capped at the number of classes and, under
    torchrun, rounded down to a multiple of `world_size`, with a logged warning in both
    cases. Each rank yields `classes_per_rank` = N / world_size classes per step, a disjoint
    share of the step's global classes.

    An epoch has `batches_per_epoch` steps, by default ceil(number of samples / 2N), so
    that the global batches hold about as many samples as the data set. Classes are drawn
    with probability proportional to their samples not yet used in the epoch, and each
    class hands out its samples in a shuffled order, so an epoch uses every sample about
    once. It falls short when one class contains more than 1/N of the samples, because a
    class gives only two samples per step.

    With `hard_negatives=True` and class embeddings set by `set_class_embeddings`, batches
    are built from classes that lie close together, after the hard negative class mining
    of Sohn (NeurIPS 2016). That method greedily adds the class that most violates the
    triplet constraint with respect to the classes already chosen. Here the first class is
    drawn as above and each further one at random, favouring a high cosine similarity to a
    class already in the batch (see `HARD_NEGATIVE_TEMPERATURE`).
    Without embeddings it samples as above. Mined batches favour similar classes over even
    coverage of the samples.

    The plan is a function of (seed, epoch, class embeddings), so every rank must be given
    the same class embeddings.
    """

    def __init__(
        self,
        labels: Sequence[int],
        classes_per_batch: int,
        *,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        hard_negatives: bool = False,
    ) -> None:
        label_array = np.asarray(labels)
        if label_array.ndim != 1 or label_array.size == 0:
            raise ValueError(f"labels must be a non-empty 1-D sequence, got shape {label_array.shape}")
        if not np.issubdtype(label_array.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {label_array.dtype}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank={rank}, world_size={world_size} are invalid: expected 0 <= rank < world_size")
        if not _is_integer(classes_per_batch) or classes_per_batch < 2:
            raise ConfigError(f"classes_per_batch={classes_per_batch!r} is invalid: expected an integer >= 2")
        if batches_per_epoch is not None and (not _is_integer(batches_per_epoch) or batches_per_epoch < 1):
            raise ConfigError(f"batches_per_epoch={batches_per_epoch!r} is invalid: expected an integer >= 1")

        # Classes and their members
        self.class_ids, class_positions = np.unique(label_array, return_inverse=True)
        self.num_classes = len(self.class_ids)
        self.num_samples = len(label_array)
        order = np.argsort(class_positions, kind="stable")
        boundaries = np.cumsum(np.bincount(class_positions, minlength=self.num_classes))[:-1]
        self._members = np.split(order, boundaries)
        self._class_sizes = np.array([len(members) for members in self._members])

        # Batch shape
        self.world_size = world_size
        self.rank = rank
        self.classes_per_batch = self._fit_classes_per_batch(int(classes_per_batch))
        self.classes_per_rank = self.classes_per_batch // world_size
        if batches_per_epoch is None:
            batches_per_epoch = math.ceil(self.num_samples / (2 * self.classes_per_batch))
        self.batches_per_epoch = int(batches_per_epoch)

        # Schedule state
        self.seed = seed
        self.epoch = 0
        self.hard_negatives = hard_negatives
        self._class_similarity: np.ndarray | None = None
        self._logged_uniform_fallback = False

        single_sample_classes = int(np.sum(self._class_sizes == 1))
        if single_sample_classes:
            _logger.info(
                "%d of %d classes have a single sample; that sample is both anchor and positive, "
                "and augmentation makes the two views differ",
                single_sample_classes,
                self.num_classes,
            )

    def _fit_classes_per_batch(self, requested: int) -> int:
        """Cap the global N at the number of classes and round it to a multiple of world_size."""
        if self.num_classes < 2:
            raise FacepadError(
                f"the labels contain {self.num_classes} class, but N-pair batches need at least 2; "
                "label more grades or use more score bins"
            )
        classes = requested
        if classes > self.num_classes:
            _logger.warning(
                "classes_per_batch=%d is larger than the number of classes (%d); using %d classes per batch",
                requested,
                self.num_classes,
                self.num_classes,
            )
            classes = self.num_classes

        rounded = classes - classes % self.world_size
        if rounded < max(2, self.world_size):
            raise ConfigError(
                f"{classes} classes per batch cannot be shared by {self.world_size} processes; "
                "use fewer processes or more classes"
            )
        if rounded != classes:
            _logger.warning(
                "%d classes per batch do not split evenly across %d processes; using %d",
                classes,
                self.world_size,
                rounded,
            )
        if rounded == self.world_size:
            _logger.warning(
                "each of the %d processes gets 1 class per step, so its N-pair loss has no "
                "negatives unless the loss gathers positives across processes",
                self.world_size,
            )
        return rounded

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose plan the next iteration yields."""
        self.epoch = epoch

    def set_class_embeddings(self, class_ids: Sequence[int], centroids: np.ndarray) -> None:
        """Store class centroid embeddings, [len(class_ids), D], for hard negative mining.

        Every class in the labels needs exactly one centroid. Call it again each epoch with
        fresh centroids, and the next iteration uses them.

        Raises:
            ValueError: the shapes disagree, a class is missing, unknown or repeated, or a
                centroid is not finite.
        """
        ids = np.asarray(class_ids)
        vectors = np.asarray(centroids, dtype=np.float64)
        if vectors.ndim != 2 or ids.shape != (vectors.shape[0],):
            raise ValueError(
                f"centroids must have shape [len(class_ids), D], got {vectors.shape} for {ids.shape[0]} class ids"
            )
        if not np.all(np.isfinite(vectors)):
            raise ValueError("centroids contain NaN or infinite values")
        unknown = np.setdiff1d(ids, self.class_ids)
        missing = np.setdiff1d(self.class_ids, ids)
        if unknown.size or missing.size or len(np.unique(ids)) != len(ids):
            raise ValueError(
                f"class_ids must list every class once: unknown {unknown.tolist()}, "
                f"missing {missing.tolist()}, {len(ids) - len(np.unique(ids))} repeated"
            )

        positions = np.searchsorted(self.class_ids, ids)
        ordered = np.empty_like(vectors)
        ordered[positions] = vectors
        norms = np.linalg.norm(ordered, axis=1, keepdims=True)
        unit = ordered / np.maximum(norms, 1e-12)
        self._class_similarity = (unit @ unit.T).astype(np.float32)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        pools = _ClassPools(self._members, rng)
        share = slice(self.rank * self.classes_per_rank, (self.rank + 1) * self.classes_per_rank)

        similarity = self._class_similarity if self.hard_negatives else None
        if self.hard_negatives and similarity is None and not self._logged_uniform_fallback:
            _logger.info("hard negative mining has no class embeddings yet; sampling classes at random")
            self._logged_uniform_fallback = True

        for _ in range(self.batches_per_epoch):
            if similarity is not None:
                classes = self._choose_hard_negative_classes(rng, pools.unvisited, similarity)
            else:
                classes = self._choose_classes(rng, pools.unvisited, self.classes_per_batch)
            # Pairs are drawn for every global class, not only this rank's share, so that the
            # pools advance identically on every rank.
            pairs = [pools.take_pair(position) for position in classes]
            local_pairs = pairs[share]
            yield [int(anchor) for anchor, _ in local_pairs] + [int(positive) for _, positive in local_pairs]

    def _choose_classes(self, rng: np.random.Generator, unvisited: np.ndarray, count: int) -> np.ndarray:
        """Draw `count` distinct class positions, weighted by samples not yet used this epoch."""
        with_unvisited = np.flatnonzero(unvisited)
        if len(with_unvisited) >= count:
            return rng.choice(self.num_classes, size=count, replace=False, p=unvisited / unvisited.sum())

        # Fewer classes than needed have unused samples: take them all, then fill the batch
        # from the other classes in proportion to their size.
        others = np.flatnonzero(unvisited == 0)
        weights = self._class_sizes[others] / self._class_sizes[others].sum()
        filled = rng.choice(others, size=count - len(with_unvisited), replace=False, p=weights)
        return rng.permutation(np.concatenate([with_unvisited, filled]))

    def _choose_hard_negative_classes(
        self, rng: np.random.Generator, unvisited: np.ndarray, similarity: np.ndarray
    ) -> np.ndarray:
        """Build one batch from a random seed class and the classes closest to the batch."""
        chosen = [int(self._choose_classes(rng, unvisited, 1)[0])]
        closeness = similarity[chosen[0]].copy()
        closeness[chosen[0]] = -np.inf

        for _ in range(self.classes_per_batch - 1):
            # Chosen classes have closeness -inf and so probability 0.
            weights = np.exp((closeness - closeness.max()) / HARD_NEGATIVE_TEMPERATURE)
            picked = int(rng.choice(self.num_classes, p=weights / weights.sum()))
            chosen.append(picked)
            np.maximum(closeness, similarity[picked], out=closeness)
            closeness[chosen] = -np.inf
        return np.array(chosen)


def _is_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class _ClassPools:
    """Shuffled queues of each class's samples, refilled with a new shuffle when used up."""

    def __init__(self, members: list[np.ndarray], rng: np.random.Generator) -> None:
        self._members = members
        self._rng = rng
        self._queues = [rng.permutation(class_members) for class_members in members]
        self._next = np.zeros(len(members), dtype=np.int64)
        # Samples of each class not yet used in this epoch, which drops to zero once the
        # class's queue is refilled.
        self.unvisited = np.array([len(class_members) for class_members in members], dtype=np.float64)

    def take_pair(self, position: int) -> tuple[int, int]:
        """Return two different samples of a class, or its only sample twice."""
        first = self._pop(position)
        if len(self._members[position]) == 1:
            return first, first
        second = self._pop(position)
        if second == first:
            # Only possible right after a refill, whose next sample then differs.
            second = self._pop(position)
        return first, second

    def _pop(self, position: int) -> int:
        if self._next[position] == len(self._queues[position]):
            self._queues[position] = self._rng.permutation(self._members[position])
            self._next[position] = 0
            self.unvisited[position] = 0
        sample = int(self._queues[position][self._next[position]])
        self._next[position] += 1
        if self.unvisited[position] > 0:
            self.unvisited[position] -= 1
        return sample
