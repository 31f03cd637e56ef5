# SPDX-License-Identifier: GPL-2.0-or-later
"""Concurrent writers never lose each other's bits (qemu_ref/stress.c).

Writers set overlapping and adjacent ranges and single bits through set_bit_atomic,
bitmap_set_atomic and the ram layer's ramblock_recv_bitmap_set / _set_range / _set_offset
(QEMU sets received pages from several threads: migration/ram.c, postcopy-ram.c) while
readers test bits; after every round the map must be exactly the union of all requests.
The same program built with the atomic OR rewritten as a plain load and store must report
lost bits, which shows the stress test can see the bug it guards against.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from recvmap.fuzz.subjects import hosts

STRESS = "qref-stress"
SUMMARY = re.compile(r"lost=(\d+) extra=(\d+) vanished=(\d+)")

# A plain read-modify-write in place of every __atomic_fetch_or of bitops.c, bitmap.c and
# ram.c (set_bit_atomic and the partial words of bitmap_set_atomic). The thread yields
# between its load and its store: the race window of a non-atomic OR, widened so that it
# shows within a second on a loaded two-core machine. The sources are not changed.
NON_ATOMIC_OR = """\
#define _DEFAULT_SOURCE 1 /* included first: the feature macros of every source (alloc.c's mmap) */
#include <sched.h>
#define __atomic_fetch_or(p, v, order) ({ \\
    __typeof__(*(p)) *p_ = (p); \\
    __typeof__(*p_) old_ = *(volatile __typeof__(*p_) *)p_; \\
    sched_yield(); \\
    *(volatile __typeof__(*p_) *)p_ = old_ | (v); \\
    old_; })
"""


def _require(name: str) -> None:
    if reason := hosts.host_status(name):
        pytest.skip(f"host {name}: {reason}")


def installed_stress(bits: int) -> Path | None:
    """The qref-stress meson built and installed next to the libraries, if any."""
    try:
        from recvmap.qemu_ref.loader import package_file

        path = package_file(f"{STRESS}{bits}")
    except Exception:  # noqa: BLE001 - not installed with the package
        return None
    return path if path.is_file() else None


def stress_command(name: str) -> list[str]:
    """The installed stress program for this machine's widths, else a cached build."""
    if name in ("native", "native32"):
        exe = installed_stress(32 if name == "native32" else 64)
        if exe is not None and shutil.which(str(exe)):
            return [str(exe)]
    return hosts.command(name, hosts.build(name, STRESS))


def run_stress(argv: list[str], *args: str) -> tuple[int, tuple[int, int, int], str]:
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120)
    m = SUMMARY.search(proc.stdout)
    assert m, f"no summary from {argv}: {proc.stdout}\n{proc.stderr}"
    lost, extra, vanished = (int(g) for g in m.groups())
    return proc.returncode, (lost, extra, vanished), proc.stdout.strip()


@pytest.mark.parametrize("name", ["native", "native32"])
def test_atomic_functions_lose_no_bit(name: str) -> None:
    _require(name)
    rc, counts, out = run_stress(stress_command(name), "-w", "4", "-r", "2", "-n", "2000")
    print(out)
    assert "ramblock_recv_bitmap_set_range=" in out, "built without the ram layer"
    assert counts == (0, 0, 0) and rc == 0, out


@pytest.mark.parametrize("name", ["i686", "s390x", "ppc64"])
def test_atomic_functions_lose_no_bit_on_emulated_host(name: str) -> None:
    """The same on real 32-bit and big-endian code (qemu-user runs guest threads in parallel)."""
    _require(name)
    rc, counts, out = run_stress(stress_command(name), "-w", "3", "-r", "1", "-n", "300")
    print(out)
    assert counts == (0, 0, 0) and rc == 0, out


@pytest.mark.parametrize("name", ["native", "native32"])
def test_non_atomic_or_is_caught(name: str, tmp_path: Path) -> None:
    _require(name)
    header = tmp_path / "non_atomic_or.h"
    header.write_text(NON_ATOMIC_OR)
    exe = hosts.build(name, STRESS, ["-include", str(header)], out_dir=tmp_path / "racy")
    outputs = []
    for seed in range(1, 4):  # three chances; in practice the first run loses bits
        rc, (lost, _, _), out = run_stress(
            [str(exe)], "-w", "2", "-r", "1", "-n", "200", "-s", str(seed)
        )
        outputs.append(out)
        if rc == 1 and lost > 0:
            print(out)
            return
    pytest.fail("the non-atomic variant lost no bit:\n" + "\n".join(outputs))
