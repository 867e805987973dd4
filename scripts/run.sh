#!/usr/bin/env bash
# Set up and run the main job: `dvc repro` of the whole pipeline on the synthetic default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DVC_NO_ANALYTICS=1
. .venv/bin/activate
dvc repro "$@"
