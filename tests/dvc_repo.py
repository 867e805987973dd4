"""A throw-away git + DVC repository holding a copy of the project, for end-to-end stage tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
COPIED = ("dvc.yaml", "params.yaml", "stages", "src", "pyproject.toml")


class DvcRepo:
    """``git init`` + ``dvc init`` in ``root`` with the project's pipeline files copied in."""

    def __init__(self, root: Path, params: dict | None = None):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        for name in COPIED:
            src = PROJECT / name
            if src.is_dir():
                shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, root / name)
        if params:
            self.update_params(params)
        self.env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_TERMINAL_PROMPT="0")
        # stage commands call `python`: make it this interpreter (the one with pluto_dvc installed)
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.pop("DVC_ROOT", None)
        self.run("git", "init", "-q")
        self.run("git", "config", "user.email", "test@example.com")
        self.run("git", "config", "user.name", "test")
        self.run("dvc", "init", "-q")
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", "init")

    def update_params(self, updates: dict) -> None:
        """Merge ``{section: {key: value}}`` into the copy's params.yaml."""
        path = self.root / "params.yaml"
        raw = yaml.safe_load(path.read_text())
        for section, values in updates.items():
            raw.setdefault(section, {}).update(values)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = cmd[0]
        if exe == "dvc":
            cmd = (str(Path(sys.executable).parent / "dvc"), *cmd[1:])
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def repro(self, *targets: str) -> subprocess.CompletedProcess:
        return self.run("dvc", "repro", *targets)
