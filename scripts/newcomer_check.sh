#!/usr/bin/env bash
# The newcomer check: clone this repository (its committed HEAD) into a temporary folder, run the
# commands of the README's "Quickstart" block there and nothing else, then require what the README
# promises: the evaluation report (reports/metrics.json, reports/per_type.md) and a trained model.
# Prints the seconds it took. PLUTO_NEWCOMER_DIR keeps the clone at that path (default: removed).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$(pwd)
DIR=${PLUTO_NEWCOMER_DIR:-$(mktemp -d)}
[ -n "${PLUTO_NEWCOMER_DIR:-}" ] || trap 'rm -rf "$DIR"' EXIT
start=$(date +%s)
git clone -q "$SRC" "$DIR/clone"
cd "$DIR/clone"
# the first ```bash block after "## Quickstart", comments stripped
awk '/^## Quickstart/{q=1} q&&/^```bash/{b=1;next} b&&/^```/{exit} b{print}' README.md \
  | sed 's/[[:space:]]*#.*$//' | grep -v '^[[:space:]]*$' > "$DIR/commands.sh"
echo "newcomer check: running the README's quickstart in $DIR/clone:"
sed 's/^/  $ /' "$DIR/commands.sh"
[ -s "$DIR/commands.sh" ] || { echo "no quickstart commands found in README.md" >&2; exit 1; }
env -u PYTHONPATH -u VIRTUAL_ENV -u DVC_ROOT bash -euo pipefail "$DIR/commands.sh"
for f in reports/metrics.json reports/per_type.md models/model.safetensors; do
  [ -s "$f" ] || { echo "newcomer check FAILED: $f missing after the quickstart" >&2; exit 1; }
done
echo "newcomer check passed in $(( $(date +%s) - start )) s"
