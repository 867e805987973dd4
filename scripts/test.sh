#!/usr/bin/env bash
# Set up and run the test suite (unit tests, DVC end-to-end tests on a temporary repo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1
. .venv/bin/activate
pytest "$@"
