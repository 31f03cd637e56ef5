# SPDX-License-Identifier: GPL-2.0-or-later
"""A normal (non-editable) install works on its own: wheel built, installed in a fresh venv.

The suite itself runs on the editable install of `make test`; this test builds a wheel with
the same meson-python backend and checks, from outside the source tree, that both libraries,
the ABI headers, the C sources and the vectors are inside the package and that C asserts are
still compiled in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import extras
import pytest
from helpers import venv_with_wheel

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or not (ROOT / "meson.build").exists(),
    reason="needs the source tree and a C compiler",
)

CHECK = textwrap.dedent("""
    import signal, subprocess, sys
    from recvmap.qemu_ref import load
    from recvmap.qemu_ref.loader import package_file
    from recvmap.pymodel import LP64_LE, bitmap_new, bitmap_set
    from recvmap.fuzz.vectors.files import vectors_dir
    for bits in (64, 32):
        lib = load(bits=bits)
        assert "site-packages" in str(lib.path), lib.path
    c = load(bits=64).words(4)
    load(bits=64).bitmap_set(c, 60, 10)
    m = bitmap_new(256, LP64_LE)
    bitmap_set(m, 60, 10)
    assert c.image() == m.image()
    for name in ("qemu_ref.h", "qemu_ref_ram.h", "bitmap.c", "ram.c"):
        assert package_file(name).is_file(), name
    assert "site-packages" in str(vectors_dir()) and any(vectors_dir().glob("*.json"))
    from recvmap.fuzz.campaign import launch  # reads the rooms' list, installed with fuzz/
    assert launch.MODEL == "recvmap.pymodel", launch.ROOMS
    code = "from recvmap.qemu_ref import load; l = load(bits=64); l.bitmap_set(l.words(1), -1, 1)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGABRT, "asserts compiled out of the installed build"
    print("installed package ok")
""")


@pytest.mark.slow
def test_wheel_installs_and_works_outside_the_tree(tmp_path: Path, built_wheel: Path) -> None:
    wheel = built_wheel
    venv = tmp_path / "venv"
    py = venv_with_wheel(venv, wheel)
    proc = subprocess.run(
        [str(py), "-c", CHECK], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "installed package ok" in proc.stdout
    cli = subprocess.run(
        [str(venv / "bin" / "recvmap"), "vectors", "list"], capture_output=True, text=True
    )
    assert cli.returncode == 0 and cli.stdout.strip(), cli.stderr


@pytest.mark.slow
def test_suite_passes_with_only_the_test_extra(tmp_path: Path) -> None:
    """``pip install -e '.[test]' && pytest`` in a new virtualenv, as a newcomer does: from
    PyPI, wheels only, no pip cache; every test that needs another extra is skipped with a
    reason naming it, and none fails. The editable build goes to its own folder, so the
    checkout's own build (the suite's) is left alone."""
    venv, build = tmp_path / "venv", tmp_path / "build"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RECVMAP_", "PYTHON"))},
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PIP_NO_CACHE_DIR": "1",
    }
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--only-binary=:all:"]
    for args in (
        extras.build_requires(),
        ["--no-build-isolation", f"-Cbuild-dir={build}", "-e", f"{ROOT}[test]"],
    ):
        proc = subprocess.run([*pip, *args], env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run(
        [py, "-m", "pytest", "-q", "-n", "2", "-m", "not slow", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    for extra in ("fuzz", "qemu-tree", "mutation", "accel", "dev"):
        assert f"needs the '{extra}' extra" in run.stdout, (extra, tail)
    assert "ModuleNotFoundError" not in run.stdout, tail
