#!/usr/bin/env bash
# Sets up .venv if needed and runs the test suite, one pytest-xdist worker per core (each test file
# stays on one worker, so a file's session fixtures are built once); extra arguments go to pytest.
# The GPU check's CPU dry run (tests/test_gpu_check.py: minutes of training, torchrun and the train bench) is
# its own step of .ci/run, not part of this quick loop.
source "$(dirname "$0")/setup.sh"
python -m pytest -q --numprocesses auto --dist loadfile --ignore=tests/test_gpu_check.py "$@"
