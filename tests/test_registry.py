"""The one registry type and the one interval check."""

import argparse

import pytest

from solution.core.errors import ConfigError
from solution.core.registry import FRACTION, Interval, Registry
from solution.ensemble.stacking import FEATURE_SETS
from solution.scoring.thresholds import RULES
from solution.training.config import REGISTRIES


def test_an_unknown_name_names_the_key_and_what_is_registered():
    reg = Registry("loss", {"bce": 1, "focal": 2})
    assert reg["focal"] == 2 and "bce" in reg and "nope" not in reg and reg.get("nope") is None
    assert list(reg) == ["bce", "focal"] and len(reg) == 2 and reg.check("bce") == "bce"
    with pytest.raises(ConfigError, match="^loss: unknown 'nope'; registered: bce, focal$"):
        reg["nope"]


def test_every_option_a_config_or_command_names_is_a_registry():
    for registry in [*REGISTRIES.values(), RULES, FEATURE_SETS]:
        assert isinstance(registry, Registry)


@pytest.mark.parametrize(
    "interval, inside, outside",
    [
        (Interval(0, low_open=True), [1e-9, 5], [0, -1, float("nan"), float("inf")]),
        (FRACTION, [0, 0.5, 1], [-0.01, 1.01]),
        (Interval(1), [1, 10**9], [0, 0.5]),
    ],
)
def test_an_interval_checks_its_bounds(interval, inside, outside):
    assert all(interval.contains(v) for v in inside)
    for value in outside:
        with pytest.raises(ConfigError, match=f"'lr' must be a number {interval}, got"):
            interval.check("lr", value)


def test_an_interval_as_an_argparse_type_refuses_with_the_range():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--blend", type=FRACTION.arg_type())
    parser.add_argument("--size", type=Interval(1).arg_type(int))
    assert parser.parse_args(["--blend", "0.25", "--size", "3"]).blend == 0.25
    with pytest.raises(argparse.ArgumentError, match="--blend: must be a number at least 0 and at most 1, got 1.5"):
        parser.parse_args(["--blend", "1.5"])
    assert str(FRACTION) == "at least 0 and at most 1" and str(Interval(0, low_open=True)) == "above 0"
