"""Tests of config loading, overrides and validation."""

import pytest

from facepad.config import Config, config_from_dict, load_config, save_config
from facepad.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_config_defaults_without_file():
    config = load_config(None)
    assert config == Config()


def test_load_config_reads_nested_values(tmp_path):
    config = load_config(write(tmp_path, "train:\n  epochs: 3\nmodel:\n  backbone: test_resnet\ncrop:\n  size: 48\n"))
    assert config.train.epochs == 3
    assert config.model.backbone == "test_resnet"
    assert config.crop.size == 48


def test_load_config_unknown_key_names_path(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key train\.epoch;"):
        load_config(write(tmp_path, "train:\n  epoch: 3\n"))


def test_load_config_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key trainer"):
        load_config(write(tmp_path, "trainer:\n  epochs: 3\n"))


def test_load_config_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs must be of type int, got 'many'"):
        load_config(write(tmp_path, "train:\n  epochs: many\n"))


def test_load_config_bool_is_not_int(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        load_config(write(tmp_path, "train:\n  epochs: true\n"))


def test_load_config_int_accepted_for_float(tmp_path):
    assert load_config(write(tmp_path, "train:\n  lr: 1\n")).train.lr == 1.0


def test_load_config_bad_yaml_gives_line(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_config(write(tmp_path, "train:\n  epochs: [3\n"))


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_load_config_top_level_list_rejected(tmp_path):
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_load_config_section_given_a_value(tmp_path):
    with pytest.raises(ConfigError, match="train must be a mapping"):
        load_config(write(tmp_path, "train: 5\n"))


def test_load_config_out_of_range(tmp_path):
    with pytest.raises(ConfigError, match=r"sampler\.classes_per_batch=1 must be at least 2"):
        load_config(write(tmp_path, "sampler:\n  classes_per_batch: 1\n"))
    with pytest.raises(ConfigError, match=r"data\.val_fraction=1\.5"):
        load_config(write(tmp_path, "data:\n  val_fraction: 1.5\n"))
    with pytest.raises(ConfigError, match=r"loss\.kind='arcface' must be one of"):
        load_config(write(tmp_path, "loss:\n  kind: arcface\n"))


def test_load_config_missing_pretrained_file(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.pretrained_path=.*file not found"):
        load_config(write(tmp_path, f"model:\n  pretrained_path: {tmp_path / 'w.safetensors'}\n"))


def test_overrides_apply_typed_values(tmp_path):
    config = load_config(write(tmp_path, "train:\n  epochs: 3\n"),
                         ["train.epochs=7", "loss.normalize=true", "model.pretrained_path=null"])
    assert config.train.epochs == 7
    assert config.loss.normalize is True
    assert config.model.pretrained_path is None


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(None, ["train.epochs"])


def test_override_unknown_key():
    with pytest.raises(ConfigError, match=r"unknown config key train\.epohcs"):
        load_config(None, ["train.epohcs=3"])


def test_override_wrong_type():
    with pytest.raises(ConfigError, match=r"train\.lr must be of type float, got 'fast'"):
        load_config(None, ["train.lr=fast"])


def test_save_config_round_trip(tmp_path):
    config = load_config(None, ["train.epochs=2", "crop.size=40"])
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    assert config_from_dict(config.to_dict()) == config
