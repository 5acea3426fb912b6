"""A command's start without the cyclic garbage collector.

``python -m solution.<command>`` imports torch, timm, pandas and the kit: about a million objects that live until
the process ends. The collector would traverse them again and again while they are imported, and once more at exit
(BENCHMARKS.md, "Command starts"). So, only in a process that Python starts as ``python -m solution.<command>``,
``pause_for_imports`` (called by ``solution/__init__``, before any of those imports) turns the collector off, and
``resume`` (called by ``cli.user_errors``, which every command's ``main`` enters once its imports are done) moves
everything alive into the collector's permanent generation, which it never traverses, and turns it back on.
A command that ends before its work (``--help``, a bad option) freezes at exit instead, for the same reason.
Elsewhere (the kit imported as a library, the test suite, a loader worker) neither changes anything.
"""

from __future__ import annotations

import atexit
import gc
import sys

_paused = False


def started_module(orig_argv: list[str], argv0: str) -> str | None:
    """The module of ``python -m MODULE`` while Python locates it (it then sets ``sys.argv[0]`` to ``-m``, as
    documented for ``-m``); None for any other start, or a ``-m`` spelled otherwise (``-mMODULE``, ``-um``)."""
    if argv0 != "-m" or "-m" not in orig_argv[:-1]:
        return None
    return orig_argv[orig_argv.index("-m") + 1]


def pause_for_imports() -> None:
    """Turn the collector off if this process is starting one of the kit's commands (``python -m solution.x``,
    under torchrun too), and it was on."""
    global _paused
    module = started_module(sys.orig_argv, sys.argv[0] if sys.argv else "")
    if module is not None and module.split(".")[0] == "solution" and gc.isenabled():
        gc.disable()
        _paused = True
        atexit.register(_exit_before_resume)


def _exit_before_resume() -> None:
    """At the exit of a command that never resumed (it did no work): the interpreter's last collections, which
    run even with the collector off, skip what the imports made."""
    if _paused:
        gc.freeze()


def resume() -> None:
    """After a command's imports: freeze what they made (``gc.freeze``) and turn the collector back on; nothing
    where ``pause_for_imports`` paused nothing."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False
