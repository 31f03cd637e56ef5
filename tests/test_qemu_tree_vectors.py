# SPDX-License-Identifier: GPL-2.0-or-later
"""Every regression vector against QEMU's own code, tree by tree and layout by layout
(issue: no expected value rests on the model alone).

For each shared tree, ``recvmap replay --qemu-tree`` replays the vector files at the tree's
release: the model must agree with each vector, and the tree's own code with the model and
with the vector's results and memory digests. Three ways, one process each per tree:

- this machine (the tree as a shared library): the 64-bit little-endian vectors;
- ``--host i686,s390x`` (the tree cross-built into each host's replay driver, under
  qemu-user): every 32-bit vector on i686, every 64-bit vector on s390x in big-endian
  byte order (the same words; its memory read back in the vector's order). A recovery
  vector's stream sender runs on the tree's driver of a host of the sender's layout.

No host here runs QEMU's code with 32-bit big-endian words (no cross libc for one):
a vector that needs it is skipped naming that layout, and counted as such.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import recvmap
from qemu_trees import SKIP_REASON, TREES

from recvmap.fuzz.subjects.hosts import HOSTS, host_status
from recvmap.fuzz.vectors.files import Case, iter_files, load_file
from recvmap.pymodel.releases import RELEASES, parse_release
from recvmap.pymodel.words import ILP32_BE, Layout

VECTORS = Path(__file__).parent / "vectors"
# the ram and recovery vectors need the ram layer, which the qemu-tree extra builds
pytestmark = [pytest.mark.extra("qemu-tree"), pytest.mark.skipif(not TREES, reason=SKIP_REASON)]

# The hosts of the host run: one per word width, so every vector runs on one of them;
# s390x also makes the run big-endian. (64-bit little-endian: the library run.)
HOST_RUN = ("i686", "s390x")
NO_TREE_HOST = {ILP32_BE}  # layouts no host here runs QEMU's code with


def layouts(case: Case) -> list[Layout]:
    """The program's layout, and a recovery stream sender's."""
    g = case.group
    out = [Layout(g["bits_per_long"], g["big_endian"])]
    sender = (case.program.setup or {}).get("sender")
    if sender:
        out.append(Layout(sender["bits_per_long"], sender["big_endian"]))
    return out


def cases_at(release: str) -> list[Case]:
    rel = parse_release(release)
    return [c for p in iter_files([VECTORS]) for c in load_file(p) if c.covers(rel)]


def runnable_here(release: str) -> list[str]:
    """The vectors the tree's library on this 64-bit little-endian host replays."""
    lp64_le = Layout(64, False)
    return [c.name for c in cases_at(release) if all(lay == lp64_le for lay in layouts(c))]


def on_host(release: str, host: str) -> tuple[list[str], list[str]]:
    """The vectors host ``host`` runs at ``release`` (its word width, either byte order):
    (those every layout of which a host here runs, those that need a layout none runs)."""
    bits = HOSTS[host].layout.bits_per_long
    mine = [c for c in cases_at(release) if c.group["bits_per_long"] == bits]
    runs = [c.name for c in mine if not set(layouts(c)) & NO_TREE_HOST]
    return runs, [c.name for c in mine if set(layouts(c)) & NO_TREE_HOST]


def summary(text: str) -> tuple[int, int, int]:
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped", text, re.M)
    assert m, text
    return int(m[1]), int(m[2]), int(m[3])


# a vector the tree cannot run is skipped with a reason naming what it lacks ...
LACKS = r"^SKIP (\S+): .*(?:lacks|absent|no such function)"
# ... or the layout no host here has
NO_HOST = r"^SKIP (\S+): .*32-bit big-endian words(?: here|: no host here)"
# ... or its expectations depend on the byte order, and its twin of the host's runs
BYTE_ORDER = r"^SKIP (\S+): .*depend on the byte order"
# ... or it allocates an array, which the replay drivers of the emulated hosts cannot
NO_ALLOC = r"^SKIP (\S+): .*cannot allocate arrays"


@pytest.mark.parametrize("release", sorted(TREES))
def test_every_vector_in_range_passes_on_the_trees_own_code(release: str) -> None:
    cmd = [sys.executable, "-m", "recvmap.fuzz.cli", "replay", "--qemu-tree", str(TREES[release])]
    r = subprocess.run([*cmd, str(VECTORS)], capture_output=True, text=True, timeout=600)
    print(r.stdout[-2000:], r.stderr[-2000:])
    assert r.returncode == 0, r.stdout + r.stderr
    passed, failed, _ = summary(r.stdout)
    assert failed == 0
    expected = runnable_here(release)
    lacking = re.findall(LACKS, r.stdout, re.M)
    assert passed + len(lacking) == len(expected), (passed, len(lacking), len(expected))
    assert passed > 0


def host_sections(stdout: str) -> dict[str, str]:
    """The output of ``replay --host A,B``: each host's part, by host name."""
    parts = re.split(r"^== \S+@(\S+) .*$", stdout, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("release", sorted(TREES))
def test_every_vector_in_range_passes_on_the_trees_code_on_other_hosts(release: str) -> None:
    """32-bit words (i686) and big-endian ones (s390x): one process per tree, both hosts."""
    for host in HOST_RUN:
        if why := host_status(host):
            pytest.skip(f"host {host}: {why}")
    r = recvmap(
        "replay",
        "--qemu-tree",
        str(TREES[release]),
        "--host",
        ",".join(HOST_RUN),
        str(VECTORS),
        timeout=600,
    )
    print(r.stdout[-3000:], r.stderr[-2000:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    sections = host_sections(r.stdout)
    assert sorted(sections) == sorted(HOST_RUN), r.stdout[:500]
    for host, text in sections.items():
        passed, failed, _ = summary(text)
        runs, no_host = on_host(release, host)
        lacking = re.findall(LACKS, text, re.M)
        layout_skips = re.findall(NO_HOST, text, re.M)
        other_order = re.findall(BYTE_ORDER, text, re.M)
        no_alloc = re.findall(NO_ALLOC, text, re.M)
        assert sorted(no_alloc) == sorted(allocating(release, runs)), host
        print(
            f"{release} on {host}: {passed} passed, {len(lacking)} lack a function, "
            f"{len(layout_skips)} need a layout no host has, {len(other_order)} run as "
            f"their twin of the host's byte order; expected {len(runs)} + {len(no_host)}"
        )
        assert failed == 0
        skipped = len(lacking) + len(other_order) + len(no_alloc)
        assert passed + skipped == len(runs), (host, passed, len(runs))
        assert sorted(layout_skips) == sorted(no_host), host
        assert_twins_ran(release, host, other_order, runs)
        assert passed > 0


def allocating(release: str, names: list[str]) -> list[str]:
    """The vectors among ``names`` with an array the implementation allocates."""
    return [
        c.name
        for c in cases_at(release)
        if c.name in names and any(a.alloc is not None for a in c.program.arrays)
    ]


def assert_twins_ran(release: str, host: str, skipped: list[str], runs: list[str]) -> None:
    """A vector skipped because its expectations depend on the byte order has a twin (same
    file and comment) in the host's own byte order among the vectors the host ran."""
    order = HOSTS[host].layout.big_endian
    by_name = {c.name: c for c in cases_at(release)}
    for name in skipped:
        case = by_name[name]
        twins = [
            c.name
            for c in by_name.values()
            if c.path == case.path
            and c.test["comment"] == case.test["comment"]
            and c.group["big_endian"] == order
            and c.group["bits_per_long"] == case.group["bits_per_long"]
        ]
        assert twins and set(twins) <= set(runs), (host, name, twins)


@pytest.mark.slow
def test_a_byte_order_bug_in_a_tree_fails_its_vectors_on_a_big_endian_host(
    tmp_path: Path,
) -> None:
    """Teeth: a copy of the newest tree whose bitmap_to_le/bitmap_from_le no longer swap
    bytes on a big-endian host fails vectors on s390x (the recovery stream's reload and
    bitmap_to_le) and passes on i686 (the control: the bug is invisible there) all but
    the streams whose sender is the tree's s390x build."""
    for host in HOST_RUN:
        if why := host_status(host):
            pytest.skip(f"host {host}: {why}")
    release = max(TREES, key=lambda r: parse_release(r).version)
    copy = Path(shutil.copytree(TREES[release], tmp_path / "patched"))
    bitmap_c = copy / "util" / "bitmap.c"
    text = bitmap_c.read_text()
    swap = re.search(r"dst\[(\w+)\] = bswap64\(src\[\1\]\);", text)
    assert swap, "the tree's bitmap_to_from_le has no bswap64 of each word"
    bitmap_c.write_text(text.replace(swap[0], f"dst[{swap[1]}] = src[{swap[1]}];", 1))
    files = [str(VECTORS / f) for f in ("stream-bytes.json", "bitmap-divergences.json")]
    r = recvmap(
        "replay", "--qemu-tree", str(copy), "--host", ",".join(HOST_RUN), *files, timeout=600
    )
    print(r.stdout[-3000:], r.stderr[-2000:])
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr
    sections = host_sections(r.stdout)
    # on i686 only a stream from a big-endian sender (the tree's s390x driver) can fail
    big_senders = {c.name for c in cases_at(release) if c.group.get("sender_big_endian")}
    assert set(re.findall(r"^FAIL (\S+):", sections["i686"], re.M)) <= big_senders
    assert summary(sections["i686"])[0] > 0
    failures = re.findall(r"^FAIL (\S+): (.*)$", sections["s390x"], re.M)
    assert failures, sections["s390x"]
    assert any(name.startswith("stream-bytes.json") for name, _ in failures), failures


def test_a_recovery_sender_of_another_layout_runs_on_the_trees_code() -> None:
    """A 64-bit receiver on s390x whose stream comes from a 32-bit sender: the sender is
    the tree's code cross-built for i686, not our C."""
    from recvmap.fuzz.subjects.qemu_tree.build import cache_root
    from recvmap.fuzz.subjects.qemu_tree.command import open_tree, tree_host_subject
    from recvmap.fuzz.vectors.files import replay

    for host in HOST_RUN:
        if why := host_status(host):
            pytest.skip(f"host {host}: {why}")
    release = max(TREES, key=lambda r: parse_release(r).version)
    case = next(
        c
        for c in cases_at(release)
        if c.group["layer"] == "recovery"
        and c.group["bits_per_long"] == 64
        and c.group["sender_bits_per_long"] == 32
        and c.test["result"] == "valid"
    )
    subject = tree_host_subject(open_tree(TREES[release]), "s390x")
    try:
        verdict = replay(case, subject, release=release)
        assert verdict.status == "pass", verdict.message
        drivers = {h: Path(d.argv[-1]) for h, d in subject.pool.drivers.items()}
    finally:
        subject.close()
    assert sorted(drivers) == ["i686", "s390x"]
    for exe in drivers.values():
        assert exe.is_relative_to(cache_root()) and exe.name == f"qref-replay-{release}", exe


@pytest.mark.parametrize(
    ("host", "words"),
    [("native32", "emulates 32-bit little-endian words on our C only"), ("nope", "unknown")],
)
def test_a_host_the_tree_cannot_use_is_one_line(
    host: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from recvmap.fuzz import cli

    tree = str(TREES[max(TREES, key=lambda r: parse_release(r).version)])
    argv = ["replay", "--qemu-tree", tree, "--host", host, str(VECTORS / "bitmap-rules.json")]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


def test_fuzz_host_jobs_of_a_tree_take_other_senders_from_the_tree() -> None:
    """``fuzz --qemu-tree --host s390x``: the host job's recovery senders of another
    layout are the tree's drivers too (they were our C's)."""
    from recvmap.fuzz.subjects.qemu_tree import command
    from recvmap.fuzz.subjects.qemu_tree.build import cache_root

    for host in HOST_RUN:
        if why := host_status(host):
            pytest.skip(f"host {host}: {why}")
    release = max(TREES, key=lambda r: parse_release(r).version)
    plan = command.resolve([TREES[release]], ("s390x",), None, ("recovery",), False)
    spec = plan.drivers["s390x"].to_json()  # what the campaign puts on the job's command line
    kw = command.host_overrides(command.HostDriver.from_json(spec))
    assert kw["senders"][HOSTS["s390x"].layout] == "s390x"
    assert kw["senders"][HOSTS["i686"].layout] == "i686"
    try:
        sender = Path(kw["pool"].driver("i686").argv[-1])
    finally:
        kw["pool"].close()
    assert sender.is_relative_to(cache_root()) and sender.name == f"qref-replay-{release}"


@pytest.fixture(scope="module")
def history_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import qemu_history

    if not qemu_history.available():
        pytest.skip(qemu_history.SKIP_REASON)
    return qemu_history.clone(tmp_path_factory.mktemp("history") / "qemu")


@pytest.mark.slow
@pytest.mark.parametrize("tag", [r.name for r in RELEASES])
def test_every_vector_in_range_passes_on_every_release_of_the_history(
    tag: str, history_clone: Path, tmp_path: Path
) -> None:
    """Every vector whose range holds a release, on that release's own code from QEMU's
    history (the bundle's tag): 64-bit here, 32-bit on i686, big-endian on s390x."""
    from qemu_history import git

    for host in HOST_RUN:
        if why := host_status(host):
            pytest.skip(f"host {host}: {why}")
    tree = tmp_path / tag
    git(history_clone, "worktree", "add", "-q", "--detach", str(tree), tag)
    native = recvmap("replay", "--qemu-tree", str(tree), str(VECTORS), timeout=600)
    # every tag builds (test_qemu_tree_history): a build failure here is a failure
    assert native.returncode != 2, f"{tag} does not build: {native.stderr.strip()[-300:]}"
    assert native.returncode == 0, native.stdout[-3000:] + native.stderr[-2000:]
    assert summary(native.stdout)[1] == 0 and summary(native.stdout)[0] > 0
    hosts = recvmap(
        "replay", "--qemu-tree", str(tree), "--host", ",".join(HOST_RUN), str(VECTORS),
        timeout=900,
    )  # fmt: skip
    assert hosts.returncode == 0, hosts.stdout[-3000:] + hosts.stderr[-2000:]
    for host, text in host_sections(hosts.stdout).items():
        passed, failed, _ = summary(text)
        print(f"{tag} on {host}: {passed} passed")
        assert failed == 0 and passed > 0, host
