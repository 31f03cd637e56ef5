# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared fixtures: our C libraries for both word widths, paired with the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.qemu_ref import CLibrary, load

settings.register_profile(
    "recvmap",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    max_examples=int(os.environ.get("RECVMAP_EXAMPLES", "150")),
)
settings.load_profile("recvmap")

WIDTHS = (64, 32)


@pytest.fixture(scope="session", params=WIDTHS, ids=lambda b: f"{b}bit")
def lib(request: pytest.FixtureRequest) -> CLibrary:
    return load(bits=request.param)


@pytest.fixture(scope="session")
def pair(lib: CLibrary) -> tuple[ModelImpl, CImpl]:
    return ModelImpl(lib.layout), CImpl(lib)


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of the source tree, built once per session with the meson-python backend
    (test_packaging and the pytest plugin's fresh-venv test both install it)."""
    root = Path(__file__).resolve().parents[1]
    tmp = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps"]
        + ["-w", str(tmp), str(root)],
        check=True,
        env=env,
        cwd=tmp,
        capture_output=True,
    )
    (wheel,) = tmp.glob("recvmap-*.whl")
    return wheel
