#!/usr/bin/env bash
# Usage: scripts/gpu_check.sh [--dry-run] [WORKDIR]
#
# The device check of the kit's GPU path, prepared for a machine with one GPU and 16 cores (under 8 minutes
# there). Each step runs under its own timeout, and all of them within BUDGET seconds (environment; 470 by
# default, 300 with --dry-run): a step that would start past it is skipped. Each step's output goes to
# WORKDIR/logs/<step>.log (WORKDIR: default /tmp/hpa_gpu_check, emptied first), the tail of a failed one's to
# the terminal, and a summary table ends the run (also in WORKDIR/summary.txt). The steps, in this order (the
# most telling first, torch.compile's cold compilation last):
#   packages   every module the steps import; the missing ones are named and nothing else runs
#   data       python -m solution.synthetic: 600 training and 64 test images at 512 px; 2 folds (the fewest)
#   bf16       scripts/train_folds.sh: ResNet34 (pretrained: false), one epoch a fold, precision auto (bf16 from
#              compute capability 8.0, fp16 below), channels-last, 12 loader workers, d4 TTA; predict assembles
#   bench      python -m solution.bench train: loader images/s per worker; train and d4-TTA images/s of ResNet34
#              and DenseNet121 at 512 px (the kit's precision + channels-last, and fp32 without TF32), their peak
#              GPU memory and the loader workers needed to feed them; the host syncs per training step (CUDA's
#              sync debug mode)
#   fp16       the bf16 step with precision: fp16 (the gradient scaler)
#   predict    python -m solution.predict --redo: the bf16 run's folds predicted again with d4 TTA
#   ddp        the bf16 step with NPROC_PER_NODE=2: torchrun, DDP over NCCL; skipped with fewer than 2 GPUs
#              (NCCL takes one GPU per process)
#   compile    the bf16 step with compile: true
# The summary gives each step's status (ok, FAILED rc=N, TIMEOUT, skipped), seconds and figures: a training
# run's precision, images/s, validation macro-F1 and peak GPU memory (from metrics.json), the bench's figures.
# Exit status: 0 when no step failed or timed out.
#
#   --dry-run  the same steps at a CPU size: 60 training images at 32 px, test_resnet, 2 loader workers, DDP over
#              gloo with 2 CPU processes, python -m solution.bench train --quick; a few minutes on 2 cores
#              (tests/test_gpu_check.py runs it)
#
# Packages: the kit runs from this checkout, put on PYTHONPATH (never pip-installed). Where the kit's root holds
# a .whl/ folder of wheels, they are installed first, without network or dependencies, into /tmp/site, which goes
# on PYTHONPATH too: the GPU machine has torch, timm, numba and pandas, and the kit needs more. Fill .whl/ on a
# machine with network access, for the GPU machine's Python and platform, with one NAME==VERSION per package it
# lacks (the versions the kit is tested with):
#   pip download --only-binary=:all: --no-deps --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       albumentations==2.0.8 albucore==0.0.24 opencv-python-headless==5.0.0.93 stringzilla==5.3.2 \
#       simsimd==6.5.16 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#       segmentation-models-pytorch==0.6.0 iterative-stratification==0.1.9 scikit-learn==1.9.1 scipy==1.17.1 \
#       joblib==1.6.0 cloudpickle==3.1.3 narwhals==2.29.0 threadpoolctl==3.8.0 pyarrow==26.0.1 \
#       tensorboard==2.21.0 tensorboard-data-server==0.7.2 protobuf==7.36.2 grpcio==1.85.3 markdown==3.11.3 \
#       werkzeug==3.1.9 markupsafe==3.0.4 absl-py==2.5.1
# (the packages step names any other module still missing; add its wheel the same way).
set -uo pipefail
kit="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

dry=0
work=/tmp/hpa_gpu_check
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry=1; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        -*) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
        *) work="$1"; shift ;;
    esac
done
if [[ $dry -eq 1 ]]; then
    n_train=60 n_test=12 size=32 backbone=test_resnet batch=8 workers=2 bench_args=(--quick)
    budget=${BUDGET:-300}
else
    n_train=600 n_test=64 size=512 backbone=resnet34 batch=32 workers=12 bench_args=()
    budget=${BUDGET:-470}
fi

rm -rf "$work" && mkdir -p "$work/logs" "$work/configs" "$work/bin" || exit 2
cd "$work" || exit 2
logs="$work/logs"
summary="$work/summary.tsv"
: > "$summary"
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
# The stages call `python` and `torchrun`: shims where the machine has only python3, or torch's runner as a module.
command -v python >/dev/null || printf '#!/bin/sh\nexec python3 "$@"\n' > "$work/bin/python"
command -v torchrun >/dev/null || printf '#!/bin/sh\nexec python -m torch.distributed.run "$@"\n' > "$work/bin/torchrun"
chmod +x "$work"/bin/* 2>/dev/null
export PATH="$work/bin:$PATH"
export PYTHONPATH="$kit${PYTHONPATH:+:$PYTHONPATH}"

t0=$SECONDS
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$summary"; }

# step NAME LIMIT COMMAND...: COMMAND under `timeout` (LIMIT seconds, or what is left of the budget), its output
# in logs/NAME.log; records the status and seconds (the figures follow in a row of their own); returns its status.
step() {
    local name=$1 limit=$2 left rc=0 start status
    shift 2
    left=$((budget - (SECONDS - t0)))
    if ((left < 15)); then
        record "$name" skipped 0 "past the ${budget} s budget"
        return 1
    fi
    ((limit > left)) && limit=$left
    start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$logs/$name.log" 2>&1 || rc=$?
    case $rc in
        0) status=ok ;;
        124|137) status="TIMEOUT ${limit}s" ;;
        *) status="FAILED rc=$rc" ;;
    esac
    record "$name" "$status" $((SECONDS - start)) ""
    if ((rc != 0)); then
        echo "--- $name: $status; the end of $logs/$name.log:"
        tail -n 30 "$logs/$name.log"
    fi
    return $rc
}

# figures KIND ARG: one line of figures about a finished step, for the summary (never fails the check).
figures() {
    python - "$@" <<'PY' 2>>"$logs/figures.log" || echo "(no figures: see logs/figures.log)"
import json, re, sys
from pathlib import Path

kind, arg = sys.argv[1], sys.argv[2]
if kind == "run":  # runs/<experiment>/fold*/metrics.json
    folds = [json.loads(p.read_text()) for p in sorted(Path("runs", arg).glob("fold*/metrics.json"))]
    rates = [m["history"][-1]["images_per_s"] for m in folds]
    peaks = [m["process"].get("peak_gpu_memory_gib") for m in folds]
    f1 = sum(m["val_macro_f1_fitted"] for m in folds) / len(folds)
    peak = f"{max(peaks):.1f} GiB peak GPU memory" if None not in peaks else "no GPU memory (CPU)"
    print(f"{len(folds)} folds, {folds[0]['precision']}, world size {folds[0]['world_size']}, "
          f"{sum(rates) / len(rates):.0f} train img/s, val macro-F1 {f1:.3f}, {peak}")
else:  # the bench's name=value lines, by prefix
    values = dict(re.findall(r"^(\w+)=(\S+)$", Path(arg).read_text(), re.M))
    keys = [k for k in values if k.startswith(kind)]
    print(", ".join(f"{k.removeprefix(kind).strip('_') or k}={values[k]}" for k in keys) or "n/a (no GPU)")
PY
}

config() { # config NAME KEY: VALUE ...: configs/NAME.yaml, the check's model with some keys set
    local name=$1
    shift
    {
        printf 'backbone: %s\npretrained: false\nchannels: rgby\nimage_size: %s\nbatch_size: %s\n' \
            "$backbone" "$size" "$batch"
        printf 'epochs: 1\nwarmup_epochs: 0\naugment: light\ntta: d4\nnum_workers: %s\n' "$workers"
        printf '%s\n' "$@"
    } > "configs/$name.yaml"
}

train() { # train NAME [VAR=VALUE ...]: scripts/train_folds.sh on configs/NAME.yaml, with the environment given
    local name=$1
    shift
    step "$name" 300 env "$@" bash "$kit/scripts/train_folds.sh" --data data "configs/$name.yaml" &&
        record "" "" "" "$(figures run "$name")"
}

if [[ -d "$kit/.whl" ]]; then
    step wheels 120 python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$kit"/.whl/*.whl
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
modules="torch timm numba pandas albumentations cv2 segmentation_models_pytorch iterstrat sklearn pyarrow"
modules+=" tensorboard yaml tqdm threadpoolctl"
if step packages 120 python -c "
import importlib.util, sys
missing = [m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]
sys.exit(f'missing modules: {\" \".join(missing)} (add their wheels to .whl/: see the header)' if missing else 0)
" $modules; then
    gpus=$(python -c 'import torch; print(torch.cuda.device_count())')
    record "" "" "" "$(python -c 'import torch
print("torch", torch.__version__, "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
    ) | $gpus GPU(s) | $(nproc) CPUs"
    step data 240 bash -c "python -m solution.synthetic data --n-train $n_train --n-test $n_test --size $size \
        --seed 0 && python -m solution.folds --data data --n-folds 2" &&
        record "" "" "" "$n_train + $n_test images at $size px, 2 folds"

    # The most telling steps first, torch.compile's cold compilation last: a step past the budget is skipped.
    config bf16 "precision: auto"
    train bf16
    if step bench 420 python -m solution.bench train ${bench_args[@]+"${bench_args[@]}"}; then
        record "" "" "" "per worker: $(figures loader "$logs/bench.log")"
        record "" "" "" "$(figures gpu_resnet34 "$logs/bench.log")"
        record "" "" "" "$(figures gpu_densenet121 "$logs/bench.log")"
        record "" "" "" "host syncs per training step: $(figures gpu_syncs "$logs/bench.log")"
    fi
    config fp16 "precision: fp16"
    train fp16
    step predict 240 python -m solution.predict --config configs/bf16.yaml --data data --redo &&
        record "" "" "" "$((n_train + 2 * n_test)) images x 8 views (d4), the 2 folds' checkpoints"
    config ddp "precision: auto"
    if [[ $dry -eq 1 || $gpus -ge 2 ]]; then
        train ddp NPROC_PER_NODE=2
    else
        record ddp skipped 0 "$gpus GPU: NCCL takes one GPU per process, DDP needs 2"
    fi
    config compile "precision: auto" "compile: true"
    train compile
fi

echo
echo "GPU check$([[ $dry -eq 1 ]] && echo ' (dry run, CPU-sized)') in $work, $((SECONDS - t0)) s:"
awk -F'\t' '{ printf "%-9s %-16s %6s  %s\n", $1, $2, ($3 == "" ? "" : $3 " s"), $4 }' "$summary" |
    tee "$work/summary.txt"
! grep -qE $'\t(FAILED|TIMEOUT)' "$summary"
