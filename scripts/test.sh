#!/usr/bin/env bash
# Sets up .venv if needed and runs the test suite, one pytest-xdist worker per core (each test file
# stays on one worker, so a file's session fixtures are built once); extra arguments go to pytest.
source "$(dirname "$0")/setup.sh"
python -m pytest -q --numprocesses auto --dist loadfile "$@"
