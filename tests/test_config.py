import argparse
import tracemalloc
from pathlib import Path

import pytest

from solution.training.config import ConfigError, add_override_args, load_config, overrides_from_args, read_yaml


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
        ("select: f1\n", "select: unknown 'f1'; registered: val_loss, macro_f1"),
        ("epochs: 3\nswa: 4\n", "'swa' averages the last N epochs: N must be at most epochs \\(3\\), got 4"),
        ("swa: 2\npatience: 3\n", "'swa' and 'patience' cannot be combined"),
        ("head: max\n", "head: unknown 'max'; registered: avg, avgmax, attention"),
        ("normalize: per_image\n", "normalize: unknown 'per_image'; registered: dataset, image"),
        ("crop: -8\n", "'crop' must be a number at least 0, got -8"),
        ("image_size: 64\ncrop: 96\n", "'crop' must be at most image_size .64., got 96"),
        ("tta_crops: 3\ncrop: 32\n", "tta_crops: unknown '3'; registered: 1, 4, 5"),
        ("tta_crops: 5\n", "'tta_crops' 5 needs a 'crop' size"),
        ("tta_crops: five\n", "'tta_crops' expects int"),
        ("tta_merge: median\n", "tta_merge: unknown 'median'; registered: mean, max"),
        ("batch_size: 1\n", "'batch_size' must be a number at least 2, got 1: BatchNorm trains on 2 or more images"),
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


def test_a_key_given_twice_names_the_file_the_key_and_both_lines(tmp_path):
    with pytest.raises(ConfigError, match=r"exp.yaml: key 'epochs' is given twice \(lines 1 and 3\); keep one"):
        load_config(write(tmp_path, "epochs: 3\nlr: 0.01\nepochs: 5\n"))
    with pytest.raises(ConfigError, match=r"exp.yaml: key 'focal' is given twice \(lines 2 and 3\)"):
        load_config(write(tmp_path, "loss:\n  focal: 1\n  focal: 2\n"))
    merged = read_yaml(write(tmp_path, "base: &b {epochs: 3}\nrun: {<<: *b, epochs: 5}\n"))
    assert merged["run"] == {"epochs": 5}  # a merge key's value may be overridden: no key given twice


def test_a_config_in_another_encoding_is_named(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_bytes("backbone: résnet\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"exp.yaml: not UTF-8 text \(byte 11\); save it as UTF-8"):
        load_config(path)


def test_nested_aliases_are_refused_before_they_are_built(tmp_path):
    """A "billion laughs": 326 bytes whose aliases stand for 9**8 strings (a 350 MB error line, 750 MB before)."""
    lines = ["drop_rate:", '  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  - &{b} [{','.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefg", "bcdefgh")]
    path = write(tmp_path, "\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"exp.yaml: line 5: aliases stand for more than 1000 YAML nodes") as err:
            load_config(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(str(err.value)) < 300 and peak < 5e6
    with pytest.raises(ConfigError, match=r"line 1: alias \*a stands inside its own anchor"):
        load_config(write(tmp_path, "drop_rate: &a [*a]\n"))


@pytest.mark.parametrize(
    "text", ["drop_rate: [" + ", ".join(["x" * 1000] * 1000) + "]\n", f"channels: {'y' * 10**6}\n"]
)
def test_errors_quote_at_most_a_few_hundred_characters_of_a_value(tmp_path, text):
    with pytest.raises(ConfigError, match="drop_rate' expects float|channels: unknown 'y+[.][.][.]y+'") as err:
        load_config(write(tmp_path, text))
    assert len(str(err.value)) < 700
