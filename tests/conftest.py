# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared fixtures: our C libraries for both word widths, paired with the model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import extras
import pytest
from hypothesis import HealthCheck, settings

from recvmap.fuzz.subjects.impls import CImpl, ModelImpl
from recvmap.qemu_ref import CLibrary, load

# Deterministic first: hypothesis draws from a fixed seed per test (derived from its name),
# so a run passes or fails the same way twice; RECVMAP_HYPOTHESIS_RANDOM=1 adds the luck of
# a random seed (hypothesis then prints @seed(...) with any failure).
RANDOM_EXAMPLES = bool(os.environ.get("RECVMAP_HYPOTHESIS_RANDOM"))
settings.register_profile(
    "recvmap",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    max_examples=int(os.environ.get("RECVMAP_EXAMPLES", "150")),
    derandomize=not RANDOM_EXAMPLES,
    print_blob=True,
)
settings.load_profile("recvmap")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``extra("NAME")`` is skipped, naming the extra, when it is missing."""
    for mark in item.iter_markers("extra"):
        for extra in mark.args:
            gone = extras.missing(extra)
            if gone:
                pytest.skip(
                    f"needs the {extra!r} extra ({', '.join(gone)} missing): "
                    + extras.install_hint(extra)
                )


def pytest_report_header() -> str:
    how = "a random seed" if RANDOM_EXAMPLES else "a fixed seed per test (derandomize)"
    return f"hypothesis: {how}; RECVMAP_HYPOTHESIS_RANDOM=1 for random seeds"


WIDTHS = (64, 32)


@pytest.fixture(scope="session", params=WIDTHS, ids=lambda b: f"{b}bit")
def lib(request: pytest.FixtureRequest) -> CLibrary:
    return load(bits=request.param)


@pytest.fixture(scope="session")
def pair(lib: CLibrary) -> tuple[ModelImpl, CImpl]:
    return ModelImpl(lib.layout), CImpl(lib)


PlantC = Callable[[str, str, str], Path]


@pytest.fixture
def plant_c(tmp_path: Path) -> PlantC:
    """``plant_c(file, old, new)``: a copy of the C sources (replay driver, dispatch
    generator and headers included) whose ``file`` has ``old`` replaced by ``new``; the
    edit must match exactly once, so a plant that no longer applies fails loudly."""
    from recvmap.fuzz.subjects import hosts

    count = 0

    def plant(file: str, old: str, new: str) -> Path:
        nonlocal count
        count += 1
        src, dst = hosts.source_dir(), tmp_path / f"planted-{count}"
        dst.mkdir()
        for f in src.iterdir():
            if f.is_file():
                shutil.copy(f, dst / f.name)
        text = (dst / file).read_text()
        assert text.count(old) == 1, f"the plant no longer applies to {file}: {old!r}"
        (dst / file).write_text(text.replace(old, new))
        return dst

    return plant


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
