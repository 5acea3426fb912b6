import argparse
from pathlib import Path

import pytest

from solution.training.config import ConfigError, add_override_args, load_config, overrides_from_args


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_values_and_name_from_stem(tmp_path):
    cfg = load_config(write(tmp_path, "backbone: test_resnet\nepochs: 3\nlr: 1e-3\npretrained: false\n", "my_exp.yaml"))
    assert (cfg.name, cfg.backbone, cfg.epochs, cfg.lr, cfg.pretrained) == ("my_exp", "test_resnet", 3, 0.001, False)


def test_unknown_key_names_file_and_lists_valid_keys(tmp_path):
    path = write(tmp_path, "epoch: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "'epoch'" in str(err.value) and "epochs" in str(err.value)


@pytest.mark.parametrize(
    "text, match",
    [
        ("channels: rgbyx\n", "channels: unknown 'rgbyx'; registered: rgby, rgb, g, ry_gy_b, by_ry_g"),
        ("epochs: three\n", "'epochs' expects int"),
        ("pretrained: maybe\n", "'pretrained' expects bool"),
        ("epochs: 0\n", "'epochs' must be a number at least 1, got 0"),
        ("lr: .nan\n", "'lr' must be a number above 0, got nan"),
        ("lr: 0\n", "'lr' must be a number above 0, got 0.0"),
        ("weight_decay: -0.1\n", "'weight_decay' must be a number at least 0, got -0.1"),
        ("seed: -1\n", "'seed' must be a number at least 0"),
        ("num_workers: -2\n", "'num_workers' must be a number at least 0, got -2"),
        ("drop_rate: 1.5\n", "'drop_rate' must be a number at least 0 and at most 0.99, got 1.5"),
        ("ema: 1\n", "'ema' must be a number at least 0 and at most 0.99999, got 1.0"),
        ("accumulate: 0\n", "'accumulate' must be a number at least 1, got 0"),
        ("- a\n- b\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_values(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match.replace("[", r"\[")):
        load_config(write(tmp_path, text))


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: nowhere.yaml"):
        load_config("nowhere.yaml")


def test_command_line_overrides_yaml(tmp_path):
    parser = argparse.ArgumentParser()
    add_override_args(parser)
    args = parser.parse_args(["--epochs", "7", "--image-size", "32", "--pretrained", "true"])
    cfg = load_config(write(tmp_path, "epochs: 3\nimage_size: 64\n"), overrides_from_args(args))
    assert (cfg.epochs, cfg.image_size, cfg.pretrained) == (7, 32, True)


def test_demo_and_hpa_configs_load():
    configs = Path(__file__).resolve().parents[1] / "configs"
    assert len(list((configs / "demo").glob("*.yaml"))) >= 2
    for path in sorted(configs.glob("*/*.yaml")):
        load_config(path)


def test_loss_mix_from_yaml_and_command_line(tmp_path):
    path = write(tmp_path, "loss: {focal: 1.0, lovasz: 0.5}\nfocal_gamma: 1.5\n")
    assert load_config(path).loss == {"focal": 1.0, "lovasz": 0.5}
    assert load_config(path, {"loss": "{bce: 1, soft_f1: 2}"}).loss == {"bce": 1, "soft_f1": 2}
    with pytest.raises(ConfigError, match="loss: unknown 'lovas'; registered: bce, focal, lovasz, soft_f1"):
        load_config(write(tmp_path, "loss: {focal: 1.0, lovas: 0.5}\n"))
    with pytest.raises(ConfigError, match="loss"):
        load_config(write(tmp_path, "loss: {focal: -1}\n"))
