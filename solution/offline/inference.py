"""Offline prediction from a bundle (``solution.artifacts.bundle``): ``python -m solution.predict --bundle``.

Each bundled experiment's fold models predict the dataset's test images (``solution.training.experiment``,
with a pixel cache of their own in a temporary folder or ``cache_dir``), and the bundle's recipe
(``solution.ensemble.offline``) turns their probabilities into labels, as ``make_submission`` did: on the
competition's test set, on the device and precision the models were predicted with, the CSV is the exported
submission's, byte for byte. Nothing of ``runs/``, ``oof/``, ``folds/`` or ``cache/`` is read, and nothing is
downloaded.

Two outputs:

- the submission (``Id,Predicted``, the Ids and order of ``sample_submission.csv``), where the folder has one;
- the table (``table``, or a folder without ``sample_submission.csv``): one row per image,
  ``Id,Predicted,p0,...,p27``: its labels as the submission writes them, then the score of each class that
  the cut-offs were applied to (the candidate's probability: the experiment's, the blend's or the stack's; the
  mean rank in [0, 1] for ``rank_mean``; after the averaging of test twins where the submission averaged them).
"""

from __future__ import annotations

import tempfile
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from solution.artifacts.bundle import MANIFEST, BundleManifest, experiments_dir
from solution.artifacts.runs import FoldRun
from solution.artifacts.submissions import check_out, validate_submission, write_csv
from solution.core.classes import PROB_COLUMNS
from solution.core.fileio import atomic_path
from solution.data.layout import open_test_images
from solution.ensemble.offline import read_recipe
from solution.training.config import ExperimentConfig, build_config
from solution.training.experiment import predict_test
from solution.training.models import check_backbone


@dataclass(frozen=True)
class Predicted:
    """What ``predict_bundle`` wrote: the file, whether it is the table, its images and labels per image."""

    out: Path
    table: bool
    images: int
    mean_labels: float
    manifest: BundleManifest


def _experiments(bundle: Path, manifest: BundleManifest, device: str | None) -> list[tuple[ExperimentConfig, list]]:
    """Each bundled experiment's config (on ``device`` where given) and fold runs, checked before any work."""
    found = []
    for name, entry in manifest.experiments.items():
        cfg = build_config(entry["config"], f"{bundle / MANIFEST} (experiment {name})")
        cfg = cfg if device is None else replace(cfg, device=device)
        check_backbone(cfg.backbone)
        identity = cfg.run_identity(manifest.folds_hash)
        found.append(
            (cfg, [FoldRun(experiments_dir(bundle), name, k, identity, cfg.tta) for k in range(entry["n_folds"])])
        )
    return found


def predict_bundle(
    bundle: Path,
    data_dir: Path,
    out: Path,
    table: bool = False,
    cache_dir: Path | None = None,
    device: str | None = None,
) -> Predicted:
    """Write the bundle's submission of ``data_dir``'s test images to ``out`` (atomically), or its table (see the
    module's docstring) with ``table`` or where the folder has no ``sample_submission.csv``."""
    check_out(out)
    recipe = read_recipe(bundle)
    dataset = open_test_images(data_dir)
    sample = data_dir / "sample_submission.csv"
    table = table or not sample.is_file()
    runs = _experiments(bundle, recipe.manifest, device)
    with tempfile.TemporaryDirectory(prefix="hpa-cache-") if cache_dir is None else nullcontext(cache_dir) as cache:
        tests = [predict_test(cfg, fold_runs, dataset, Path(cache)) for cfg, fold_runs in runs]
    scores, pred = recipe.apply(recipe.scores(tests), dataset.test_ids)
    with atomic_path(out) as tmp:
        write_csv(tmp, dataset.test_ids, pred, pd.DataFrame(scores, columns=list(PROB_COLUMNS)) if table else None)
        if not table:
            validate_submission(tmp, sample)
    return Predicted(out, table, len(pred), float(pred.sum() / max(1, len(pred))), recipe.manifest)
