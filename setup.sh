#!/usr/bin/env bash
# Creates .venv with diffcredit and its pinned dependencies; a no-op when current.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.diffcredit-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch and torchvision first, as the matched pair the constraints pin.
    .venv/bin/python -m pip install --quiet -c constraints.txt torch torchvision
    .venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
    echo "$want" > "$stamp"
fi
