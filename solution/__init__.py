"""HPA multi-label classification kit: folds, training, stacking, thresholds, submission."""

import os

from solution.core import startup

# `python -m solution.<command>`: its imports run without the cyclic garbage collector (solution.core.startup).
startup.pause_for_imports()

# albumentations checks PyPI for a newer release when imported (up to a 2 s wait on an offline node, in every
# process and loader worker that imports it): the kit is offline-first, and a user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
