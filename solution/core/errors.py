"""The kit's error types: each names the file, row or key at fault and what was expected.

Command-line entry points catch ``KitError`` and exit with its message, and
``Interrupted`` with status 130; any other exception is a bug and keeps its
traceback. ``quote`` and ``clip`` put a value or a text into a message, cut to
a few hundred characters however large.
"""

from __future__ import annotations

import reprlib
from typing import Any

QUOTE_CHARS = 300  # the most of a value that an error message quotes


class KitError(ValueError):
    """A bad input or artifact, reported to the user without a traceback."""


class ConfigError(KitError):
    """A config file or override that does not describe a valid experiment."""


class DatasetError(KitError):
    """The dataset directory does not follow the competition layout."""


class ArtifactError(KitError):
    """An artifact that is missing, malformed, or belongs to other folds or data."""


class LockedError(KitError):
    """Another process holds what this one needs (a fold being trained, a cache being built)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during work that a rerun resumes: the message says what was kept and how to go on. Still a
    ``KeyboardInterrupt``, so no ``except Exception`` swallows it."""


def _quoting() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxstring = short.maxother = QUOTE_CHARS
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 10
    short.maxlevel = 3
    return short


_SHORT_REPR = _quoting()


def quote(value: Any) -> str:
    """``repr(value)`` for an error message, at most ``QUOTE_CHARS`` characters: reprlib stops early, so a
    huge value (a megabyte string, a nest of lists) is never turned into text whole."""
    return clip(_SHORT_REPR.repr(value))


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` for an error message, cut to at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
