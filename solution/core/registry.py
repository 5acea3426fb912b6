"""The one registry type and the one interval check: what every config key and command-line option names.

A ``Registry`` maps names to entries for one key; looking up a name it lacks raises a ``ConfigError`` that
names the key and lists what is registered (as timm's model registry fails loudly). An ``Interval`` is the
range of a numeric key or option; the config's validation and the commands' argparse types both use it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from solution.core.errors import ConfigError, quote

T = TypeVar("T")


class Registry(Mapping[str, T]):
    """The entries one key can name, in registration order."""

    def __init__(self, key: str, entries: Mapping[str, T]) -> None:
        self.key = key
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"{self.key}: unknown {quote(name)}; registered: {', '.join(self._entries)}")
        return self._entries[name]

    def get(self, name: str, default: T | None = None) -> T | None:  # type: ignore[override]
        return self._entries.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: str) -> str:
        """``name`` itself, when it is registered."""
        self[name]
        return name


@dataclass(frozen=True)
class Interval:
    """A range of numbers: ``low`` (excluded when ``low_open``) up to ``high`` (included); ``why``, where the
    reason for a bound is not plain, is said with the refusal."""

    low: float
    high: float = math.inf
    low_open: bool = False
    why: str = ""

    def __str__(self) -> str:
        low = f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        return low + (f" and at most {_number(self.high)}" if self.high != math.inf else "")

    def contains(self, value: float) -> bool:
        below = value <= self.low if self.low_open else value < self.low
        return math.isfinite(value) and not below and value <= self.high

    def check(self, key: str, value: float) -> float:
        """``value``, when it lies in the interval; else a ``ConfigError`` naming ``key``."""
        if not self.contains(value):
            raise ConfigError(f"'{key}' must be a number {self}, got {value}{self._reason}")
        return value

    def arg_type(self, kind: Callable[[str], float] = float) -> Callable[[str], float]:
        """An argparse ``type``: the text as ``kind`` (int or float), refused with the range when outside it."""

        def parse(text: str) -> float:
            try:
                value = kind(text)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"expected {getattr(kind, '__name__', 'a number')}, got {text!r}"
                ) from None
            if not self.contains(value):
                raise argparse.ArgumentTypeError(f"must be a number {self}, got {text}{self._reason}")
            return value

        return parse

    @property
    def _reason(self) -> str:
        return f": {self.why}" if self.why else ""


def _number(x: float) -> str:
    """A bound as a user writes it: whole numbers in full (a seed's 4294967295), others as %g."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


POSITIVE = Interval(0, low_open=True)
NON_NEGATIVE = Interval(0)
FRACTION = Interval(0, 1)
SEED = Interval(0, 2**32 - 1)  # what numpy's seeding accepts
