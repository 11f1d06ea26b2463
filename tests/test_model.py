"""Tests of the network: shapes, score range, local pretrained weights."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from facepad.config import ModelConfig
from facepad.errors import CheckpointError, ConfigError
from facepad.model import FatPadNet, predict_crops, to_model_input


def test_forward_shapes_and_score_range():
    model = FatPadNet(ModelConfig(backbone="test_resnet", embedding_dim=16, head_hidden=8))
    images = torch.randn(6, 3, 32, 32)
    embeddings, scores = model(images, torch.tensor([0, 1, 0, 1, 0, 1]))
    assert embeddings.shape == (6, 16)
    assert scores.shape == (6,)
    assert torch.all((scores > 0) & (scores < 1))


def test_score_uses_head_of_region_type():
    model = FatPadNet(ModelConfig(backbone="test_resnet", embedding_dim=8, head_hidden=4))
    with torch.no_grad():
        model.score_heads[0][-1].bias.fill_(5.0)
        model.score_heads[1][-1].bias.fill_(-5.0)
        for head in model.score_heads:
            head[-1].weight.zero_()
    scores = model.score(torch.randn(2, 8), torch.tensor([0, 1]))
    assert scores[0] > 0.99
    assert scores[1] < 0.01


def test_unknown_backbone_is_config_error():
    with pytest.raises(ConfigError, match="'no_such_net' is not a timm model"):
        FatPadNet(ModelConfig(backbone="no_such_net"))


def test_pretrained_path_loads_backbone_weights(tmp_path):
    source = FatPadNet(ModelConfig(backbone="test_resnet"))
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    model = FatPadNet(ModelConfig(backbone="test_resnet", pretrained_path=str(path)))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_pretrained_path_torch_file_with_state_dict_key(tmp_path):
    source = FatPadNet(ModelConfig(backbone="test_resnet"))
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": source.backbone.state_dict()}, path)
    model = FatPadNet(ModelConfig(backbone="test_resnet", pretrained_path=str(path)))
    first = next(iter(source.backbone.state_dict()))
    assert torch.equal(model.backbone.state_dict()[first], source.backbone.state_dict()[first])


def test_pretrained_path_from_other_architecture(tmp_path):
    other = FatPadNet(ModelConfig(backbone="test_convnext"))
    path = tmp_path / "convnext.pth"
    torch.save(other.backbone.state_dict(), path)
    with pytest.raises(CheckpointError, match="match none of"):
        FatPadNet(ModelConfig(backbone="test_resnet", pretrained_path=str(path)))


def test_pretrained_path_corrupt_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="could not be read"):
        FatPadNet(ModelConfig(backbone="test_resnet", pretrained_path=str(path)))


def test_to_model_input_normalises():
    images = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    batch = to_model_input(images, torch.device("cpu"))
    assert batch.dtype == torch.float32
    assert batch[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)


def test_predict_crops_is_batch_independent():
    torch.manual_seed(0)
    model = FatPadNet(ModelConfig(backbone="test_resnet", embedding_dim=8))
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    regions = np.array([0, 1, 0, 1, 0])
    whole, scores = predict_crops(model, images, regions, torch.device("cpu"), batch_size=5)
    pieces, _ = predict_crops(model, images, regions, torch.device("cpu"), batch_size=2)
    np.testing.assert_allclose(whole, pieces, atol=1e-5)
    assert model.training  # the mode is restored
