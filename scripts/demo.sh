#!/usr/bin/env bash
# The whole pipeline on the embedded synthetic dataset, on CPU (or GPU where there is one):
# synthetic data -> folds -> 5-fold training of every configs/demo experiment (TTA OOF + test
# predictions) -> LightGBM stack -> per-class thresholds -> submission.
source "$(dirname "$0")/setup.sh"
start=$SECONDS
bash scripts/train_folds.sh
python -m solution.stack
python -m solution.make_submission
echo "demo finished in $((SECONDS - start)) s"
