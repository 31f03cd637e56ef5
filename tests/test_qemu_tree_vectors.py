# SPDX-License-Identifier: GPL-2.0-or-later
"""Every regression vector against QEMU's own code, tree by tree (issue: no expected value
rests on the model alone).

For each shared tree, ``recvmap replay --qemu-tree`` replays the vector files at the tree's
release: the model must agree with each vector and the tree's own code with the model. The
vectors this host can run (64-bit little-endian words, range holding the release) must all
pass; the 32-bit and big-endian ones are covered by the tree's host campaigns
(tests/test_qemu_tree.py, --host i686/s390x), not replayed here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from qemu_trees import SKIP_REASON, TREES

from recvmap.fuzz.vectors.files import iter_files, load_file
from recvmap.pymodel.releases import parse_release

VECTORS = Path(__file__).parent / "vectors"
pytestmark = pytest.mark.skipif(not TREES, reason=SKIP_REASON)


def runnable_here(release: str) -> list[str]:
    """The vectors a 64-bit little-endian host replays at ``release``."""
    rel = parse_release(release)
    out = []
    for path in iter_files([VECTORS]):
        for case in load_file(path):
            g = case.group
            layouts = [(g["bits_per_long"], g["big_endian"])]
            sender = (case.program.setup or {}).get("sender")
            if sender:  # recovery: the stream's sender runs on the same library
                layouts.append((sender["bits_per_long"], sender["big_endian"]))
            if all(lay == (64, False) for lay in layouts) and case.covers(rel):
                out.append(case.name)
    return out


@pytest.mark.parametrize("release", sorted(TREES))
def test_every_vector_in_range_passes_on_the_trees_own_code(release: str) -> None:
    cmd = [sys.executable, "-m", "recvmap.fuzz.cli", "replay", "--qemu-tree", str(TREES[release])]
    r = subprocess.run([*cmd, str(VECTORS)], capture_output=True, text=True, timeout=600)
    print(r.stdout[-2000:], r.stderr[-2000:])
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped", r.stdout, re.M)
    assert m, r.stdout
    passed, failed = int(m[1]), int(m[2])
    assert failed == 0
    expected = runnable_here(release)
    # a vector the tree cannot run here is skipped with a reason naming what it lacks
    lacking = re.findall(r"^SKIP (\S+): .*(?:lacks|absent|no such function)", r.stdout, re.M)
    assert passed + len(lacking) == len(expected), (passed, len(lacking), len(expected))
    assert passed > 0
