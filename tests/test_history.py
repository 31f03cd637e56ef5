# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's history as a producer: rules by ancestry, ``recvmap history`` and ``git bisect run``.

Against ../shared/qemu-history/qemu.bundle (tests/qemu_history.py; skipped without it):

- a checkout is judged by the changes its history contains, a plain copy of the same files
  by its VERSION (and says that a release candidate is ambiguous);
- the seed commit's own received-bitmap functions build and its rules are the seed's;
- ``recvmap history`` lists the commits worth judging, catches the source-side discard crash
  at the parent of 814bb08f177a with a reproducer (a known QEMU bug, named by its fix), and
  finds the seed clean under its own rules (``--as-released``);
- ``git bisect run recvmap history --bisect`` finds a planted one-line bug.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import qemu_history
from helpers import recvmap
from qemu_history import checkout, git, upstream

from recvmap.fuzz.subjects.qemu_tree.build import origins
from recvmap.fuzz.subjects.qemu_tree.repo import Repo
from recvmap.fuzz.subjects.qemu_tree.tree import QemuTree
from recvmap.pymodel.releases import SEED, parse_rules

pytestmark = pytest.mark.skipif(not qemu_history.available(), reason=qemu_history.SKIP_REASON)

FIX = "814bb08f177a"  # migration: update recv bitmap only on dest vm


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the bundle, shared by the tests of this module (not checked out again)."""
    return qemu_history.clone(tmp_path_factory.mktemp("history") / "qemu")


def test_a_checkout_is_judged_by_its_history_a_copy_by_its_version(
    bundle: Path, tmp_path: Path
) -> None:
    """The parent of 814bb08f177a (VERSION 2.12.91, v3.0.0-rc1 + 1 commit) has every change
    of v3.0.0 but the discard guard: its history says so; its VERSION alone cannot, and
    the command says that the choice is ambiguous (issue 21 point 4)."""
    parent = git(bundle, "rev-parse", f"{upstream(bundle, FIX)}^")
    tree = QemuTree.open(checkout(bundle, parent, tmp_path / "parent"))
    assert tree.rules == parse_rules(f"v3.0.0-{FIX}")
    assert tree.how.startswith("by history (git, ") and "changes present" in tree.how
    assert str(tree.version) == "2.12.91"
    copy = tmp_path / "copy"
    copy.mkdir()
    Repo(tree.root).materialise(parent, copy)  # the same files, no .git
    plain = QemuTree.open(copy)
    assert plain.rules == parse_rules("v3.0.0")
    assert plain.how.startswith("by VERSION 2.12.91 = v3.0.0-rc1: ambiguous")
    first = recvmap("qemu-tree", str(copy)).stdout.splitlines()[0]
    assert first == f"rules: {plain.how}"


@pytest.mark.extra("qemu-tree")  # builds the ram part of a tree
def test_the_seed_builds_its_own_ram_functions_under_its_rules(
    bundle: Path, tmp_path: Path
) -> None:
    """Issue 21 point 1: at f9494614898f every received-bitmap function was listed absent.
    Its rules are the seed's (none of the changes), and its own functions are built."""
    seed = upstream(bundle, SEED)
    tree = QemuTree.open(checkout(bundle, seed, tmp_path / "seed"))
    assert tree.rules is not None and tree.rules.applied == frozenset()
    found = {o.function: o for o in origins(tree)}
    for name in (
        "ramblock_recv_map_init",
        "ramblock_recv_bitmap_test",
        "ramblock_recv_bitmap_set",
        "ramblock_recv_bitmap_set_range",
        "ram_discard_range",
        "postcopy_place_page",
    ):
        assert found[name].kind == "tree", (name, found[name].where)
    for name in ("ramblock_recv_bitmap_test_byte_offset", "ramblock_recv_bitmap_send"):
        assert found[name].kind == "absent", name  # 1cba9f6e662d, a335debb35: later


def test_history_lists_what_it_would_judge(bundle: Path) -> None:
    r = recvmap("history", str(bundle), "v2.12.0..v3.0.0", "--list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("rules: by history (git, per commit); 245 commits in")
    fix = upstream(bundle, FIX)
    assert any(line.startswith(fix[:12]) and "rules v3.0.0]" in line for line in lines)
    judged = [line for line in lines[1:] if line.startswith(tuple("0123456789abcdef"))]
    assert 4 <= len(judged) <= 20  # commits that change no in-scope definition are skipped
    assert lines[-1].startswith("estimate: about ")


def test_bad_arguments_are_one_line(bundle: Path, tmp_path: Path) -> None:
    for args, status in (
        ((str(tmp_path),), 2),
        ((str(bundle), "no-such-rev..HEAD"), 2),
        (("--bisect", str(tmp_path)), 128),  # git bisect run stops instead of marking bad
        (("--bisect", str(bundle), "HEAD~1"), 128),
    ):
        r = recvmap("history", *args)
        assert r.returncode == status, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow  # a campaign on a commit of the bundle: make check (CI)
@pytest.mark.extra("qemu-tree")  # builds the ram part of a tree
def test_the_parent_of_the_discard_fix_is_caught_with_a_reproducer(
    bundle: Path, tmp_path: Path
) -> None:
    """The acceptance case of issue 21: ram_discard_range clears the map unconditionally,
    NULL on the source; ``recvmap history`` on that commit reports the crash, its
    reproducer, and the upstream commit that fixed it. Under its own rules only
    (--as-released) the crash is outside the model's domain and the commit is clean."""
    parent = git(bundle, "rev-parse", f"{upstream(bundle, FIX)}^")
    out = tmp_path / "out"
    args = ("history", str(bundle), f"{parent}^!", "--per-commit-time", "8", "--seed", "1")
    r = recvmap(*args, "--out", str(out), "--quiet")
    print(r.stdout, r.stderr)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith(parent[:12]))
    assert ": CRASH: ram_discard_range" in line
    assert f"known QEMU bug, fixed by {FIX} (v3.0.0)" in line
    reproducer = Path(re.search(r"reproducer (\S+)", line)[1])  # type: ignore[index]
    assert reproducer.is_file() and reproducer.is_relative_to(out)
    # the reproducer replays the crash on the commit's own code
    copy = tmp_path / "copy"
    copy.mkdir()
    Repo(bundle).materialise(parent, copy)
    again = recvmap("replay", "--qemu-tree", str(copy), str(reproducer))
    assert again.returncode == 1 and "crashed (SIGSEGV)" in again.stdout, again.stdout
    clean = recvmap(*args, "--as-released", "--out", str(tmp_path / "out2"), "--quiet")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert ": clean [" in clean.stdout


@pytest.mark.slow  # a campaign on a commit of the bundle: make check (CI)
@pytest.mark.extra("qemu-tree")  # builds the ram part of a tree
def test_the_seed_is_clean_under_its_own_rules_over_every_layer_it_has(
    bundle: Path, tmp_path: Path
) -> None:
    seed = upstream(bundle, SEED)
    r = recvmap(
        "history", str(bundle), f"{seed}^!", "--as-released", "--per-commit-time", "6",
        "--seed", "2", "--out", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith(seed[:12]))
    # the seed and v2.11.0 have the same rules (no in-scope change between them)
    assert ": clean [" in line and ", bitmap+ram, rules v2.11.0]" in line, line
    assert r.stdout.splitlines()[-1].startswith("summary: 1 commits judged of 1 listed: 1 clean")


# --- git bisect run -----------------------------------------------------------------------

PLANT_FILE = "migration/ram.c"
PLANT_OLD = "return test_bit(ramblock_recv_bitmap_offset(host_addr, rb),"
PLANT_NEW = "return !test_bit(ramblock_recv_bitmap_offset(host_addr, rb),"


def _commit_all(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "-a", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.mark.slow  # a campaign on a commit of the bundle: make check (CI)
@pytest.mark.extra("qemu-tree")  # builds the ram part of a tree
def test_git_bisect_run_finds_a_planted_bug(bundle: Path, tmp_path: Path) -> None:
    """Between v10.1.2 and v10.1.3 of the bundle, a series of five commits; the third
    inverts ramblock_recv_bitmap_test. ``git bisect run recvmap history --bisect`` names
    it."""
    repo = checkout(bundle, "v10.1.2", tmp_path / "series")
    git(repo, "checkout", "-q", "-b", "series")
    ram_c = repo / PLANT_FILE
    series = []
    for n in range(5):
        text = ram_c.read_text()
        if n == 2:
            assert text.count(PLANT_OLD) == 1
            text = text.replace(PLANT_OLD, PLANT_NEW)
        else:  # a change outside every in-scope definition
            text += f"\n/* recvmap bisect test: harmless commit {n} */\n"
        ram_c.write_text(text)
        series.append(_commit_all(repo, f"step {n}"))
    git(repo, "bisect", "start", series[-1], "v10.1.2")
    run = subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "bisect",
            "run",
            sys.executable,
            "-m",
            "recvmap.fuzz.cli",
            "history",
            "--bisect",
            str(repo),
            "--per-commit-time",
            "5",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(run.stdout[-3000:], run.stderr[-2000:])
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{series[2]} is the first bad commit" in run.stdout
    git(repo, "bisect", "reset")
