#!/usr/bin/env bash
# Python environment: .venv (Python 3.11) with the exact versions of requirements.txt,
# plus this project installed editable (--no-deps). Skipped when .venv/.stamp holds
# the sha256 of requirements.txt + pyproject.toml, so a second run takes a moment.
# PYTHON=/path/to/python3.11 picks another interpreter.
set -euo pipefail
# shellcheck source=scripts/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$PROJECT_ROOT"

VENV="$PROJECT_ROOT/.venv"
STAMP="$VENV/.stamp"
PYTHON="${PYTHON:-python3.11}"
want="$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)"

venv_ok() {
    [ -x "$VENV/bin/python" ] &&
        "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
}

if venv_ok && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "setup-python: .venv up to date"
    exit 0
fi

t0=$SECONDS
if ! venv_ok; then
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        echo "setup-python: $PYTHON not found; install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    echo "setup-python: creating .venv with $("$PYTHON" --version 2>&1)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi

# pip, minus the warnings of a pip.conf that names local index folders absent here
pip() {
    "$VENV/bin/python" -m pip --disable-pip-version-check --no-input "$@" 2>&1 |
        { grep -v "^WARNING: Location 'file:.* is ignored" || true; }
}

rm -f "$STAMP"
echo "setup-python: installing requirements.txt"
pip install -q -r requirements.txt
pip install -q --no-deps -e .
pip check

# Packages in .venv that the lock does not list (left from an older lock or
# installed by hand): reported, not removed.
extra="$("$VENV/bin/python" - <<'PY'
import re, subprocess, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
lock = {norm(l.split("==")[0]) for l in open("requirements.txt") if "==" in l and not l.startswith("#")}
frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                        capture_output=True, text=True, check=True).stdout.splitlines()
print(" ".join(sorted(l.split("==")[0] for l in frozen if "==" in l and norm(l.split("==")[0]) not in lock)))
PY
)"
if [ -n "$extra" ]; then
    echo "setup-python: note: installed but not in requirements.txt: $extra"
fi

echo "$want" >"$STAMP"
echo "setup-python: done in $((SECONDS - t0))s ($(du -sh "$VENV" | cut -f1) in .venv)"
