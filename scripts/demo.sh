#!/usr/bin/env bash
# The whole pipeline on the embedded synthetic dataset, on CPU (or GPU where there is one):
# synthetic data -> folds -> 5-fold training of every configs/demo experiment (TTA OOF + test
# predictions) -> LightGBM stack -> submission (candidate and threshold rule picked by nested
# estimates) -> HTML report. Prints each stage's time. Two folds train side by side (--jobs 2), one
# process and one thread each: the tiny demo models use two cores better so than one process with two
# threads (BENCHMARKS.md, "The demo").
start=$SECONDS
source "$(dirname "$0")/setup.sh"
timings=("$(printf '%-44s %5d s' "set-up (.venv)" $((SECONDS - start)))")
stage() {
    local name=$1 t=$SECONDS
    shift
    "$@"
    timings+=("$(printf '%-44s %5d s' "$name" $((SECONDS - t)))")
}
stage "data, folds, training + TTA (scripts/train_folds.sh)" bash scripts/train_folds.sh --jobs 2
stage "stack (python -m solution.stack)" python -m solution.stack
stage "submission (python -m solution.make_submission)" python -m solution.make_submission
stage "report (python -m solution.report)" python -m solution.report
echo
printf '%s\n' "${timings[@]}" "$(printf '%-44s %5d s' "demo total" $((SECONDS - start)))"
