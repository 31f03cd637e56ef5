# SPDX-License-Identifier: GPL-2.0-or-later
"""A normal (non-editable) install works on its own: wheel built, installed in a fresh venv.

The suite itself runs on the editable install of `make test`; this test builds a wheel with
the same meson-python backend and checks, from outside the source tree, that both libraries,
the ABI headers, the C sources and the vectors are inside the package and that C asserts are
still compiled in.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

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
