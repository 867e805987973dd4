#!/usr/bin/env bash
# Refresh requirements.lock: install pluto-dvc[dev] into a throw-away venv with what the package
# index serves today, then freeze every version (the project itself excluded). scripts/setup.sh
# installs with `-c requirements.lock`, so every machine gets these exact versions.
# torch stays the CPU build 2.13.0 (pip takes it from the local wheel / the CPU index); its
# "+cpu" local label is dropped so that the pin also matches the same release from another index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3.11 || command -v python3)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet --upgrade pip
"$TMP/venv/bin/pip" install --quiet -e ".[dev]"
{
  echo "# pluto-dvc's locked environment (Python 3.11, Linux x86-64). Made by scripts/lock.sh;"
  echo "# installed by scripts/setup.sh as constraints: pip install -c requirements.lock -e '.[dev]'"
  "$TMP/venv/bin/pip" freeze --exclude-editable | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
