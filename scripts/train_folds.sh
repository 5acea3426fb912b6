#!/usr/bin/env bash
# Usage: scripts/train_folds.sh [--data DIR] [--extra DIR2 ... [--extra-conflicts drop|keep]] [--jobs N] [CONFIG ...]
#
# Trains every CONFIG (default: the kit's configs/demo/*.yaml) on every fold and assembles
# oof/<experiment>/{oof,test}.parquet and manifest.json. Outputs (folds/, runs/, oof/, cache/)
# go to the current directory. Without --data it uses the synthetic dataset in data/demo,
# generating it when absent. Folds are made when there are none; folds made from other data are
# refused (with the command that remakes them). Finished folds are skipped and a killed fold resumes
# from its last epoch, so the script can simply be run again.
#   --extra DIR2      an extra training dataset (train.csv and train/, e.g. HPAv18 from
#                     python -m solution.external): on the training side of every fold, never validated
#   --extra-conflicts drop|keep   an extra image whose twin in train.csv (folds/duplicates.csv) carries
#                     other labels leaves training (drop, the default) or stays (keep)
#   --jobs N          train N folds at once, one process each: each gets its own GPU (from
#                     CUDA_VISIBLE_DEVICES, or all that torch sees) or, without GPUs, its share of the cores;
#                     either way each one's loader workers are capped at its share of the CPUs
#   NPROC_PER_NODE=N  (environment) train each fold on N GPUs (or N CPU processes) through torchrun and DDP
# A TERM or INT to the script (Ctrl-C included) ends every stage it started, and their fold locks with them;
# it exits with 143 or 130, and a rerun resumes.
set -euo pipefail
kit="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${VIRTUAL_ENV:-}" && -x "$kit/.venv/bin/python" ]]; then export PATH="$kit/.venv/bin:$PATH"; fi

# Each stage runs as a background job in its own process group (set -m) while the script waits for it, so
# the script's traps run at once (bash defers them while a foreground command runs), Ctrl-C at the terminal
# reaches the script alone (never half the stages: background jobs would ignore it), and stop() ends each
# stage with its children (torchrun's workers, data loaders) by signalling its group.
set -m
stages=()
start() { "$@" & stages+=("$!"); }
finish() { # wait for every started stage; the status of the last that failed
    local pid status=0
    for pid in ${stages[@]+"${stages[@]}"}; do wait "$pid" || status=$?; done
    stages=()
    return "$status"
}
run() { start "$@"; finish; }
stop() {
    trap - TERM INT
    local pid
    for pid in ${stages[@]+"${stages[@]}"}; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in ${stages[@]+"${stages[@]}"}; do wait "$pid" 2>/dev/null || true; done
    echo "train_folds.sh: stopped by SIG$1; finished folds are kept and killed ones resume: rerun the same command" >&2
    exit "$2"
}
trap 'stop TERM 143' TERM
trap 'stop INT 130' INT

data=""
extra=()
conflicts=drop
jobs=1
configs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data="${2:?--data needs a directory}"; shift 2 ;;
        --data=*) data="${1#--data=}"; shift ;;
        --extra) extra+=("${2:?--extra needs a directory}"); shift 2 ;;
        --extra=*) extra+=("${1#--extra=}"); shift ;;
        --extra-conflicts) conflicts="${2:?--extra-conflicts needs drop or keep}"; shift 2 ;;
        --extra-conflicts=*) conflicts="${1#--extra-conflicts=}"; shift ;;
        --jobs) jobs="${2:?--jobs needs a number}"; shift 2 ;;
        --jobs=*) jobs="${1#--jobs=}"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) configs+=("$1"); shift ;;
    esac
done
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || { echo "--jobs must be a positive whole number, got '$jobs'" >&2; exit 2; }
if [[ "$jobs" -gt 1 && "${NPROC_PER_NODE:-1}" -gt 1 ]]; then
    echo "--jobs and NPROC_PER_NODE cannot be combined: train folds side by side, or each fold on several GPUs" >&2
    exit 2
fi
if [[ -z "$data" ]]; then
    data=data/demo
    [[ -f "$data/train.csv" ]] || run python -m solution.synthetic "$data"
fi
if [[ ${#configs[@]} -eq 0 ]]; then configs=("$kit"/configs/demo/*.yaml); fi
for c in "${configs[@]}"; do
    [[ -f "$c" ]] || { echo "config not found: $c (from $PWD)" >&2; exit 2; }
done

# Folds in parallel: job j trains folds j, j + N, ...; each job gets one GPU (of gpus), or its share of the cores.
train_parallel() {
    local config=$1 j
    for ((j = 0; j < jobs; j++)); do
        if [[ ${#gpus[@]} -gt 0 && -n "${gpus[0]}" ]]; then
            start env CUDA_VISIBLE_DEVICES="${gpus[j % ${#gpus[@]}]}" TQDM_DISABLE=1 \
                python -m solution.train --config "$config" --data "$data" --share "$j/$jobs"
        else
            start env OMP_NUM_THREADS=$(( $(nproc) / jobs > 0 ? $(nproc) / jobs : 1 )) TQDM_DISABLE=1 \
                python -m solution.train --config "$config" --data "$data" --share "$j/$jobs"
        fi
    done
    finish
}

if [[ ${#extra[@]} -gt 0 ]]; then
    run python -m solution.folds --data "$data" --extra "${extra[@]}" --extra-conflicts "$conflicts"
else
    run python -m solution.folds --data "$data"
fi
# The GPUs the jobs take in turn: CUDA_VISIBLE_DEVICES, or every one torch sees, asked once for all configs
# (a torch import takes seconds).
gpus=()
if [[ "$jobs" -gt 1 ]]; then
    IFS=, read -r -a gpus <<< "${CUDA_VISIBLE_DEVICES-$(python -c \
        "import torch; print(','.join(map(str, range(torch.cuda.device_count()))))")}"
fi
for c in "${configs[@]}"; do
    echo "=== $c"
    if [[ "$jobs" -gt 1 ]]; then
        train_parallel "$c"
    elif [[ "${NPROC_PER_NODE:-1}" -gt 1 ]]; then
        run torchrun --standalone --nproc_per_node "$NPROC_PER_NODE" -m solution.train --config "$c" --data "$data"
    else
        run python -m solution.train --config "$c" --data "$data"
    fi
    run python -m solution.predict --config "$c" --data "$data"
done
