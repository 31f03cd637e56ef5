# SPDX-License-Identifier: GPL-2.0-or-later
"""The pytest plugin, as a user meets it: ``pytest --recvmap-impl ./libmine.so``.

A wheel is built from the source tree and installed in a fresh virtualenv outside it; the
user's project is an empty folder with a library in it. pytest itself comes into the fresh
venv from this one (its packages copied next to it, not recvmap's: the plugin must come from
the installed wheel, found through its ``pytest11`` entry point). Our own library passes
every applicable item; our library with an off-by-one last-word mask fails, one item per
vector that sees it, with the divergence as the item's message.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import MASK, MUTANT, venv_with_wheel

from recvmap.fuzz.subjects.build import build_library

ROOT = Path(__file__).resolve().parents[1]
PYTEST_DISTRIBUTIONS = ("pytest", "pluggy", "iniconfig", "packaging", "pygments")

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or not (ROOT / "meson.build").exists(),
    reason="needs the source tree and a C compiler",
)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory, built_wheel: Path) -> Path:
    tmp = tmp_path_factory.mktemp("plugin")
    wheel = built_wheel
    venv = tmp / "venv"
    venv_with_wheel(venv, wheel)
    deps = tmp / "pytest-packages"
    deps.mkdir()
    for name in PYTEST_DISTRIBUTIONS:  # their files as installed, metadata included
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            if ".." in f.parts or "__pycache__" in f.parts:
                continue
            (deps / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(str(dist.locate_file(f))), deps / f)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "pytest-from-the-test-venv.pth").write_text(f"{deps}\n")
    return venv


def run_pytest(venv: Path, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECVMAP_", "PYTEST_"))}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """item name -> ("passed" | "failed" | "skipped", message)."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        status, message = "passed", ""
        for tag in ("failure", "skipped", "error"):
            el = case.find(tag)
            if el is not None:
                status = {"failure": "failed", "error": "error"}.get(tag, tag)
                message = (el.get("message") or "") + "\n" + (el.text or "")
        out[str(case.get("name"))] = (status, message)
    return out


@pytest.mark.slow
def test_plugin_from_a_fresh_venv_passes_ours_and_fails_a_planted_bug(
    fresh_venv: Path, tmp_path: Path
) -> None:
    project = tmp_path / "my-project"
    project.mkdir()
    installed = subprocess.run(
        [str(fresh_venv / "bin" / "python"), "-c",
         "from recvmap.qemu_ref import load; print(load(bits=64).path)"],
        capture_output=True, text=True, check=True, cwd=project,
    ).stdout.strip()  # fmt: skip
    assert str(fresh_venv) in installed
    shutil.copy2(installed, project / "libgood.so")
    shutil.copy2(build_library(64, {"qemu_ref.h": [(MASK, MUTANT)]}), project / "libmine.so")

    good = run_pytest(
        fresh_venv, project, "--recvmap-impl", "./libgood.so", "--recvmap-fuzz-seconds", "2",
        "--junitxml", "good.xml",
    )  # fmt: skip
    assert good.returncode == 0, good.stdout[-3000:] + good.stderr[-3000:]
    header = next(line for line in good.stdout.splitlines() if line.startswith("recvmap: "))
    assert str(fresh_venv) in header and "libgood.so (64-bit words)" in header
    g = outcomes(project / "good.xml")
    vectors = [n for n in g if ".json[tc" in n]
    assert len(vectors) > 100 and {"fuzz[bitmap]", "fuzz[ram]", "fuzz[recovery]"} <= set(g)
    assert sum(1 for n in vectors if g[n][0] == "passed") > 50
    assert all(s in ("passed", "skipped") for s, _ in g.values())
    # other widths and byte orders; vectors of older releases (and states between them)
    reasons = ("32", "big-endian", "sender", "release range")
    assert all(any(r in m for r in reasons) for s, m in g.values() if s == "skipped")

    bad = run_pytest(
        fresh_venv, project, "--recvmap-impl", "./libmine.so", "--recvmap-fuzz-seconds", "5",
        "--junitxml", "bad.xml",
    )  # fmt: skip
    assert bad.returncode == 1, bad.stdout[-3000:] + bad.stderr[-3000:]
    b = outcomes(project / "bad.xml")
    assert set(b) == set(g)  # one item per vector, the same items
    status, message = b["bitmap-rules.json[tc1]"]
    assert status == "failed" and "libmine.so diverges" in message
    assert "op #0 bitmap_fill(@0, 70)" in message and "byte 8" in message
    # the first differing word as values: the model's 70 bits, the mutant's mask of 71
    assert "word 1 of @0: expected (the model) 0x000000000000003f, actual 0x000000000000007f" in (
        message
    )
    assert b["fuzz[bitmap]"][0] == "failed" and "reproducer:" in b["fuzz[bitmap]"][1]
    assert "FAILED ::recvmap::bitmap-rules.json[tc1]" in bad.stdout
    assert sum(1 for s, _ in b.values() if s == "failed") >= 10


def test_plugin_is_inert_without_the_option(fresh_venv: Path, tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    r = run_pytest(fresh_venv, tmp_path, "-q")
    assert r.returncode == 0 and "1 passed" in r.stdout, r.stdout + r.stderr
    assert "recvmap" not in r.stdout
    assert "--recvmap-impl" in run_pytest(fresh_venv, tmp_path, "--help").stdout


def test_a_missing_library_is_a_usage_error(fresh_venv: Path, tmp_path: Path) -> None:
    r = run_pytest(fresh_venv, tmp_path, "--recvmap-impl", "./nope.so")
    assert r.returncode == 4 and "--recvmap-impl ./nope.so: no such file" in r.stderr
