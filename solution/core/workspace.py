"""The workspace: each stage's default output folder (relative to the current directory) and the names that
more than one module spells. A command's ``--*-dir`` option overrides a folder; messages name the folder given.
"""

from __future__ import annotations

from pathlib import Path

FOLDS_DIR = Path("folds")
RUNS_DIR = Path("runs")
OOF_DIR = Path("oof")
CACHE_DIR = Path("cache")
SUBMISSIONS_DIR = Path("submissions")
REPORTS_DIR = Path("reports")

KIT_DIR = Path(__file__).resolve().parents[2]  # the kit's checkout: its scripts/ and configs/
DEMO_CONFIGS = KIT_DIR / "configs" / "demo"  # the demo's recipes, which scripts/train_folds.sh trains by default

STACK_NAME = "stack"  # the stacker's prediction set under oof/, beside the experiments'; no experiment takes it
DUPLICATES_FILE = "duplicates.csv"  # near-duplicate pairs, in folds/; the groups file goes beside it
