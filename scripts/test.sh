#!/usr/bin/env bash
# Sets up .venv if needed and runs the test suite, one pytest-xdist worker per core (each test file
# stays on one worker, so a file's session fixtures are built once; the files go out in the order
# tests/conftest.py sorts them, longest first); extra arguments go to pytest.
# Two whole scripts' runs are their own step of .ci/run (WHOLE_RUNS), not part of this loop: the GPU check's
# CPU dry run (minutes of training, torchrun and the train bench), the quality bench end to end, and the epoch
# bench (its profiled folds).
source "$(dirname "$0")/setup.sh"
python -m pytest -q --numprocesses auto --dist loadfile --no-loadscope-reorder \
    --ignore=tests/test_gpu_check.py --ignore=tests/test_epoch_bench.py \
    --deselect tests/test_quality_bench.py::test_quality_bench_runs_the_pipeline_and_prints_the_three_figures "$@"
