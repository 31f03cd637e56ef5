# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 22, part 4: the hostile-input suite.

A seeded generator (``hostile_inputs``) makes 2,000+ malformed vector files and raw fuzzer
inputs; with a few broken trees and broken libraries they are run against ``recvmap
replay`` (batched, and a few hundred singly), ``replay --layer``, ``recvmap fuzz --impl``,
``recvmap corpus merge`` and the pytest plugin (``pytest --recvmap-impl``). Every run must
end with an exit status of the command's documented set (recvmap: 0 clean, 1 a finding,
2 bad input; never 3, recvmap's own failure), no traceback, a bad input said on one line,
in under 10 s of wall time (a HANG's re-run alone, documented as 30 s, excepted) and 1 GB
of memory (the peak resident set of the command and every descendant it waited for:
``os.wait4``), and no process left behind (each run's processes carry a tag in their
environment, and run in a session of their own: after the run none may be alive).

The figures (inputs, runs per command, the longest run, the largest memory, tracebacks,
leftovers) are printed at the end (``pytest -s`` shows them).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import hostile_inputs
import pytest
from helpers import REPO
from qemu_trees import TREES, copy_tree

from recvmap.fuzz.campaign.crashfile import looks_like_json_object
from recvmap.fuzz.engine.isolate import confirm_budget

SEED = int(os.environ.get("RECVMAP_HOSTILE_SEED", "22"))
VECTOR_FILES = 2000
RAW_INPUTS = 200
BATCH = 100  # vector files per batched replay
SINGLY = 7  # every SINGLY-th JSON object file is also replayed alone
SECONDS = 10.0
MEMORY_KB = 1 << 20  # 1 GB
TAG = "RECVMAP_HOSTILE_RUN"
RECVMAP = [sys.executable, "-m", "recvmap.fuzz.cli"]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
EXIT_STATUSES = {"pytest": {0, 1, 2, 4, 5}}  # pytest's own; INTERNALERROR is 3
RECVMAP_STATUSES = {0, 1, 2}


@dataclass
class Run:
    command: str  # "replay", "replay batch", "fuzz --impl", ...
    what: str  # the input, as the generator named it
    argv: list[str]
    allowed: float = SECONDS  # wall time
    status: int = 0
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    max_kb: int = 0
    leftovers: list[str] = field(default_factory=list)


def _tagged(tag: str, session: int) -> list[int]:
    """The live processes carrying ``tag`` in their environment or in session ``session``."""
    found = []
    needle = f"{TAG}={tag}\0".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z":
                continue
            if int(stat[3]) == session or needle in (d / "environ").read_bytes():
                found.append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def run(command: str, what: str, argv: list[str], cwd: Path, allowed: float) -> Run:
    """Run ``argv`` in a session of its own, measured: exit status, output, wall time,
    peak memory of it and its waited descendants, and the processes it left."""
    r = Run(command, what, argv, allowed)
    limit = allowed + 60  # past it, killed (and reported)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, TAG: tag}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, env=env,
            start_new_session=True,
        )  # fmt: skip
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > limit:
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.01)
        r.seconds = time.monotonic() - t0
        r.status = proc.returncode = os.waitstatus_to_exitcode(status)
        r.max_kb = usage.ru_maxrss
        out.seek(0)
        err.seek(0)
        r.stdout = out.read().decode(errors="replace")
        r.stderr = err.read().decode(errors="replace")
    left = _tagged(tag, proc.pid)
    end = time.monotonic() + 2.0  # a watchdog finishing its last step
    while left and time.monotonic() < end:
        time.sleep(0.1)
        left = _tagged(tag, proc.pid)
    for pid in left:
        try:
            r.leftovers.append(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "))
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return r


def problems(r: Run) -> list[str]:
    """What is wrong with a run, whatever its input: status, traceback, time, memory,
    leftovers; and a bad input of one file not on one line."""
    found = []
    allowed = EXIT_STATUSES.get(r.command.split()[0], RECVMAP_STATUSES)
    if r.status not in allowed:
        found.append(f"exit status {r.status}")
    text = r.stdout + r.stderr
    if "Traceback (most recent call last)" in text or "INTERNALERROR" in text:
        found.append("a traceback")
    if r.seconds >= r.allowed:
        found.append(f"{r.seconds:.1f} s")
    if r.max_kb >= MEMORY_KB:
        found.append(f"{r.max_kb // 1024} MB")
    if r.leftovers:
        found.append(f"left {r.leftovers}")
    one_input = ("replay", "replay --layer", "replay --qemu-tree", "fuzz --impl", "corpus merge")
    if r.command in one_input and r.status == 2:
        lines = [x for x in r.stdout.splitlines() if x.startswith("ERROR ")]
        lines += r.stderr.strip().splitlines()
        if len(lines) != 1:
            found.append(f"{len(lines)} lines for one bad input")
    if r.command.startswith("pytest") and r.status == 4:  # a usage error: "ERROR: ..."
        lines = [x for x in r.stderr.splitlines() if x.startswith("ERROR:")]
        if len(lines) != 1:
            found.append(f"{len(lines)} usage error lines")
    if r.command.startswith(("replay", "corpus")) and len(r.stderr.strip().splitlines()) > 1:
        found.append("more than one line on stderr")
    return found


def _write(folder: Path, inputs: list[hostile_inputs.Input], suffix: str) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, (_, data) in enumerate(inputs):
        p = folder / f"{i:04d}{suffix}"
        p.write_bytes(data)
        paths.append(p)
    return paths


def _broken_trees(tmp: Path) -> list[tuple[str, Path]]:
    """Trees a user could point --qemu-tree at: files missing, C broken, includes of a
    device or of a file outside the tree, a FIFO where a header goes."""
    if not TREES:
        return []
    release = next(iter(TREES))
    trees = []

    def tree(name: str) -> Path:
        t = copy_tree(release, tmp / "trees" / name)
        trees.append((name, t))
        return t

    (tree("no bitmap.c") / "util" / "bitmap.c").unlink()
    (tree("no VERSION") / "VERSION").unlink()
    shutil.rmtree(tree("no include") / "include")
    code = tree("broken C") / "util" / "bitmap.c"
    code.write_text(code.read_text().replace("{", "{ this is not C", 1))
    for name, target in (("includes /dev/zero", "/dev/zero"), ("includes /etc/passwd", "")):
        code = tree(name) / "util" / "bitmap.c"
        code.write_text(f'#include "{target or "/etc/passwd"}"\n' + code.read_text())
    fifo = tree("a FIFO header") / "include" / "qemu" / "fifo.h"
    os.mkfifo(fifo)
    code = tree("a symlink to /dev/zero") / "util" / "bitmap.c"
    code.unlink()
    code.symlink_to("/dev/zero")
    (tree("VERSION is binary") / "VERSION").write_bytes(os.urandom(64))
    return trees


def _libraries(tmp: Path) -> list[tuple[str, Path]]:
    """Broken libraries (test_hostile's and test_verdicts') and files that are none."""
    from test_hostile import broken
    from test_verdicts import library

    libs = [(name, broken(name)) for name in ("hang", "oob", "chatty", "mask")]
    libs += [(name, library(name)) for name in ("fork", "exit", "close", "segv")]
    text = tmp / "libs" / "text.so"
    text.parent.mkdir()
    text.write_text("not a library\n")
    empty = tmp / "libs" / "empty.so"
    empty.write_bytes(b"")
    libs += [("a text file", text), ("an empty file", empty), ("/dev/zero", Path("/dev/zero"))]
    return libs


def _corpus_folders(tmp: Path, raw: list[hostile_inputs.Input]) -> list[Path]:
    """Corpus folders of the raw inputs, one with a FIFO, a link to /dev/zero, a sparse
    10 GiB file and an unreadable one among them."""
    half = len(raw) // 2
    a = tmp / "corpus" / "a"
    b = tmp / "corpus" / "b"
    _write(a, raw[:half], "")
    _write(b, raw[half:], "")
    os.mkfifo(b / "fifo")
    (b / "zero").symlink_to("/dev/zero")
    with (b / "huge").open("wb") as f:
        f.truncate(10 << 30)
    (b / "folder").mkdir()
    return [a, b]


@pytest.mark.slow
@pytest.mark.extra("fuzz")  # fuzz --impl, corpus merge (libFuzzer)
def test_hostile_inputs_bounded_one_line_no_traceback(tmp_path: Path) -> None:
    t_start = time.monotonic()
    vectors = hostile_inputs.vector_files(SEED, VECTOR_FILES)
    raw = hostile_inputs.raw_inputs(SEED, RAW_INPUTS)
    vpaths = _write(tmp_path / "vectors", vectors, ".json")
    names = {p: name for p, (name, _) in zip(vpaths, vectors, strict=True)}
    objects = [p for p, (_, d) in zip(vpaths, vectors, strict=True) if looks_like_json_object(d)]
    others = [p for p in vpaths if p not in set(objects)]
    program = tmp_path / "program.json"
    program.write_text(json.dumps(hostile_inputs.PROGRAM))
    out = tmp_path / "out"
    jobs: list[tuple[str, str, list[str], Path, float]] = []

    def job(
        command: str, what: str, argv: list[str], cwd: Path = REPO, allowed: float = SECONDS
    ) -> None:
        jobs.append((command, what, argv, cwd, allowed))

    # recvmap replay: every JSON object file in batches (one verdict line per bad file), a
    # sample of them alone, every other file alone (bare bytes are a usage error)
    for i in range(0, len(objects), BATCH):
        batch = objects[i : i + BATCH]
        job("replay batch", f"{len(batch)} files", [*RECVMAP, "replay", *map(str, batch)])
    for p in objects[::SINGLY] + others:
        job("replay", names[p], [*RECVMAP, "replay", str(p)])
    # raw inputs decoded by a harness
    rpaths = _write(tmp_path / "raw", raw, ".input")
    for i, p in enumerate(rpaths[::4]):
        layer = hostile_inputs.LAYERS[i % 3]
        argv = [*RECVMAP, "replay", "--layer", layer, "--out", str(out), str(p)]
        job("replay --layer", f"{raw[4 * i][0]} ({layer})", argv)
    # corpus merge of the raw inputs, and of hostile folders
    folders = _corpus_folders(tmp_path, raw)
    for layer in hostile_inputs.LAYERS:
        argv = [*RECVMAP, "corpus", "merge", "--layer", layer, str(tmp_path / f"m-{layer}")]
        job("corpus merge", f"raw inputs ({layer})", [*argv, *map(str, folders)])
    some = tmp_path / "corpus" / "vectors"  # a merge's work grows with its inputs: 300
    some.mkdir()
    for p in vpaths[:300]:
        shutil.copy(p, some / p.name)
    job("corpus merge", "300 vector files", [*RECVMAP, "corpus", "merge", "--layer", "bitmap",
        str(tmp_path / "m-v"), str(some)])  # fmt: skip
    # libraries: fuzzed, replayed, and under the pytest plugin
    libs = _libraries(tmp_path)
    for k, (name, lib) in enumerate(libs):
        job("fuzz --impl", name, [*RECVMAP, "fuzz", "--quiet", "--impl", str(lib), "--target",
            "bitmap", "--max-time", "2", "--timeout", "1", "--out", str(out)])  # fmt: skip
        # a HANG is confirmed by a re-run alone, for confirm_budget (documented: 30 s)
        allowed = SECONDS + (confirm_budget(1) if name == "hang" else 0)
        job("replay --impl", name, [*RECVMAP, "replay", "--impl", str(lib), "--timeout", "1",
            *map(str, objects[:20]), str(program)], REPO, allowed)  # fmt: skip
        if name != "hang":  # its fuzz item's hang is confirmed alone for 30 s (documented)
            project = tmp_path / "projects" / str(k)
            project.mkdir(parents=True)
            job("pytest --recvmap-impl", name, [*PYTEST, "--recvmap-impl", str(lib),
                "--recvmap-fuzz-seconds", "1", "--recvmap-out", str(out),
                "-k", "fuzz and bitmap or divergences"], project)  # fmt: skip
    # the pytest plugin on our C, given folders of hostile vector files
    ours = tmp_path / "projects" / "ours"
    ours.mkdir(parents=True)
    for k, p in enumerate(objects[3::60]):
        folder = tmp_path / "plugin-vectors" / str(k)
        folder.mkdir(parents=True)
        shutil.copy(p, folder / p.name)
        job("pytest --recvmap-vectors", names[p], [*PYTEST, "--recvmap-impl", _our_library(),
            "--recvmap-fuzz-seconds", "0", "--recvmap-vectors", str(folder)], ours)  # fmt: skip
    # trees
    for name, tree in _broken_trees(tmp_path):
        job("replay --qemu-tree", name, [*RECVMAP, "replay", "--qemu-tree", str(tree),
            str(program)])  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda j: run(*j), jobs))

    # a file bad alone is bad in its batch too: one ERROR line naming it
    errors = collections.Counter(
        line.split()[1].split(".json")[0]
        for r in runs
        if r.command == "replay batch"
        for line in r.stdout.splitlines()
        if line.startswith("ERROR ")
    )  # "ERROR FILE: ..." or, for a bare program, "ERROR FILE.member: ..."
    alone = {r.argv[-1]: r for r in runs if r.command == "replay"}
    mismatch = [
        p for p, r in alone.items()
        if Path(p) in set(objects) and r.status == 2 and errors[p.split(".json")[0]] != 1
    ]  # fmt: skip
    bad = [(r, problems(r)) for r in runs]
    bad = [(r, ps) for r, ps in bad if ps]
    per_command = collections.Counter(r.command for r in runs)
    statuses = collections.Counter((r.command, r.status) for r in runs)
    longest = max((r for r in runs if r.allowed == SECONDS), key=lambda r: r.seconds)
    confirms = [r for r in runs if r.allowed > SECONDS]
    largest = max(runs, key=lambda r: r.max_kb)
    print(
        f"\nhostile-input suite, seed {SEED}: {len(vectors)} vector files and "
        f"{len(raw)} raw inputs generated, {len(libs)} libraries, "
        f"{per_command['replay --qemu-tree']} trees; {len(runs)} runs in "
        f"{time.monotonic() - t_start:.0f} s"
    )
    for command, n in sorted(per_command.items()):
        codes = ", ".join(f"{s}: {c}" for (cmd, s), c in sorted(statuses.items()) if cmd == command)
        print(f"  {command}: {n} runs (exit {codes})")
    print(f"  longest run {longest.seconds:.1f} s ({longest.command}: {longest.what})")
    for r in confirms:  # allowed a HANG's confirmation alone
        print(f"  {r.command} ({r.what}): {r.seconds:.1f} s, a HANG confirmed alone")
    print(f"  largest run {largest.max_kb // 1024} MB ({largest.command}: {largest.what})")
    tracebacks = sum("a traceback" in ps for _, ps in bad)
    leftovers = sum(len(r.leftovers) for r in runs)
    print(f"  tracebacks {tracebacks}, leftover processes {leftovers}, problems {len(bad)}")
    for r, ps in bad[:20]:
        print(f"  PROBLEM {r.command} [{r.what}]: {'; '.join(ps)}\n    {r.argv}\n"
              f"    {(r.stdout + r.stderr)[-600:]}")  # fmt: skip
    assert not bad, f"{len(bad)} runs with problems (above)"
    assert not mismatch, f"bad alone, not one ERROR line in its batch: {mismatch[:5]}"
    assert len(vectors) + len(raw) >= 2000


def _our_library() -> str:
    from recvmap.qemu_ref import load

    return str(load(bits=64).path)
