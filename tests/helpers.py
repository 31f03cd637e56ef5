# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers several test modules share (tests/ is on pytest's pythonpath).

One copy each of: the source checkout's root, the injected last-word-mask bug the teeth
tests plant into our C, the range functions of the bitmap ABI, running the ``recvmap`` CLI
in a subprocess, a fresh venv with the built wheel installed, and running a call of our C
in a child process that an assert() may abort.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The correct last-word mask in qemu_ref/qemu_ref.h and the off-by-one the teeth tests put in
# its place: a library built with MUTANT must be caught.
MASK = "(QREF_ULONG_MAX >> (-(nbits) & (QREF_BITS_PER_LONG - 1)))"
MUTANT = "(QREF_ULONG_MAX >> (-((nbits) + 1) & (QREF_BITS_PER_LONG - 1)))"

# The bitmap functions that take a (start, nr) range of bits.
RANGE_FUNCTIONS = (
    "bitmap_set",
    "bitmap_set_atomic",
    "bitmap_clear",
    "bitmap_test_and_clear",
    "bitmap_test_and_clear_atomic",
    "bitmap_count_one_with_offset",
)


def recvmap(*args: str, timeout: float = 120, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``recvmap ARGS`` as a user runs it, in a child of this interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def venv_with_wheel(venv: Path, wheel: Path) -> Path:
    """A new venv at ``venv`` holding only ``wheel`` (no deps, no index); its python."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return py


def run_c(bits: int, *lines: str) -> subprocess.CompletedProcess[str]:
    """Run ``lines`` in a child interpreter with ``lib``, our C at ``bits``-bit words, loaded;
    the child prints "returned" after them (an assert() in the C aborts it before that)."""
    code = "\n".join(
        [
            "from recvmap.qemu_ref import load",
            f"lib = load(bits={bits})",
            *lines,
            'print("returned")',
        ]
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def assert_c_aborted(proc: subprocess.CompletedProcess[str]) -> None:
    """The child of ``run_c`` died of SIGABRT from a failed assert(), before returning."""
    assert proc.returncode == -signal.SIGABRT, proc.stdout + proc.stderr
    assert "Assertion" in proc.stderr and "returned" not in proc.stdout


def assert_c_returned(proc: subprocess.CompletedProcess[str]) -> None:
    """The child of ``run_c`` ran its lines to the end and exited normally."""
    assert proc.returncode == 0 and "returned" in proc.stdout, proc.stderr


# --- processes (read from /proc) ---


def descendants(pid: int) -> set[int]:
    """Every process whose parent chain reaches pid (read from /proc)."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out


def alive(pid: int) -> bool:
    """Whether process pid runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
