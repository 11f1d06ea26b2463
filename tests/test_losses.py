"""Tests of the N-pair loss against the formula of Sohn (2016) and pytorch-metric-learning."""

from __future__ import annotations

import math

import pytest
import torch

from facepad.errors import ConfigError
from facepad.losses import NPairLoss


def _random_pairs(count: int, dim: int, *, seed: int, dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(seed)
    anchors = torch.randn(count, dim, generator=generator, dtype=dtype)
    positives = torch.randn(count, dim, generator=generator, dtype=dtype)
    return anchors, positives


def _loop_loss(anchors: torch.Tensor, positives: torch.Tensor, l2_weight: float) -> torch.Tensor:
    """The N-pair loss written term by term as in Sohn (2016), plus the mean squared norm penalty."""
    count = anchors.shape[0]
    total = anchors.new_zeros(())
    for i in range(count):
        positive_score = anchors[i] @ positives[i]
        negatives_sum = anchors.new_zeros(())
        for j in range(count):
            if j != i:
                negatives_sum = negatives_sum + torch.exp(anchors[i] @ positives[j] - positive_score)
        total = total + torch.log(1 + negatives_sum)
    squared_norms = torch.cat([anchors, positives]).square().sum(dim=1)
    return total / count + l2_weight * squared_norms.mean()


def test_loss_matches_loop_formula():
    anchors, positives = _random_pairs(12, 7, seed=0)

    loss = NPairLoss(l2_weight=0.002)(anchors, positives)
    expected = _loop_loss(anchors, positives, l2_weight=0.002)

    assert loss.shape == ()
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_loss_gradients_match_loop_formula():
    anchors, positives = _random_pairs(10, 6, seed=1)
    anchors_loop = anchors.clone().requires_grad_()
    positives_loop = positives.clone().requires_grad_()
    anchors.requires_grad_()
    positives.requires_grad_()

    NPairLoss(l2_weight=0.01)(anchors, positives).backward()
    _loop_loss(anchors_loop, positives_loop, l2_weight=0.01).backward()

    torch.testing.assert_close(anchors.grad, anchors_loop.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(positives.grad, positives_loop.grad, rtol=1e-5, atol=1e-6)


def test_loss_matches_pytorch_metric_learning():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import DotProductSimilarity

    anchors, positives = _random_pairs(16, 8, seed=2)
    # Shuffled class ids: NPairsLoss pairs the first two samples of each label and orders
    # the pairs by label, which must not change the mean.
    class_ids = torch.randperm(16, generator=torch.Generator().manual_seed(3)) * 5
    labels = torch.cat([class_ids, class_ids])
    reference = pml_losses.NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))

    loss = NPairLoss(l2_weight=0.0)(anchors, positives)
    expected = reference(torch.cat([anchors, positives]), labels)

    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_loss_penalty_matches_pytorch_metric_learning_regularizer():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import DotProductSimilarity
    from pytorch_metric_learning.regularizers import LpRegularizer

    anchors, positives = _random_pairs(16, 8, seed=4)
    labels = torch.cat([torch.arange(16), torch.arange(16)])
    reference = pml_losses.NPairsLoss(
        distance=DotProductSimilarity(normalize_embeddings=False),
        embedding_regularizer=LpRegularizer(p=2, power=2),
        embedding_reg_weight=0.002,
    )

    loss = NPairLoss(l2_weight=0.002)(anchors, positives)
    expected = reference(torch.cat([anchors, positives]), labels)

    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


@pytest.mark.parametrize("normalize", [False, True])
def test_loss_gradcheck_float64(normalize):
    anchors, positives = _random_pairs(6, 4, seed=5, dtype=torch.float64)
    anchors.requires_grad_()
    positives.requires_grad_()
    loss_function = NPairLoss(l2_weight=0.05, normalize=normalize, temperature=0.5)

    assert torch.autograd.gradcheck(loss_function, (anchors, positives))


def test_loss_normalized_uses_cosine_over_temperature():
    anchors, positives = _random_pairs(9, 5, seed=6)
    unit_anchors = anchors / anchors.norm(dim=1, keepdim=True)
    unit_positives = positives / positives.norm(dim=1, keepdim=True)

    loss = NPairLoss(l2_weight=0.5, normalize=True, temperature=0.2)(anchors, positives)
    # The norm penalty is off in this variant, so l2_weight=0.5 must not show.
    expected = _loop_loss(unit_anchors / math.sqrt(0.2), unit_positives / math.sqrt(0.2), l2_weight=0.0)

    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_loss_float32_under_bfloat16_autocast():
    generator = torch.Generator().manual_seed(7)
    inputs = torch.randn(32, 16, generator=generator)
    layer = torch.nn.Linear(16, 64)
    with torch.no_grad():
        anchors_reference, positives_reference = layer(inputs).float().chunk(2)
    loss_function = NPairLoss()

    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        embeddings = layer(inputs)
        anchors, positives = embeddings.chunk(2)
        loss_from_bfloat16 = loss_function(anchors, positives)
        loss_from_float32 = loss_function(anchors_reference, positives_reference)
    expected = loss_function(anchors.float(), positives.float())
    expected_float32 = loss_function(anchors_reference, positives_reference)

    assert embeddings.dtype == torch.bfloat16
    assert loss_from_bfloat16.dtype == torch.float32
    assert loss_from_float32.dtype == torch.float32
    assert loss_from_bfloat16.item() == pytest.approx(expected.item(), abs=1e-5)
    # A bfloat16 matmul would be off by about 1e-2 here.
    assert loss_from_float32.item() == pytest.approx(expected_float32.item(), abs=1e-5)


def test_loss_finite_for_large_logits():
    anchors, positives = _random_pairs(8, 16, seed=8)
    anchors = (anchors * 300).requires_grad_()
    positives = (positives * 300).requires_grad_()

    loss = NPairLoss(l2_weight=0.0)(anchors, positives)
    loss.backward()

    assert (anchors.detach() @ positives.detach().T).abs().max() > 1e5
    assert torch.isfinite(loss)
    assert torch.isfinite(anchors.grad).all()
    assert torch.isfinite(positives.grad).all()


def test_loss_gather_without_process_group_is_local():
    anchors, positives = _random_pairs(8, 4, seed=9)

    gathered = NPairLoss(gather=True)(anchors, positives)
    local = NPairLoss(gather=False)(anchors, positives)

    assert gathered.item() == local.item()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"temperature": 0.0}, "temperature=0.0"),
        ({"temperature": float("nan")}, "temperature=nan"),
        ({"l2_weight": -1.0}, "l2_weight=-1.0"),
    ],
)
def test_loss_invalid_settings_raise(arguments, message):
    with pytest.raises(ConfigError, match=message):
        NPairLoss(**arguments)


def test_loss_mismatched_shapes_raise():
    anchors, positives = _random_pairs(8, 4, seed=10)

    with pytest.raises(ValueError, match=r"\(8, 4\) and \(7, 4\)"):
        NPairLoss()(anchors, positives[:7])
