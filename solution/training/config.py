"""Experiment configs: one YAML file per experiment, loaded into a typed dataclass.

As in timm's ``train.py``, the YAML file supplies the defaults, any field can be
overridden on the command line (``--epochs 3``), and the resolved config is
written beside the outputs. Unknown keys and bad values are errors that name
the file and the key and list what is valid.

YAML is read strictly (``parse_yaml``): UTF-8 text; a key given twice in one mapping is an error naming both
lines (PyYAML would keep the last silently); aliases may expand to at most ``MAX_ALIAS_NODES`` nodes in all,
counted without building them, so a few hundred bytes of nested aliases (a "billion laughs") cannot take
gigabytes. Errors quote values through ``quote``: a few hundred characters at most.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from solution.core.errors import ConfigError, clip, quote
from solution.core.fileio import atomic_write_text
from solution.core.registry import NON_NEGATIVE, POSITIVE, SEED, Interval, Registry
from solution.core.workspace import STACK_NAME
from solution.data.batch import NORMALIZATIONS
from solution.data.channels import CHANNEL_SETUPS
from solution.data.transforms import AUGMENTATIONS
from solution.training.distributed import DEVICES
from solution.training.heads import HEADS
from solution.training.losses import LOSSES, build_loss
from solution.training.numerics import PRECISIONS
from solution.training.optim import OPTIMIZERS
from solution.training.selection import SELECTIONS
from solution.training.tta import CROP_SETS, TTA_MERGES, TTA_MODES

# The config keys whose values name an entry of a registry: validation and the CLI's choices read them.
REGISTRIES: dict[str, Registry[Any]] = {
    "channels": CHANNEL_SETUPS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "tta": TTA_MODES,
    "augment": AUGMENTATIONS,
    "device": DEVICES,
    "precision": PRECISIONS,
    "select": SELECTIONS,
    "head": HEADS,
    "normalize": NORMALIZATIONS,
    "tta_crops": CROP_SETS,  # a number: its text is the name
    "tta_merge": TTA_MERGES,
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one experiment; ``name`` is its folder under runs/ and oof/."""

    name: str
    backbone: str = "resnet34"
    pretrained: bool = False
    pretrained_file: str = ""  # local weights (offline machines, Kaggle kernels); implies pretrained
    channels: str = "rgby"
    image_size: int = 512
    crop: int = 0  # train on random crop x crop windows of the image_size images, validate on the centre; 0: off
    batch_size: int = 32
    accumulate: int = 1  # optimizer step every N batches (effective batch: batch_size x N x GPUs)
    epochs: int = 10
    warmup_epochs: int = 1  # linear warm-up, then cosine decay to 0 (timm's CosineLRScheduler, stepped per update)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    clip_grad: float = 0.0  # max gradient norm; 0: off
    loss: str | dict[str, float] = "bce"  # a registered name, or a weighted mix {name: weight, ...}
    focal_gamma: float = 2.0
    oversample: float = 0.0  # 0: off; see solution.data.sampler
    augment: str = "light"
    normalize: str = "dataset"  # each input channel by the training pixels' statistics, or each image by its own
    ema: float = 0.0  # decay of the exponential moving average of the weights; 0: off
    select: str = "macro_f1"  # what picks the kept epoch: val_loss | macro_f1 (solution.training.selection)
    swa: int = 0  # keep the average of the last N epochs' weights instead of the selected epoch's; 0: off
    patience: int = 0  # stop after N epochs without a better `select` figure; 0: off
    tta: str = "d4"
    tta_crops: int = 1  # windows predicted at test time (with crop): 1 the centre, 4 the corners, 5 both
    tta_merge: str = "mean"  # over every view of every window: mean or max
    drop_rate: float = 0.0
    head: str = "avg"  # the classifier head on the backbone's feature map (solution.training.heads)
    num_workers: int = 2
    device: str = "auto"
    precision: str = "auto"  # auto: bf16, fp16 or fp32 as the device allows (solution.training.numerics)
    compile: bool = False  # torch.compile the model (CUDA)
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_identity(self, folds_hash: str) -> dict[str, Any]:
        """What a fold's saved state must match to be reused: the training config (all but the keys that change
        how a trained model is run, not what it learned) and the folds."""
        training = {k: v for k, v in self.to_dict().items() if k not in INFERENCE_KEYS}
        return {"config": training, "folds_hash": folds_hash}


INFERENCE_KEYS = ("tta", "tta_crops", "tta_merge", "num_workers", "device")


# The range of each numeric key.
RANGES: dict[str, Interval] = {
    "image_size": Interval(1),
    "crop": NON_NEGATIVE,
    "batch_size": Interval(2, why="BatchNorm trains on 2 or more images per batch (batch_size is per process)"),
    "accumulate": Interval(1),
    "epochs": Interval(1),
    "warmup_epochs": NON_NEGATIVE,
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "clip_grad": NON_NEGATIVE,
    "focal_gamma": NON_NEGATIVE,
    "oversample": NON_NEGATIVE,
    "ema": Interval(0, 0.99999),
    "swa": NON_NEGATIVE,
    "patience": NON_NEGATIVE,
    "drop_rate": Interval(0, 0.99),
    "num_workers": NON_NEGATIVE,
    "seed": SEED,
}

FIELD_TYPES: dict[str, type] = {f.name: get_type_hints(ExperimentConfig)[f.name] for f in fields(ExperimentConfig)}


def _coerce_loss(value: Any, where: str) -> str | dict[str, float]:
    """A loss name, or a mix given as a mapping (YAML) or as YAML text (the command line: '{focal: 1, lovasz: 0.5}')."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = parse_yaml(value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: key 'loss' is not a valid YAML mapping: {exc}") from None
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: key 'loss' expects a loss name or a mapping name -> weight, got {quote(value)}")


def _coerce(key: str, value: Any, where: str) -> Any:
    if key == "loss":
        return _coerce_loss(value, where)
    expected = FIELD_TYPES[key]
    if expected is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
    elif expected is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif expected is int and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return int(value)
        except ValueError:
            pass
    elif expected is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: key '{key}' expects {expected.__name__}, got {quote(value)}")


def _validate(cfg: ExperimentConfig, where: str) -> None:
    try:
        for key, registry in REGISTRIES.items():
            value = getattr(cfg, key)
            if not isinstance(value, dict):  # a loss mix is checked by build_loss
                registry.check(str(value))
        build_loss(cfg.loss, cfg.focal_gamma)  # a mix: its names, weights and gamma
        for key, interval in RANGES.items():
            interval.check(key, getattr(cfg, key))
        _check_averaging(cfg)
        _check_crops(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_averaging(cfg: ExperimentConfig) -> None:
    """``swa`` averages the last epochs of the planned schedule: at most ``epochs`` of them, and never cut
    short by ``patience``."""
    if cfg.swa > cfg.epochs:
        raise ConfigError(f"'swa' averages the last N epochs: N must be at most epochs ({cfg.epochs}), got {cfg.swa}")
    if cfg.swa and cfg.patience:
        raise ConfigError("'swa' and 'patience' cannot be combined: early stopping would cut the averaged epochs")


def _check_crops(cfg: ExperimentConfig) -> None:
    """A crop lies within the cached image; test-time windows need a crop size to take."""
    if cfg.crop > cfg.image_size:
        raise ConfigError(f"'crop' must be at most image_size ({cfg.image_size}), got {cfg.crop}")
    if cfg.tta_crops != 1 and not cfg.crop:
        raise ConfigError(f"'tta_crops' {cfg.tta_crops} needs a 'crop' size (crop 0 predicts on the whole image)")


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = (STACK_NAME,)


def check_name(name: str, where: str) -> None:
    """An experiment name is a plain folder name under runs/ and oof/, never a path, never the stacker's."""
    if not NAME_PATTERN.fullmatch(name) or name in RESERVED_NAMES:
        raise ConfigError(
            f"{where}: experiment name {quote(name)} must be letters, digits, '_', '-' or '.' (starting with a letter "
            f"or digit), and not {', '.join(RESERVED_NAMES)}: rename the config file or pass --name"
        )


def build_config(values: dict[str, Any], where: str) -> ExperimentConfig:
    """A validated config from a mapping; ``where`` names its origin in error messages."""
    unknown = sorted(map(str, set(values) - set(FIELD_TYPES)))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {clip(', '.join(map(quote, unknown)))}; valid keys: {', '.join(FIELD_TYPES)}"
        )
    if "name" not in values:
        raise ConfigError(f"{where}: missing key 'name'")
    cfg = ExperimentConfig(**{k: _coerce(k, v, where) for k, v in values.items()})
    check_name(cfg.name, where)
    _validate(cfg, where)
    return cfg


MAX_ALIAS_NODES = 1000  # YAML nodes that a config's aliases may stand for, in all (a config has ~30 keys)


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping and aliases that stand for more than
    ``MAX_ALIAS_NODES`` nodes in all (or an alias inside its own anchor); it raises ``ConfigError``."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases counted as their targets
        self._open: list[str | None] = []  # anchors of the nodes being composed, outermost first

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        self._open.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.pop()

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        line = event.start_mark.line + 1 if event.start_mark else "?"
        if event.anchor in self._open:
            raise ConfigError(f"line {line}: alias *{clip(str(event.anchor))} stands inside its own anchor")
        if event.anchor in self.anchors:  # an unknown one is PyYAML's error
            self._alias_nodes += self._size(self.anchors[event.anchor])
        if self._alias_nodes > MAX_ALIAS_NODES:
            raise ConfigError(
                f"line {line}: aliases stand for more than {MAX_ALIAS_NODES} YAML nodes in all; "
                "a config needs few: write the values out"
            )

    def _size(self, node: yaml.Node) -> int:
        if id(node) not in self._sizes:
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = node.value if isinstance(node, yaml.SequenceNode) else []
            self._sizes[id(node)] = 1 + sum(self._size(child) for child in children)
        return self._sizes[id(node)]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True) if key_node.tag != "tag:yaml.org,2002:merge" else None
            if isinstance(key, (str, int, float, bool)):
                line = key_node.start_mark.line + 1
                if key in first:
                    raise ConfigError(f"key {quote(key)} is given twice (lines {first[key]} and {line}); keep one")
                first[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """YAML text read by the strict loader; any problem is a ``ConfigError`` for the caller to place."""
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {clip(str(exc), 1000)}") from None  # PyYAML's snippets are short
    finally:
        loader.dispose()


def read_yaml(path: Path | str) -> dict[str, Any]:
    """The mapping of a UTF-8 YAML config file, read by ``parse_yaml``'s rules."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read a YAML config, apply overrides; ``name`` defaults to the file's stem."""
    values = {"name": Path(path).stem, **read_yaml(path)}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build_config(values, str(path))


def add_override_args(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` option per config field; unset options keep the YAML value."""
    group = parser.add_argument_group("config overrides (default: the value in the YAML file)")
    for key in FIELD_TYPES:
        choices = list(REGISTRIES[key]) if key in REGISTRIES and key != "loss" else None  # loss: also a mix
        metavar = None if choices else getattr(FIELD_TYPES[key], "__name__", key).upper()
        flag = f"--{key.replace('_', '-')}"
        group.add_argument(flag, dest=f"override_{key}", default=None, choices=choices, metavar=metavar)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key: getattr(args, f"override_{key}") for key in FIELD_TYPES if getattr(args, f"override_{key}") is not None
    }


def save_config(cfg: ExperimentConfig, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
