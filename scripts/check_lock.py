"""Fail when dvc.lock is stale for the committed code: a stage's command, a code dependency (a file
git tracks, e.g. stages/ or src/) or a params value differs from what dvc.lock recorded.

Data dependencies (outputs of other stages, absent in a fresh clone) are ignored, so this runs in
CI without the data. Fix: `dvc repro` (or `dvc commit` after checking the change is harmless),
then commit dvc.lock. Exit 0 when current, 1 with one line per stale item otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys


def _tracked(path: str) -> bool:
    out = subprocess.run(
        ["git", "ls-files", "--", path], capture_output=True, text=True, check=True
    )
    return bool(out.stdout.strip())


def stale_items(status: dict) -> list[str]:
    """``stage: reason`` for each code or params change in ``dvc status --json`` output."""
    stale = []
    for stage, entries in status.items():
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed", ...
                stale.append(f"{stage}: {entry}")
                continue
            for path, change in entry.get("changed deps", {}).items():
                if isinstance(change, dict):  # params: {key: modified|new|deleted}
                    stale.extend(f"{stage}: param {k} {v}" for k, v in change.items())
                elif _tracked(path):
                    stale.append(f"{stage}: {path} {change}")
    return stale


def main() -> int:
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], capture_output=True, text=True
    )
    if done.returncode != 0:
        print(f"dvc status failed:\n{done.stderr}", file=sys.stderr)
        return 1
    stale = stale_items(json.loads(done.stdout or "{}"))
    for line in stale:
        print(f"dvc.lock is stale: {line}", file=sys.stderr)
    if stale:
        print("run `dvc repro` and commit dvc.lock", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
