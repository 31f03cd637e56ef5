# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 22: every verdict true, a reproducer for every finding, one meaning per exit status.

Each test is one case of the issue and failed before its fix: a job the campaign stops at
--max-time counted as a crash; a library that forks, exits or closes its descriptors was a
HANG, a traceback or a finding without reproducer; raw recovery inputs skipped their 32-bit
senders; the guard page side was guessed; a read past a map our C allocated went unseen;
the pytest plugin's crash had no program and its hang no end; JUnit's replay command left
out --impl; --json statuses failed the schema; a malformed vector file exited like a
divergence; the random engine wrote no crash reproducer. A replay command is always run as
printed (``shlex.split``).
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from helpers import MASK, MUTANT, REPO, alive, recvmap

from recvmap.fuzz.subjects.build import build_library

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the libraries")
VECTORS = REPO / "tests" / "vectors"

# --- libraries that do to their process what QEMU's functions never do ----------------------

SET_HEAD = (
    "void bitmap_set(qref_ulong *map, qref_long start, qref_long nr)\n{\n"
    "    qref_ulong *p;\n    qref_long end;\n    int room;\n    qref_ulong mask;\n"
)
POSIX = (
    "#undef NDEBUG   /* QEMU's",
    "#define _POSIX_C_SOURCE 200809L\n#include <stdio.h>\n#include <time.h>\n"
    "#include <unistd.h>\n#undef NDEBUG   /* QEMU's",
)
# bitmap_set starts a process that notes its pid in $RECVMAP_TEST_PIDS and sleeps an hour
FORK = (
    SET_HEAD,
    SET_HEAD
    + "    if (fork() == 0) {\n"
    + '        const char *name = getenv("RECVMAP_TEST_PIDS");\n'
    + '        FILE *f = name ? fopen(name, "a") : NULL;\n'
    + "        struct timespec nap = {3600, 0};\n"
    + "        if (f) {\n"
    + '            fprintf(f, "%d\\n", (int)getpid());\n'
    + "            fclose(f);\n"
    + "        }\n"
    + "        nanosleep(&nap, NULL);\n"
    + "        _exit(0);\n"
    + "    }\n",
)
EXIT = (SET_HEAD, SET_HEAD + "    exit(0);\n")
CLOSE = (
    SET_HEAD,
    SET_HEAD + "    for (int fd = 3; fd < 1024; fd++) {\n        close(fd);\n    }\n",
)
# find_next_bit reads the word after the last one it may read (often past the array)
NEXT_END = "        if (size - base <= QREF_BITS_PER_LONG) {\n            return size;\n        }"
OOB = (
    NEXT_END,
    "        if (size - base <= QREF_BITS_PER_LONG) {\n"
    "            return addr[BIT_WORD(base) + 1] == 0x5a5a5a5aUL ? 0 : size;\n        }",
)
# ramblock_recv_bitmap_test reads the word after the receivedmap (our C allocates it)
RECV_TEST = "int ramblock_recv_bitmap_test(RAMBlock *rb, void *host_addr)\n{\n"
MAP_PAST = (
    RECV_TEST,
    RECV_TEST + "    volatile qref_ulong past = rb->receivedmap[BITS_TO_LONGS(rb->max_length >> "
    "qemu_target_page_bits())];\n\n    (void)past;\n",
)
# bitmap_set segfaults past bit 127 (BIT_WORD scaled by 2^28)
WORD = "#define BIT_WORD(nr)            ((nr) / QREF_BITS_PER_LONG)"
FAR = "#define BIT_WORD(nr)            ((nr) / QREF_BITS_PER_LONG * ((nr) >= 128 ? 1L << 28 : 1))"
HANG = (SET_HEAD, SET_HEAD + "    for (volatile int spin = 1; spin;) {\n    }\n")


def library(name: str) -> Path:
    """Our C with one behaviour QEMU's code never has (64-bit words), built once."""
    edits = {
        "fork": {"bitmap.c": [POSIX, FORK]},
        "exit": {"bitmap.c": [POSIX, EXIT]},
        "close": {"bitmap.c": [POSIX, CLOSE]},
        "oob": {"bitops.c": [OOB]},
        "map-past": {"ram.c": [MAP_PAST]},
        "segv": {"qemu_ref.h": [(WORD, FAR)]},
        "hang": {"bitmap.c": [HANG]},
        "mask": {"qemu_ref.h": [(MASK, MUTANT)]},
    }[name]
    return build_library(64, edits)


def run_printed(command: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """A replay command exactly as recvmap printed it (``recvmap`` is this venv's)."""
    words = shlex.split(command)
    assert words[0] == "recvmap", command
    exe = Path(sys.executable).with_name("recvmap")
    return subprocess.run(
        [str(exe), *words[1:]], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def fuzz(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", "fuzz", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


# --- a job stopped at --max-time is never a finding ------------------------------------------


def test_a_job_we_stopped_is_never_a_crash(tmp_path: Path) -> None:
    """libFuzzer ends a job stopped by SIGTERM with "run interrupted", exit status 72: the
    campaign counted it as a CRASH of the implementation (5 runs of 5 of `recvmap fuzz
    --jobs 1 --max-time 2`). Stopped by us, it is nothing."""
    from recvmap.fuzz.campaign.findings import finish
    from recvmap.fuzz.campaign.jobs import Job
    from recvmap.fuzz.campaign.result import Result

    log = tmp_path / "ram-32.log"
    log.write_text("==1== libFuzzer: run interrupted; exiting\n")
    job = Job("ram/32", "ram", 32, 1, 2.0, {}, [], tmp_path / "s.json", log, returncode=72)
    job.stopped = True
    result = Result([job], [], 2.0, 1, "qemu_ref")
    finish(job, result)
    assert result.clean and not result.errors and not result.unconfirmed


def test_a_harness_that_dies_with_no_input_is_recvmaps_error_not_a_crash(tmp_path: Path) -> None:
    """A harness that ends badly before any input (libFuzzer refusing a flag: `IndexError:
    stoi` from `--timeout 2147483647`) was a CRASH of the implementation. Nothing ran:
    recvmap failed (exit 3), its log kept."""
    from recvmap.fuzz.campaign.findings import finish
    from recvmap.fuzz.campaign.jobs import Job
    from recvmap.fuzz.campaign.result import Result

    log = tmp_path / "bitmap-64.log"
    log.write_text("terminate called after throwing an instance of 'std::out_of_range'\n")
    job = Job("bitmap/64", "bitmap", 64, 1, 2.0, {}, [], tmp_path / "s", log, returncode=-6)
    result = Result([job], [], 2.0, 1, "qemu_ref")
    finish(job, result)
    assert not result.crashes and result.errors and result.status == "error"


def test_an_out_of_range_timeout_is_never_a_crash(tmp_path: Path) -> None:
    """`recvmap fuzz --timeout 2147483647`: the harness died (IndexError: stoi) and that
    was a CRASH (exit 1). Now refused (2) or recvmap's error (3), never a finding."""
    proc = fuzz(tmp_path, "--target", "bitmap", "--word-bits", "64", "--max-time", "3",
                "--timeout", "2147483647", "--out", str(tmp_path / "o"))  # fmt: skip
    assert proc.returncode in (2, 3), proc.stdout + proc.stderr
    assert "CRASH" not in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_short_campaign_of_our_c_is_clean_on_every_run(tmp_path: Path) -> None:
    """Acceptance: `recvmap fuzz --jobs 1 --max-time 2` on our C, clean every time (before:
    CRASH in ram/32 (exit status 72) ... run interrupted, exit 1, 5 runs of 5)."""
    for run in range(3):
        proc = fuzz(tmp_path, "--jobs", "1", "--max-time", "2", "--out", str(tmp_path / "o"))
        assert proc.returncode == 0, f"run {run}: {proc.stdout}{proc.stderr}"
        assert "CRASH" not in proc.stdout and "interrupted" not in proc.stdout


# --- libraries that fork, exit or close descriptors ------------------------------------------


@needs_gcc
def test_a_forking_library_is_a_finding_not_a_hang_and_leaves_no_process(tmp_path: Path) -> None:
    """A library that forks a sleeping child: tests #12, #13, #18 were HANG after 5 s each
    (the library returns at once) and three children slept on with parent 1."""
    pids = tmp_path / "pids"
    env = {**os.environ, "RECVMAP_TEST_PIDS": str(pids)}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", "replay", "--impl", str(library("fork")),
         str(VECTORS / "bitmap-rules.json")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HANG" not in proc.stdout
    failing = re.findall(r"^FAIL (\S+): (.*)$", proc.stdout, re.M)
    assert failing and all("started a process" in m for _, m in failing), failing
    assert took < 30, f"{took:.1f} s (a HANG each took --timeout)"
    started = [int(x) for x in pids.read_text().split()]
    assert started and not [p for p in started if alive(p)], "a started process outlived it"


@needs_gcc
@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("exit", "ended the process (exit status 0)"),
        ("fork", "started a process"),
        ("close", "closed the process's file descriptors"),
    ],
)
def test_a_library_that_exits_forks_or_closes_is_a_crash_with_a_reproducer(
    tmp_path: Path, name: str, said: str
) -> None:
    """exit(0) inside a function was CRASH "(no reproducer: EOFError: Ran out of input)"
    with no replay command. Each of these is a confirmed finding whose replay command, run
    as printed, fails the same way; the raw input replays without a traceback."""
    lib = library(name)
    out = tmp_path / "out"
    proc = fuzz(tmp_path, "--impl", str(lib), "--target", "bitmap", "--max-time", "20",
                "--engine", "random", "--seed", "1", "--out", str(out))  # fmt: skip
    assert proc.returncode == 1 and "CRASH in bitmap/64" in proc.stdout, proc.stdout
    assert f"confirmed: alone: the implementation {said}" in proc.stdout, proc.stdout
    assert "no reproducer" not in proc.stdout
    replay = re.search(r"^replay it: (.*)$", proc.stdout, re.M)
    assert replay, proc.stdout
    again = run_printed(replay[1])
    assert again.returncode == 1 and said in again.stdout, again.stdout + again.stderr
    raw = re.search(r"^input: (\S+)$", proc.stdout, re.M)
    assert raw, proc.stdout
    decoded = recvmap("replay", "--layer", "bitmap", "--impl", str(lib), "--out",
                      str(tmp_path / "raw"), raw[1])  # fmt: skip
    assert decoded.returncode == 1 and "Traceback" not in decoded.stderr, decoded.stderr
    assert said in decoded.stdout, decoded.stdout


# --- raw recovery inputs -----------------------------------------------------------------------


def test_raw_recovery_inputs_replay_on_the_jobs_word_widths(tmp_path: Path) -> None:
    """`replay --layer recovery --word-bits 64` on raw recovery inputs skipped those with a
    32-bit sender ("the stream's sender"): 4 of 12. The job of recovery/64 has both
    widths (its --word-bits is the receiver's)."""
    rng = random.Random(5)
    raw = []
    for i in range(12):
        f = tmp_path / f"in{i}"
        f.write_bytes(rng.randbytes(rng.randrange(64, 600)))
        raw.append(str(f))
    proc = recvmap("replay", "--layer", "recovery", "--word-bits", "64", "--out",
                   str(tmp_path / "o"), *raw)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "12 passed, 0 failed, 0 skipped" in proc.stdout, proc.stdout


# --- guard pages: the side on record, and the maps our C allocates ---------------------------


def test_the_batch_arrays_follow_the_inputs_guard_side() -> None:
    """The batch interpreter kept its arrays by size only: an input ran against the guard
    side of the first program of its size, not its own (the reproducer then decoded the
    input's side, did not crash, blamed the last operation, skipped minimization)."""
    from recvmap.fuzz.subjects.impls import CImpl
    from recvmap.qemu_ref import load
    from recvmap.qemu_ref.loader import set_guard

    impl = CImpl(load(bits=64))
    try:
        for side in ("after", "before"):
            set_guard(side)
            impl.run_batch((2,), bytes(16), [])
            (handles, _, _) = impl._scratch[((2,), side)]
            assert handles[0].guard == side
    finally:
        set_guard(None)


@needs_gcc
def test_a_crash_reproducer_records_its_guard_side_and_blames_the_faulting_op(
    tmp_path: Path,
) -> None:
    """The reproducer carries the side it crashed with (program "guard", the subject's
    record), is minimized, blames find_next_bit, and replays as printed."""
    lib = library("oob")
    out = tmp_path / "out"
    proc = fuzz(tmp_path, "--impl", str(lib), "--target", "bitmap", "--max-time", "20",
                "--engine", "random", "--seed", "3", "--out", str(out))  # fmt: skip
    assert proc.returncode == 1 and "CRASH in bitmap/64" in proc.stdout, proc.stdout
    vector = re.search(r"^minimized reproducer: (\S+)$", proc.stdout, re.M)
    assert vector, proc.stdout
    obj = json.loads(Path(vector[1]).read_text())
    test = obj["testGroups"][0]["tests"][0]
    program = test["program"]
    assert program["guard"] in ("after", "before") and obj["subject"]["guard"] == program["guard"]
    last = program["ops"][-1][0]  # a search that reads one word too far (find_next_bit's)
    assert last.startswith("find_") and len(program["ops"]) <= 3, program
    assert f"op #{len(program['ops']) - 1} {last}(" in test["comment"], test["comment"]
    assert "SIGSEGV" in test["comment"]
    assert obj["subject"]["sha256"] and obj["subject"]["library"] == str(lib)
    again = run_printed(obj["subject"]["replay"])
    assert again.returncode == 1 and "crashed (SIGSEGV)" in again.stdout, again.stdout


@needs_gcc
def test_a_read_past_a_map_our_c_allocates_faults_on_every_run(tmp_path: Path) -> None:
    """A read one word past a receivedmap (calloc'd by our C) went unseen, or was found by
    chance and replayed NON-DETERMINISTIC. Behind a guard page it faults every time: the
    replay fails, confirmed alone; with no guard page (RECVMAP_GUARD=none) it passes."""
    program = json.loads((VECTORS / "ram-rules.json").read_text())
    found = next(
        t["program"]
        for g in program["testGroups"]
        for t in g["tests"]
        if any(op[0] == "ramblock_recv_bitmap_test" for op in t["program"]["ops"])
    )
    f = tmp_path / "p.json"
    f.write_text(json.dumps(found))
    lib = library("map-past")
    for _ in range(2):
        proc = recvmap("replay", "--impl", str(lib), str(f))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "crashed (SIGSEGV)" in proc.stdout and "confirmed" in proc.stdout, proc.stdout
    env = {**os.environ, "RECVMAP_GUARD": "none"}
    plain = subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", "replay", "--impl", str(lib), str(f)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stdout  # the read lands in calloc's block: unseen


def test_our_c_puts_its_own_maps_against_the_guard_page() -> None:
    """bitmap_new's array and a reallocation by bitmap_zero_extend touch the guard page set
    (after: one word past the last faults; before: one word before the first)."""
    import ctypes
    import faulthandler

    from recvmap.qemu_ref import load
    from recvmap.qemu_ref.loader import set_guard

    lib = load(bits=64)
    try:
        for side in ("after", "before"):
            set_guard(side)
            a = lib.bitmap_new(64 * 3)
            b = lib.bitmap_zero_extend(lib.bitmap_new(64), 64, 64 * 5)
            for arr, n in ((a, 3), (b, 5)):
                outside = arr.address + 8 * n if side == "after" else arr.address - 8
                pid = os.fork()
                if pid == 0:
                    faulthandler.disable()
                    ctypes.string_at(outside, 8)
                    os._exit(0)
                _, status = os.waitpid(pid, 0)
                assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV, side
            assert bytes(b.view()) == bytes(40)  # the added words zeroed, as the ABI says
            a.free()
            b.free()
    finally:
        set_guard(None)


# --- the pytest plugin ---------------------------------------------------------------------


def plugin(
    tmp_path: Path, lib: Path, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """pytest with the plugin (this venv's entry point) in an empty project."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RECVMAP_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--recvmap-impl",
         str(lib), "--recvmap-out", str(tmp_path / "out"), *args],
        capture_output=True, text=True, timeout=timeout, cwd=project, env=env,
    )  # fmt: skip


@needs_gcc
def test_the_plugin_names_a_crash_with_program_reproducer_and_replay(tmp_path: Path) -> None:
    """A segfault said only "crashed (SIGSEGV) on this program", with no program,
    reproducer or replay command."""
    proc = plugin(tmp_path, library("segv"), "-k", "fuzz and bitmap", timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    text = proc.stdout
    assert "crashed (SIGSEGV)" in text and "confirmed alone" in text, text
    assert re.search(r"^program: bitmap, 64-bit words .*: .*\(", text, re.M), text
    assert re.search(r"^reproducer: \S+\.json$", text, re.M), text
    replay = re.search(r"^replay it: (.*)$", text, re.M)
    assert replay and "--impl" in replay[1], text
    again = run_printed(replay[1])
    assert again.returncode == 1 and "crashed (SIGSEGV)" in again.stdout, again.stdout


@needs_gcc
@pytest.mark.slow
def test_the_plugins_fuzz_item_with_a_hanging_library_ends(tmp_path: Path) -> None:
    """`pytest --recvmap-impl LIB -k fuzz` with a hanging library never finished (the fuzz
    item waited with no timeout). Now: a HANG, confirmed alone, with its reproducer."""
    t0 = time.monotonic()
    proc = plugin(tmp_path, library("hang"), "-k", "fuzz and bitmap", timeout=300)
    took = time.monotonic() - t0
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "HANG: an input ran longer than 5 s" in proc.stdout, proc.stdout
    assert "confirmed alone: still running after 30 s alone" in proc.stdout, proc.stdout
    assert re.search(r"^replay it: recvmap replay --impl ", proc.stdout, re.M), proc.stdout
    assert took < 5 + 5 + 30 + 60, f"{took:.0f} s"


# --- reports: JUnit's replay command, the JSON summary of every outcome ----------------------


@needs_gcc
def test_the_junit_failure_replays_as_printed(tmp_path: Path) -> None:
    """JUnit's replay command left out --impl: run as written, it passed."""
    lib = library("mask")
    junit = tmp_path / "j.xml"
    proc = fuzz(tmp_path, "--impl", str(lib), "--target", "bitmap", "--max-time", "30",
                "--seed", "1", "--out", str(tmp_path / "o"), "--junit", str(junit))  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert failures, junit.read_text()
    command = re.search(r"^replay it: (.*)$", failures[0].text or "", re.M)
    assert command and f"--impl {lib}" in command[1], failures[0].text
    again = run_printed(command[1])
    assert again.returncode == 1 and "diverges" in again.stdout, again.stdout + again.stderr


def _outcomes(tmp_path: Path) -> dict[str, object]:
    """A Result of each outcome, as a campaign ends with it."""
    from recvmap.fuzz.campaign.jobs import Job
    from recvmap.fuzz.campaign.result import Result

    def result(**kw: object) -> Result:
        job = Job("bitmap/64", "bitmap", 64, 1, 2.0, {}, [], tmp_path / "s", tmp_path / "l")
        job.stats = {"programs": 10, "ops": 100, "cells": {"widths": ["64"]}}
        r = Result([job], [], 2.0, 1, "qemu_ref")
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    vector = str(tmp_path / "v.json")
    hang = {
        "job": "bitmap/64", "input": "hang.input", "timeout": 1.0, "vector": vector,
        "replay": f"recvmap replay {vector}", "confirmed": True, "alone": "still running",
    }  # fmt: skip
    return {
        "clean": result(),
        "divergence": result(
            divergences=[
                {
                    "job": "bitmap/64",
                    "vector": vector,
                    "description": "op #0 ...",
                    "replay": f"recvmap replay {vector}",
                    "alone": "its replay fails",
                }
            ]
        ),  # fmt: skip
        "crash": result(
            crashes=[
                {
                    "job": "bitmap/64",
                    "returncode": -11,
                    "artifact": "crash-1",
                    "vector": vector,
                    "log": "l",
                    "tail": "",
                    "replay": "r",
                    "alone": "a",
                    "confirmed": True,
                }
            ]
        ),  # fmt: skip
        "hang": result(hangs=[hang]),
        "slow": result(slow=[{**hang, "seconds": 2.0}]),
        "interrupted": result(interrupted=int(signal.SIGTERM)),
        "error": result(
            errors=[
                {"job": "bitmap/64", "error": "the harness ended", "log": "l", "returncode": -6}
            ]
        ),  # fmt: skip
        "unconfirmed": result(unconfirmed=[{"kind": "crash", "job": "bitmap/64", "alone": "ok"}]),
    }


def test_the_json_summary_of_every_outcome_validates(tmp_path: Path) -> None:
    """--json wrote "status": "hang" / "interrupted", which failed the committed schema.
    Each outcome (clean, divergence, crash, hang, slow, interrupted; and recvmap's error, an
    unconfirmed suspicion) validates, with its status."""
    from recvmap.fuzz.campaign.jobs import Config
    from recvmap.fuzz.campaign.report import schema, summary_json
    from recvmap.fuzz.vectors.intake import validate

    want = {"slow": "clean", "unconfirmed": "clean"}
    for outcome, result in _outcomes(tmp_path).items():
        doc = summary_json(result, Config(), ["fuzz"])  # type: ignore[arg-type]
        assert not validate(doc, schema()), (outcome, validate(doc, schema()))
        assert doc["status"] == want.get(outcome, outcome)


# --- exit statuses -------------------------------------------------------------------------


def test_a_malformed_vector_file_exits_2_a_failing_one_1(tmp_path: Path) -> None:
    """A malformed vector file exited 1 from `recvmap replay`, like a divergence."""
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "recvmap-vectors-v1", "version": 1, "testGroups": 3}')
    proc = recvmap("replay", "--model-only", str(broken))
    assert proc.returncode == 2 and re.search(r"^ERROR .*broken\.json", proc.stdout, re.M)
    good = VECTORS / "bitmap-rules.json"
    assert recvmap("replay", "--model-only", str(good), str(broken)).returncode == 2
    wrong = json.loads(good.read_text())
    test = wrong["testGroups"][0]["tests"][0]
    test["results"] = [7 if r is None else r for r in test["results"]] or [7]
    bad = tmp_path / "wrong.json"
    bad.write_text(json.dumps(wrong))
    assert recvmap("replay", "--model-only", str(bad), str(broken)).returncode == 1


def test_every_command_states_the_exit_statuses_of_one_table() -> None:
    """One table (campaign/exit_codes.py) in every --help and in the README."""
    from recvmap.fuzz.campaign import exit_codes
    from recvmap.fuzz.cli import build_parser

    lines = exit_codes.epilog().splitlines()
    commands = next(a for a in build_parser()._actions if isinstance(a.choices, dict)).choices
    for name, parser in commands.items():
        text = parser.format_help()
        assert all(line in text for line in lines), name
    assert {"fuzz", "replay", "history", "mutants", "corpus", "vectors"} <= set(commands)
    readme = (REPO / "README.md").read_text()
    assert exit_codes.markdown() in readme


def test_an_internal_error_is_one_line_exit_3_with_the_log_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """recvmap's own failure is not the implementation's: one line, exit 3, the traceback
    in a file it names."""
    from recvmap.fuzz import cli

    def broken(args: object) -> int:
        raise KeyError("a bug of ours")

    monkeypatch.setitem(cli.COMMANDS, "arches", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert cli.main(["arches"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error" in err, err
    log = re.search(r"traceback in (\S+)$", err)
    assert log and "KeyError" in Path(log[1]).read_text()


# --- replay: a HANG is confirmed alone ------------------------------------------------------


@needs_gcc
def test_a_replay_hang_is_confirmed_alone_a_slow_program_is_not_a_finding(
    tmp_path: Path,
) -> None:
    """A replay's HANG at --timeout was a failing verdict at once: a correct library on a
    loaded machine (or under qemu-user at load 10) failed. It is re-run alone for
    max(4 x --timeout, 30 s): one that completes is SLOW, exit 0."""
    from test_hostile import SLOW_SECONDS, broken

    count = tmp_path / "count"
    prog = {"layer": "bitmap", "bits_per_long": 64, "big_endian": False,
            "arrays": [{"nwords": 2}], "ops": [["bitmap_set", ["@0", 3, 4]]]}  # fmt: skip
    f = tmp_path / "p.json"
    f.write_text(json.dumps(prog))
    env = {**os.environ, "RECVMAP_TEST_SLOW": str(count)}
    proc = subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", "replay", "--impl", str(broken("slow")),
         "--timeout", str(SLOW_SECONDS / 2), str(f)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SLOW: outran --timeout" in proc.stdout and "not a finding" in proc.stdout
