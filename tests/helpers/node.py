"""Node.js drivers of the integration tests: a folder of ours (package.json with pinned versions,
its lock file, the script) installed with `npm ci` into a temporary folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def npm_driver(source: Path, folder: Path) -> Path:
    """`source`'s files copied to `folder` and its pinned packages installed there (skipped, with the
    reason, where node or npm is missing: `.ci/run` installs nodejs)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are not installed (.ci/run installs nodejs)")
    for path in source.iterdir():
        if path.is_file():
            shutil.copy(path, folder / path.name)
    done = subprocess.run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=folder, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, f"npm ci failed: {done.stderr[-2000:]}"
    return folder
