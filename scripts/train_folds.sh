#!/usr/bin/env bash
# Usage: scripts/train_folds.sh [--data DIR] [CONFIG ...]
#
# Trains every CONFIG (default: configs/demo/*.yaml) on every fold and assembles
# oof/<experiment>/{oof,test}.parquet and manifest.json. Without --data it uses
# the synthetic dataset in data/demo, generating it when absent. Folds are made
# when there are none; folds made from other data are refused (with the command
# that remakes them). Finished folds are skipped and a killed fold resumes from
# its last epoch, so the script can simply be run again. With NPROC_PER_NODE=N
# (N > 1) each fold trains on N GPUs (or N CPU processes) through torchrun and DDP.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${VIRTUAL_ENV:-}" && -x .venv/bin/python ]]; then export PATH="$PWD/.venv/bin:$PATH"; fi

data=""
configs=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) data="${2:?--data needs a directory}"; shift 2 ;;
        --data=*) data="${1#--data=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) configs+=("$1"); shift ;;
    esac
done
if [[ -z "$data" ]]; then
    data=data/demo
    [[ -f "$data/train.csv" ]] || python -m solution.data.synthetic "$data"
fi
if [[ ${#configs[@]} -eq 0 ]]; then configs=(configs/demo/*.yaml); fi
for c in "${configs[@]}"; do
    [[ -f "$c" ]] || { echo "config not found: $c" >&2; exit 2; }
done

python -m solution.folds --data "$data"
for c in "${configs[@]}"; do
    echo "=== $c"
    if [[ "${NPROC_PER_NODE:-1}" -gt 1 ]]; then
        torchrun --standalone --nproc_per_node "$NPROC_PER_NODE" -m solution.train --config "$c" --data "$data"
    else
        python -m solution.train --config "$c" --data "$data"
    fi
    python -m solution.predict --config "$c" --data "$data"
done
