# Sourced by the other scripts: makes .venv (once) and installs the kit into it
# (again only when setup.cfg changed), then puts it first on PATH.
# PYTHON picks the interpreter that creates the environment (default: python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating virtual environment $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
STAMP="$VENV/.installed-$("$VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:16])' "$ROOT/setup.cfg")"
if [[ ! -f "$STAMP" ]]; then
    echo "installing the kit and its dependencies into $VENV (first run: a few minutes)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
    rm -f "$VENV"/.installed-*
    # numba's kernels, compiled into numba's cache once here instead of by each first process to use them
    "$VENV/bin/python" -c "from solution.data import duplicates; from solution.scoring import thresholds
duplicates.compile_kernels(); thresholds.compile_kernels()"
    touch "$STAMP"
fi
# The kit's own bytecode, even where PYTHONDONTWRITEBYTECODE is set (an editable install is never compiled):
# every python -m of a stage, and each of the test suite's processes, would otherwise compile it again (~1 s).
"$VENV/bin/python" -m compileall -q "$ROOT/solution" >/dev/null
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
