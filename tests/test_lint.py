# SPDX-License-Identifier: GPL-2.0-or-later
"""House rules that CI enforces: ruff-formatted and lint-clean Python, strictly typed model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PY_DIRS = ["pymodel", "qemu_ref", "fuzz", "tests", "bench"]
pytestmark = pytest.mark.extra("dev")


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists() and shutil.which(name) is None:
        pytest.skip(f"needs the 'dev' extra ({name} missing): pip install -e '.[dev]'")
    return str(path) if path.exists() else name


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_format() -> None:
    proc = run(tool("ruff"), "format", "--check", *PY_DIRS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check() -> None:
    proc = run(tool("ruff"), "check", *PY_DIRS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_model_is_mypy_strict_clean() -> None:
    proc = run(tool("mypy"), "pymodel")
    assert proc.returncode == 0, proc.stdout + proc.stderr
