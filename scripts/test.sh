#!/usr/bin/env bash
# Sets up .venv if needed and runs the test suite; extra arguments go to pytest.
source "$(dirname "$0")/setup.sh"
python -m pytest -q "$@"
