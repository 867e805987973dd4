#!/usr/bin/env bash
# Create .venv (Python 3.11) and install pluto-dvc into it, once; later calls only re-check.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3.11 || command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
fi
# Exact versions from requirements.lock (refresh it with scripts/lock.sh); torch is the CPU build
# 2.13.0. pyproject.toml keeps the ranges the code supports.
.venv/bin/pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
