"""Tests of the N-pair batch sampler: batch shape, coverage, determinism, mining, sharding."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from facepad.errors import ConfigError, FacepadError
from facepad.sampler import NPairBatchSampler


def _balanced_labels(classes: int, per_class: int, *, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(classes) * 10, per_class)
    return np.random.default_rng(seed).permutation(labels)


def _batch_classes(labels: np.ndarray, batch: list[int]) -> list[int]:
    return [int(labels[index]) for index in batch[: len(batch) // 2]]


def test_sampler_batches_are_distinct_class_pairs():
    labels = _balanced_labels(classes=30, per_class=5)
    sampler = NPairBatchSampler(labels, classes_per_batch=8, seed=1)

    batches = list(sampler)

    assert len(batches) == len(sampler) == 10  # ceil(150 samples / 16 per batch)
    for batch in batches:
        anchors, positives = batch[:8], batch[8:]
        assert len(batch) == 16
        assert len({int(labels[index]) for index in anchors}) == 8
        assert [int(labels[index]) for index in anchors] == [int(labels[index]) for index in positives]
        assert all(anchor != positive for anchor, positive in zip(anchors, positives))


def test_sampler_epoch_visits_most_samples():
    labels = _balanced_labels(classes=20, per_class=12)
    sampler = NPairBatchSampler(labels, classes_per_batch=6, seed=2)

    visited = [index for batch in sampler for index in batch]

    assert len(visited) == 240
    assert len(set(visited)) >= 0.9 * 240


def test_sampler_imbalanced_classes_follow_class_size():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10 + [3] * 10 + [4] * 10)
    sampler = NPairBatchSampler(labels, classes_per_batch=2, seed=3)

    counts = np.bincount([labels[index] for batch in sampler for index in batch], minlength=5)

    assert counts[0] > counts[1] > counts[2]


def test_sampler_caps_classes_per_batch(caplog):
    labels = _balanced_labels(classes=5, per_class=4)

    with caplog.at_level(logging.WARNING, logger="facepad.sampler"):
        sampler = NPairBatchSampler(labels, classes_per_batch=12)

    assert sampler.classes_per_batch == 5
    assert sampler.num_classes == 5
    assert "classes_per_batch=12" in caplog.text
    assert "(5)" in caplog.text
    assert all(len(batch) == 10 for batch in sampler)


def test_sampler_single_sample_class_yields_index_twice(caplog):
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 3])

    with caplog.at_level(logging.INFO, logger="facepad.sampler"):
        sampler = NPairBatchSampler(labels, classes_per_batch=4, batches_per_epoch=6)
    batches = list(sampler)

    assert "2 of 4 classes have a single sample" in caplog.text
    for batch in batches:
        anchors, positives = batch[:4], batch[4:]
        assert (6, 6) in zip(anchors, positives)
        assert (7, 7) in zip(anchors, positives)
        for anchor, positive in zip(anchors, positives):
            if labels[anchor] in (0, 1):
                assert anchor != positive


def test_sampler_same_seed_and_epoch_repeat():
    labels = _balanced_labels(classes=25, per_class=6)
    first = NPairBatchSampler(labels, classes_per_batch=5, seed=11)
    second = NPairBatchSampler(labels, classes_per_batch=5, seed=11)
    first.set_epoch(3)
    second.set_epoch(3)

    assert list(first) == list(second)
    assert list(first) == list(second)


def test_sampler_epochs_and_seeds_differ():
    labels = _balanced_labels(classes=25, per_class=6)
    sampler = NPairBatchSampler(labels, classes_per_batch=5, seed=11)
    other_seed = NPairBatchSampler(labels, classes_per_batch=5, seed=12)

    epoch_zero = list(sampler)
    sampler.set_epoch(1)
    epoch_one = list(sampler)

    assert epoch_zero != epoch_one
    assert epoch_zero != list(other_seed)


def test_sampler_batches_per_epoch_override():
    labels = _balanced_labels(classes=10, per_class=3)

    sampler = NPairBatchSampler(labels, classes_per_batch=4, batches_per_epoch=37)

    assert len(sampler) == 37
    assert len(list(sampler)) == 37


def _clustered_centroids(clusters: int, per_cluster: int, dim: int, *, seed: int) -> np.ndarray:
    """Centroids near `clusters` orthogonal directions, `per_cluster` classes each."""
    rng = np.random.default_rng(seed)
    directions = np.eye(dim)[:clusters]
    centroids = np.repeat(directions, per_cluster, axis=0)
    return centroids + 0.05 * rng.standard_normal(centroids.shape)


def test_sampler_hard_negatives_group_close_classes():
    clusters, per_cluster = 8, 4
    labels = np.repeat(np.arange(clusters * per_cluster), 3)
    sampler = NPairBatchSampler(labels, classes_per_batch=per_cluster, seed=4, hard_negatives=True)
    # Classes are numbered so that class // per_cluster is the cluster.
    centroids = _clustered_centroids(clusters, per_cluster, 16, seed=5)
    sampler.set_class_embeddings(np.arange(clusters * per_cluster), centroids)

    batches = list(sampler)
    single_cluster_batches = [
        batch for batch in batches if len({int(labels[index]) // per_cluster for index in batch}) == 1
    ]

    # Uniform sampling would give a single-cluster batch with probability about 2e-4.
    assert len(batches) == 12
    assert len(single_cluster_batches) >= 10


def test_sampler_hard_negatives_unordered_class_ids():
    clusters, per_cluster = 6, 3
    class_ids = np.arange(clusters * per_cluster) * 7
    labels = np.repeat(class_ids, 2)
    centroids = _clustered_centroids(clusters, per_cluster, 8, seed=6)
    order = np.random.default_rng(7).permutation(len(class_ids))
    sampler = NPairBatchSampler(labels, classes_per_batch=per_cluster, seed=8, hard_negatives=True)

    sampler.set_class_embeddings(class_ids[order], centroids[order])

    batches = list(sampler)
    single_cluster_batches = [
        batch for batch in batches if len({int(labels[index]) // 7 // per_cluster for index in batch}) == 1
    ]

    assert len(single_cluster_batches) >= 0.8 * len(batches)


def test_sampler_hard_negatives_without_embeddings_sample_uniformly(caplog):
    labels = _balanced_labels(classes=20, per_class=4)
    plain = NPairBatchSampler(labels, classes_per_batch=5, seed=9)

    with caplog.at_level(logging.INFO, logger="facepad.sampler"):
        mining = NPairBatchSampler(labels, classes_per_batch=5, seed=9, hard_negatives=True)
        mining_batches = list(mining)

    assert mining_batches == list(plain)
    assert "no class embeddings" in caplog.text


@pytest.mark.parametrize(
    ("class_ids", "centroids", "message"),
    [
        ([0, 1, 2], np.zeros((2, 4)), "shape"),
        ([0, 1], np.ones((2, 4)), "missing \\[2\\]"),
        ([0, 1, 2, 9], np.ones((4, 4)), "unknown \\[9\\]"),
        ([0, 1, 1], np.ones((3, 4)), "1 repeated"),
        ([0, 1, 2], np.full((3, 4), np.nan), "NaN"),
    ],
)
def test_sampler_invalid_class_embeddings_raise(class_ids, centroids, message):
    sampler = NPairBatchSampler([0, 0, 1, 1, 2, 2], classes_per_batch=2, hard_negatives=True)

    with pytest.raises(ValueError, match=message):
        sampler.set_class_embeddings(class_ids, centroids)


@pytest.mark.parametrize("world_size", [2, 4])
def test_sampler_rank_shares_partition_global_batch(world_size):
    labels = _balanced_labels(classes=40, per_class=5)
    single = NPairBatchSampler(labels, classes_per_batch=8, seed=13)
    ranks = [
        NPairBatchSampler(labels, classes_per_batch=8, seed=13, rank=rank, world_size=world_size)
        for rank in range(world_size)
    ]
    for sampler in [single, *ranks]:
        sampler.set_epoch(2)

    single_batches = list(single)
    rank_batches = [list(sampler) for sampler in ranks]

    assert all(len(batches) == len(single_batches) for batches in rank_batches)
    for step, single_batch in enumerate(single_batches):
        shares = [_batch_classes(labels, batches[step]) for batches in rank_batches]
        union = [class_id for share in shares for class_id in share]
        assert all(len(share) == 8 // world_size for share in shares)
        assert len(set(union)) == len(union)  # disjoint shares
        assert sorted(union) == sorted(_batch_classes(labels, single_batch))
        assert sorted(index for batches in rank_batches for index in batches[step]) == sorted(single_batch)


def test_sampler_hard_negative_shares_partition_global_batch():
    clusters, per_cluster = 5, 4
    labels = np.repeat(np.arange(clusters * per_cluster), 2)
    centroids = _clustered_centroids(clusters, per_cluster, 8, seed=14)
    samplers = [
        NPairBatchSampler(
            labels, classes_per_batch=4, seed=15, rank=rank, world_size=world_size, hard_negatives=True
        )
        for rank, world_size in [(0, 1), (0, 2), (1, 2)]
    ]
    for sampler in samplers:
        sampler.set_class_embeddings(np.arange(clusters * per_cluster), centroids)

    single, rank_zero, rank_one = (list(sampler) for sampler in samplers)

    for single_batch, zero_batch, one_batch in zip(single, rank_zero, rank_one):
        assert sorted(zero_batch + one_batch) == sorted(single_batch)
        assert not set(_batch_classes(labels, zero_batch)) & set(_batch_classes(labels, one_batch))


def test_sampler_rounds_classes_to_world_size(caplog):
    labels = _balanced_labels(classes=20, per_class=3)

    with caplog.at_level(logging.WARNING, logger="facepad.sampler"):
        sampler = NPairBatchSampler(labels, classes_per_batch=7, rank=1, world_size=3)

    assert sampler.classes_per_batch == 6
    assert sampler.classes_per_rank == 2
    assert "7 classes per batch do not split evenly across 3 processes; using 6" in caplog.text
    assert all(len(batch) == 4 for batch in sampler)


def test_sampler_warns_one_class_per_rank(caplog):
    labels = _balanced_labels(classes=3, per_class=4)

    with caplog.at_level(logging.WARNING, logger="facepad.sampler"):
        sampler = NPairBatchSampler(labels, classes_per_batch=8, rank=0, world_size=2)

    assert sampler.classes_per_batch == 2
    assert sampler.classes_per_rank == 1
    assert "3 classes per batch do not split evenly across 2 processes; using 2" in caplog.text
    assert "gets 1 class per step" in caplog.text


def test_sampler_works_as_dataloader_batch_sampler():
    labels = _balanced_labels(classes=12, per_class=4)
    dataset = torch.utils.data.TensorDataset(torch.arange(len(labels)), torch.as_tensor(labels))
    sampler = NPairBatchSampler(labels, classes_per_batch=6, seed=16)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)

    for (indices, batch_labels), batch in zip(loader, sampler):
        assert indices.tolist() == batch
        assert torch.equal(batch_labels[:6], batch_labels[6:])


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"classes_per_batch": 1}, ConfigError, "classes_per_batch=1"),
        ({"classes_per_batch": 4, "batches_per_epoch": 0}, ConfigError, "batches_per_epoch=0"),
        ({"classes_per_batch": 4, "rank": 2, "world_size": 2}, ValueError, "rank=2, world_size=2"),
        ({"classes_per_batch": 4, "world_size": 5}, ConfigError, "4 classes per batch cannot be shared by 5"),
    ],
)
def test_sampler_invalid_arguments_raise(arguments, error, message):
    labels = _balanced_labels(classes=4, per_class=2)

    with pytest.raises(error, match=message):
        NPairBatchSampler(labels, **arguments)


def test_sampler_single_class_raises():
    with pytest.raises(FacepadError, match="contain 1 class"):
        NPairBatchSampler([3, 3, 3], classes_per_batch=2)


def test_sampler_float_labels_raise():
    with pytest.raises(ValueError, match="integers"):
        NPairBatchSampler([0.5, 1.5], classes_per_batch=2)
