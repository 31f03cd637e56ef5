# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 10: the fuzzer and the model facing broken libraries and bad input.

Each test is one defect of the issue; it failed before the fix it names.
"""

from __future__ import annotations

import faulthandler
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import MASK, MUTANT, alive, descendants, recvmap

from recvmap import pymodel as pm
from recvmap.fuzz.engine.isolate import confirm_budget
from recvmap.pymodel.errors import ArgumentTypeError, PreconditionError
from recvmap.pymodel.ramblock import Side, TargetPage, model_context

# --- #8 the Python API of the model ---------------------------------------------------------


@pytest.mark.parametrize("bad", [b"\x00" * 8, None, "map", [0, 0], 3])
def test_api_non_map_argument_is_type_error_naming_it(bad: object) -> None:
    with pytest.raises(TypeError, match=r"^find_next_bit: addr: expected a bitmap"):
        pm.find_next_bit(bad, 64, 0)  # type: ignore[arg-type]
    m = pm.bitmap_new(64)
    with pytest.raises(TypeError, match=r"^bitmap_and: src2: expected a bitmap"):
        pm.bitmap_and(m, m, bad, 64)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [3.0, True, False, "3", None, 2**70 + 0.5])
def test_api_counts_and_offsets_are_ints_not_bool_or_float(bad: object) -> None:
    m = pm.bitmap_new(64)
    m.set_word(0, 0b1000)
    with pytest.raises(TypeError, match=r"^find_next_bit: size: expected an int"):
        pm.find_next_bit(m, bad, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^find_next_bit: offset: expected an int"):
        pm.find_next_bit(m, 64, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^bitmap_set: nr: expected an int"):
        pm.bitmap_set(m, 1, bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^bitmap_new: nbits: expected an int"):
        pm.bitmap_new(bad)  # type: ignore[arg-type]


def test_api_find_next_bit_float_offset_no_longer_returns_float() -> None:
    m = pm.bitmap_new(64)
    m.set_word(0, 0b1000)
    with pytest.raises(TypeError):
        pm.find_next_bit(m, 3.0, 5)  # type: ignore[arg-type]
    assert pm.find_next_bit(m, 64, 0) == 3


def test_api_keyword_arguments_are_checked_too() -> None:
    m = pm.bitmap_new(64)
    with pytest.raises(TypeError, match="bitmap_set: start"):
        pm.bitmap_set(m, start=1.5, nr=2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bitmap_new: layout"):
        pm.bitmap_new(64, layout="LP64")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [(pm.LP64_LE, pm.ILP32_LE), (pm.LP64_LE, pm.LP64_BE), (pm.ILP32_BE, pm.ILP32_LE)],
)
def test_api_maps_of_different_layouts_rejected(a: pm.Layout, b: pm.Layout) -> None:
    x, y = pm.bitmap_new(64, a), pm.bitmap_new(64, b)
    # Before: bitmap_equal(LP64 map, ILP32 map, 64) returned 1.
    with pytest.raises(PreconditionError, match=r"^bitmap_equal: src2: .*share one host"):
        pm.bitmap_equal(x, y, 64)
    before = (x.image(), y.image())
    with pytest.raises(PreconditionError, match="bitmap_or: src1"):
        pm.bitmap_or(x, y, x, 64)
    assert (x.image(), y.image()) == before


def test_api_rejected_call_changes_nothing_zero_extend() -> None:
    m = pm.bitmap_new(200)
    pm.bitmap_set(m, 0, 200)
    image = m.image()
    with pytest.raises(TypeError, match="bitmap_zero_extend: old_nbits"):
        pm.bitmap_zero_extend(m, 3.0, 100)  # type: ignore[arg-type]
    assert m.image() == image and m.nwords == 4  # before: shrunk to 2 words, then raised


def test_api_type_errors_pickle_and_name_the_argument() -> None:
    try:
        pm.test_bit(1, None)  # type: ignore[arg-type]
    except ArgumentTypeError as err:
        again = pickle.loads(pickle.dumps(err))
        assert isinstance(again, TypeError) and str(again) == str(err)
        assert (again.function, again.argument) == ("test_bit", "addr")
    else:
        pytest.fail("no TypeError")


def _stream() -> tuple[bytes, object, object]:
    page = TargetPage.for_target("x86_64")
    dst = model_context(page)
    rb = dst.ram_block_add("pc.ram", 1 << 20)
    dst.ramblock_recv_map_init()
    dst.ramblock_recv_bitmap_set_range(rb, rb.host + 4096, 3)
    stream, _ = dst.ramblock_recv_bitmap_send("pc.ram")
    src = model_context(page, side=Side.SOURCE)
    src_rb = src.ram_block_add("pc.ram", 1 << 20)
    src.ram_list_init_bitmaps()
    return stream, src, src_rb


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_api_bytes_like_streams_accepted(wrap: type) -> None:
    stream, src, src_rb = _stream()
    assert src.ram_dirty_bitmap_reload(src_rb, wrap(stream)) == 0  # type: ignore[attr-defined]
    nbits = 256
    # pages 1..3 were received: they are the only ones not dirty
    assert pm.bitmap_count_one(src_rb.bmap, nbits) == nbits - 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["stream", None, 12])
def test_api_non_bytes_stream_is_type_error(bad: object) -> None:
    _, src, src_rb = _stream()
    with pytest.raises(TypeError, match="ram_dirty_bitmap_reload: stream: expected a bytes-like"):
        src.ram_dirty_bitmap_reload(src_rb, bad)  # type: ignore[attr-defined]


# --- #6 input surfaces ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


def one_line_exit_2(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--seed", "99999999999999999999999"], ["--seed", "2**64-1"]),
        (["--seed", "-1"], ["--seed"]),
        (["--max-time", "inf"], ["--max-time", "at most", "not inf"]),
        (["--max-time", "nan"], ["--max-time", "at most", "not nan"]),
        (["--max-time", "-3"], ["--max-time"]),
        (["--jobs", "1000"], ["--jobs", "per CPU"]),
        (["--out", "/etc/passwd"], ["--out", "not a folder"]),
        (["--corpus", "/etc/passwd"], ["--corpus", "not a folder"]),
        (["--json", "/proc/nonexistent/x.json"], ["--json", "cannot write"]),
        (["--json", "/tmp"], ["--json", "is a folder"]),
    ],
)
def test_fuzz_bad_arguments_one_line_exit_2(argv: list[str], words: list[str]) -> None:
    # --max-time 1 --runs 1: if the check failed to stop it, the run would still be short
    proc = recvmap("fuzz", "--quiet", "--max-time", "1", "--runs", "1", *argv, timeout=60)
    one_line_exit_2(proc, *words)


@pytest.mark.parametrize("dest", ["/proc/recvmap-export", "/etc/passwd"])
def test_vectors_export_to_bad_place_one_line_exit_2(dest: str) -> None:
    one_line_exit_2(recvmap("vectors", "export", dest), "recvmap vectors export", dest)


def test_replay_skips_non_vector_json_with_a_note() -> None:
    files = sorted(str(p.relative_to(ROOT)) for p in VECTORS.glob("*.json"))
    proc = recvmap("replay", "--model-only", *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "NOTE tests/vectors/schema.json: not a recvmap-vectors-v1 file" in proc.stdout
    assert "NOTE tests/vectors/recovery_stream_v1.json" in proc.stdout
    assert re.search(r"^[1-9]\d* passed, 0 failed", proc.stdout, re.M)


def test_replay_of_nothing_did_not_run(tmp_path: Path) -> None:
    proc = recvmap("replay", "--model-only", str(tmp_path))
    assert proc.returncode == 0 and "did not run" in proc.stderr
    proc = recvmap("replay", "--model-only", "--strict", str(tmp_path))
    assert proc.returncode == 2 and "did not run" in proc.stderr  # nothing to replay given


_GOOD = {
    "layer": "bitmap",
    "bits_per_long": 64,
    "big_endian": False,
    "arrays": [{"nwords": 2, "words": {"1": "0x8000000000000000"}}],
    "ops": [["bitmap_set", ["@0", 3, 70]], ["find_next_bit", ["@0", 128, 0]]],
}


def _bad(**change: object) -> str:
    obj = json.loads(json.dumps(_GOOD))
    obj.update(change)
    return json.dumps(obj)


HOSTILE_INPUTS = {
    "misspelled function": _bad(ops=[["bitmap_sett", ["@0", 3, 70]]]),
    "arrays is a number": _bad(arrays=5),
    "wrong arity": _bad(ops=[["bitmap_set", ["@0", 3]]]),
    "too many arguments": _bad(ops=[["find_next_bit", ["@0", 3, 4, 5]]]),
    "dangling array reference": _bad(ops=[["bitmap_set", ["@7", 3, 70]]]),
    "reference where an int goes": _bad(ops=[["bitmap_set", ["@0", "@0", 70]]]),
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "deep nesting in a program": _bad(
        arrays=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
    ),
    "nwords 2**62": _bad(arrays=[{"nwords": 2**62}]),
    "2**34 words": _bad(arrays=[{"nwords": 2**34}]),
    "word index past the array": _bad(arrays=[{"nwords": 2, "words": {"9": "0x1"}}]),
    "word wider than the layout": _bad(arrays=[{"nwords": 2, "words": {"0": "0x1" + "0" * 16}}]),
    "unicode digits": _bad(arrays=[{"nwords": 2, "words": {"\u00b2": "0x1"}}]),
    "not JSON": "{'ops': }",
    "alloc of other bits than the array": _bad(
        arrays=[{"nwords": 2, "words": {}, "alloc": {"nbits": 200}}]
    ),
    "alloc old word past the old array": _bad(
        arrays=[{"nwords": 2, "alloc": {"nbits": 100, "old_nbits": 64, "old": {"1": "0x1"}}}]
    ),
    "alloc whose words are not the model's": _bad(
        arrays=[{"nwords": 2, "words": {"1": "0x1"}, "alloc": {"nbits": 100}}]
    ),
    "ram without setup": _bad(layer="ram"),
    "stream_append of -2**70 bytes": json.dumps(
        {
            "layer": "ram",
            "bits_per_long": 64,
            "big_endian": False,
            "setup": {
                "target": "x86_64",
                "target_page_bits": 12,
                "host": "x86_64",
                "blocks": [
                    {"idstr": "pc.ram", "host": 1 << 30, "used_length": 4096}
                    | {"max_length": 4096, "page_size": 4096}
                ],
            },
            "ops": [["stream_append", [-(2**70), 1]]],
        }
    ),
    "bare program rejected early": _bad(
        ops=[["find_next_bit", ["@0", 2**40, 0]], ["find_next_bit", ["@0", 128, 0]]]
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_INPUTS))
def test_parser_refuses_hostile_input_with_vector_error(name: str) -> None:
    from recvmap.fuzz.vectors.harness_parser import check_text

    assert check_text(json.dumps(_GOOD)) == "ok"
    assert check_text(HOSTILE_INPUTS[name]) == "rejected"


def test_replay_cli_hostile_file_is_one_error_line(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(HOSTILE_INPUTS["nwords 2**62"])
    proc = recvmap("replay", "--model-only", str(f))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr  # bad input, not a finding
    assert re.search(r"^ERROR .*p\.json.*arrays\[0\].*the cap", proc.stdout, re.M)


def test_replay_size_caps_are_configurable(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(_GOOD))
    assert recvmap("replay", "--model-only", str(f)).returncode == 0
    proc = recvmap("replay", "--model-only", "--max-words", "1", str(f))
    assert proc.returncode == 2 and "more than 1 words" in proc.stdout
    proc = recvmap("replay", "--model-only", "--max-ops", "1", str(f))
    assert proc.returncode == 2 and "more than 1 operations" in proc.stdout
    proc = recvmap("replay", "--model-only", "--max-file-bytes", "10", str(f))
    assert proc.returncode == 2 and "more than the cap of 10" in proc.stdout


PARSER_FUZZ_SECONDS = float(os.environ.get("RECVMAP_PARSER_FUZZ_SECONDS", "60"))


@pytest.mark.slow
def test_parser_harness_random_json_no_unexpected_exception() -> None:
    """The replay/vector parser harness, random-JSON mode: fixed seed, bounded time."""
    from recvmap.fuzz.vectors.harness_parser import random_run

    stats = random_run(seed=10, seconds=PARSER_FUZZ_SECONDS)
    assert stats.runs > 100
    # the mutations reach every outcome, so the run tests the parser, not only its front
    assert {"ok", "rejected", "skipped"} <= set(stats.outcomes), stats.outcomes
    assert not stats.unexpected, stats.unexpected[0][1]


# --- broken libraries, built here from one-line edits of our C ----------------------------

needs_gcc = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc builds the broken libraries"
)
SET_HEAD = (
    "void bitmap_set(qref_ulong *map, qref_long start, qref_long nr)\n{\n"
    "    qref_ulong *p;\n    qref_long end;\n    int room;\n    qref_ulong mask;\n"
)
# bitmap_set never returns (volatile: the compiler may not drop the loop)
HANG = (SET_HEAD, SET_HEAD + "    for (volatile int spin = 1; spin;) {\n    }\n")
# bitmap_set prints a fake libFuzzer statistics line on stdout first
CHATTY = (
    SET_HEAD,
    SET_HEAD
    + '    printf("#99999\\tNEW    cov: 99999 ft: 99999 corp: 1/1b\\n");\n    fflush(stdout);\n',
)
# bitmap_set sleeps SLOW_SECONDS in the first call of a process, in the first two processes
# that call it (a count kept in the file $RECVMAP_TEST_SLOW): slow but correct, and fast
# once the fuzzer's job and the re-run alone have seen it (the restarted job is not slowed)
SLOW_SECONDS = 2
SLOW = (
    SET_HEAD,
    SET_HEAD
    + "    static int called;\n"
    + "    if (!called++) {\n"
    + '        const char *name = getenv("RECVMAP_TEST_SLOW");\n'
    + '        FILE *count = name ? fopen(name, "a") : NULL;\n'
    + "        long seen = count ? ftell(count) : 2;\n"
    + "        if (count) {\n"
    + "            fputc('x', count);\n"
    + "            fclose(count);\n"
    + "        }\n"
    + "        if (seen < 2) {\n"
    + f"            struct timespec nap = {{{SLOW_SECONDS}, 0}};\n"
    + "            nanosleep(&nap, NULL);\n"
    + "        }\n"
    + "    }\n",
)
# find_next_bit reads the word after the last one it may read (often past the array)
NEXT_END = "        if (size - base <= QREF_BITS_PER_LONG) {\n            return size;\n        }"
OOB = (
    NEXT_END,
    "        if (size - base <= QREF_BITS_PER_LONG) {\n"
    "            return addr[BIT_WORD(base) + 1] == 0x5a5a5a5aUL ? 0 : size;\n        }",
)


def broken(name: str) -> Path:
    from recvmap.fuzz.subjects.build import build_library

    edits = {
        "hang": {"bitmap.c": [HANG]},
        "chatty": {
            "bitmap.c": [("#include <string.h>", "#include <string.h>\n#include <stdio.h>"), CHATTY]
        },
        "oob": {"bitops.c": [OOB]},
        "slow": {
            "bitmap.c": [
                (
                    "#undef NDEBUG",
                    "#define _POSIX_C_SOURCE 200809L\n#include <stdio.h>\n#include <time.h>\n"
                    "#undef NDEBUG",
                ),
                SLOW,
            ]
        },
        "mask": {"qemu_ref.h": [(MASK, MUTANT)]},
    }[name]
    return build_library(64, edits)


def start_fuzz(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.Popen(
        [sys.executable, "-m", "recvmap.fuzz.cli", "fuzz", "--quiet", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )


def fuzz_library(tmp_path: Path, lib: Path, max_time: str, *args: str) -> subprocess.Popen[str]:
    """``recvmap fuzz`` of the bitmap layer of the shared library ``lib``."""
    return start_fuzz(
        tmp_path, "--impl", str(lib), "--target", "bitmap", "--max-time", max_time, *args
    )


@needs_gcc
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_kill_mid_run_leaves_no_child_prints_summary(
    tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    proc = start_fuzz(tmp_path, "--max-time", "120", "--out", str(tmp_path / "out"))
    try:
        children: set[int] = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(children) < 2:  # both harnesses up
            time.sleep(0.5)
            children = descendants(proc.pid)
        assert len(children) >= 2, "the campaign started no harness"
        time.sleep(2)
        children = descendants(proc.pid)
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == code, err
    assert took < 3, f"{sig.name}: exit after {took:.1f} s"
    survivors = [p for p in children if alive(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"{len(survivors)} children survived {sig.name}"
    assert "recvmap fuzz: qemu_ref against the model" in out  # the summary so far
    assert f"interrupted by {sig.name}" in out and "INTERRUPTED" in out
    assert "Traceback" not in err
    assert not list(tmp_path.glob("recvmap-fuzz-*")), "temporary folder left behind"


@pytest.mark.slow  # about 40 s: the hang is confirmed alone twice (fuzz, then replay)
@needs_gcc
def test_hanging_library_is_a_hang_with_reproducer_and_replay_says_hang(tmp_path: Path) -> None:
    lib = broken("hang")
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = fuzz_library(tmp_path, lib, "8", "--timeout", "1", "--out", str(out))
    stdout, stderr = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 1, stdout + stderr
    # confirmed and written by --max-time + --timeout + 2 s, give or take a second
    assert took <= 8 + 1 + 2 + 1.5, f"HANG reported after {took:.1f} s"
    # re-run alone first (for what --max-time left of the 30 s it would get)
    assert re.search(r"^HANG in bitmap/64: .* still running after [\d.]+ s alone", stdout, re.M)
    vectors = sorted(out.glob("hang-bitmap-*.json"))  # one per job that hung
    assert vectors and list(out.glob("hang-bitmap-*.input"))
    vector = vectors[0]
    m = re.search(r"^replay it: (.*)$", stdout, re.M)
    assert m and f"--impl {lib}" in m[1]
    t0 = time.monotonic()
    proc2 = recvmap("replay", "--impl", str(lib), "--timeout", "2", str(vector), timeout=90)
    # a HANG is confirmed by a re-run alone (isolate.confirm_budget), then said
    assert time.monotonic() - t0 < 2 + confirm_budget(2) + 15
    assert proc2.returncode == 1 and "HANG" in proc2.stdout, proc2.stdout + proc2.stderr


@needs_gcc
def test_slow_input_is_confirmed_alone_as_slow_not_a_hang(tmp_path: Path) -> None:
    """Issue 10, defect 1: an input slower than --timeout that completes when re-run alone
    is SLOW (listed with its time and reproducer, exit 0), not a HANG, and the job goes on.
    Before, it was a HANG (exit 1)."""
    lib = broken("slow")
    out, report = tmp_path / "out", tmp_path / "s.json"
    count = tmp_path / "slow-count"
    env = {**os.environ, "TMPDIR": str(tmp_path), "RECVMAP_TEST_SLOW": str(count)}
    argv = ["--impl", str(lib), "--target", "bitmap", "--max-time", "12", "--timeout", "1"]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "recvmap.fuzz.cli", "fuzz", "--quiet", *argv]
        + ["--engine", "random", "--runs", "200", "--out", str(out), "--json", str(report)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HANG" not in proc.stdout
    m = re.search(
        r"^SLOW in bitmap/64: an input outran --timeout 1 s; alone it completes in ([\d.]+) s",
        proc.stdout,
        re.M,
    )
    assert m and SLOW_SECONDS - 0.5 <= float(m[1]) < SLOW_SECONDS + 5, proc.stdout
    assert count.read_text() == "xx" + "x" * proc.stdout.count("started again as"), proc.stdout
    assert took < 12 + 1 + 2 + 1.5, f"--max-time 12 ended after {took:.1f} s"
    summary = json.loads(report.read_text())
    from recvmap.fuzz.campaign.report import schema
    from recvmap.fuzz.vectors.intake import validate

    assert not validate(summary, schema())
    assert summary["status"] == "clean" and not summary["hangs"]
    (slow,) = summary["slow"]
    assert slow["seconds"] >= SLOW_SECONDS - 0.5 and slow["vector"]
    # the job went on: started again, and compared programs after the slow input
    again = [j for j in summary["jobs"] if j["name"] == "bitmap/64+1"]
    assert again and again[0]["programs"] > 0, summary["jobs"]
    # the printed command replays the reproducer (and passes: slow is not wrong) with the
    # re-run's --timeout: the default 5 s would call a slower input a HANG
    words = shlex.split(slow["replay"])
    assert words[-3:-1] == ["--timeout", "30"] and words[-1] == slow["vector"], words
    replay = recvmap(*words[1:], timeout=60)
    assert replay.returncode == 0 and "1 passed" in replay.stdout, replay.stdout + replay.stderr


@needs_gcc
def test_oob_reading_library_caught_on_every_seed(tmp_path: Path) -> None:
    """With the guard page the read past the array faults every time (before: ~1.5%)."""
    from recvmap.fuzz.campaign.harness import Harness, run_random
    from recvmap.fuzz.subjects.impls import Subject

    lib = broken("oob")
    caught = []
    for seed in range(20):
        pid = os.fork()
        if pid == 0:  # a crash must not take pytest with it
            faulthandler.disable()  # the expected SIGSEGV needs no traceback
            try:
                h = Harness("bitmap", Subject(lib, 64), out_dir=tmp_path, timeout=None)
                run_random(h, seconds=10, seed=seed)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        caught.append(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV)
    assert all(caught), f"caught on {sum(caught)} of 20 seeds"


@needs_gcc
def test_oob_replay_names_the_bad_access(tmp_path: Path) -> None:
    lib = broken("oob")
    prog = dict(_GOOD, arrays=[{"nwords": 1}], ops=[["find_next_bit", ["@0", 64, 0]]])
    f = tmp_path / "p.json"
    f.write_text(json.dumps(prog))
    proc = recvmap("replay", "--impl", str(lib), str(f))
    assert proc.returncode == 1
    assert "crashed (SIGSEGV)" in proc.stdout and "past an array" in proc.stdout


@needs_gcc
def test_replay_command_after_impl_divergence_reproduces_verbatim(tmp_path: Path) -> None:
    lib = broken("mask")
    proc = fuzz_library(tmp_path, lib, "30", "--seed", "1", "--out", str(tmp_path / "out"))
    stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stdout + stderr
    m = re.search(r"^replay it: (recvmap replay .*)$", stdout, re.M)
    assert m, stdout
    words = shlex.split(m[1])
    assert words[2:4] == ["--impl", str(lib)]
    again = recvmap(*words[1:], timeout=120)  # exactly the printed command
    assert again.returncode == 1, again.stdout + again.stderr
    assert "diverges" in again.stdout and "WARNING" not in again.stdout
    assert re.search(r"word \d+ in memory order: implementation [0-9a-f]+, model", again.stdout)
    # another library under the reproducer's name: replay warns
    vector = words[-1]
    other = recvmap("replay", "--impl", str(broken("oob")), vector, timeout=120)
    assert "WARNING" in other.stdout and "sha256" in other.stdout
    ours = recvmap("replay", vector, timeout=120)
    assert "WARNING" in ours.stdout and f"--impl {lib}" in ours.stdout


@needs_gcc
@pytest.mark.extra("fuzz")  # --engine atheris
def test_library_stdout_cannot_fake_statistics(tmp_path: Path) -> None:
    lib = broken("chatty")
    proc = fuzz_library(
        tmp_path,
        lib,
        "4",
        "--engine",
        "atheris",
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "s.json"),
    )
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stdout + stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["totals"]["coverage"] < 99_999
    assert summary["totals"]["programs"] > 0


def test_nondeterministic_divergence_is_reported_not_asserted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A divergence that does not come back on the re-run: before, `assert divergence is
    not None` fired in Harness.report."""
    from recvmap.fuzz.campaign import harness as hmod
    from recvmap.fuzz.engine import Divergence, DivergenceError
    from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
    from recvmap.fuzz.subjects.impls import Subject
    from recvmap.pymodel.words import LP64_LE

    h = hmod.Harness("bitmap", Subject(None, 64), out_dir=tmp_path, timeout=None)
    program = Program(LP64_LE, [ArraySpec(2)], [Op("find_next_bit", (Ref(0), 128, 0))])
    once = Divergence(0, program.ops[0], "result", 128, 5)
    monkeypatch.setattr(hmod, "first_divergence", lambda p, s: ([], None))
    with pytest.raises(DivergenceError, match="^NON-DETERMINISTIC: .*returned 5"):
        h.report(program, once)
    (kept,) = tmp_path.glob("nondeterministic-bitmap-*.json")
    assert "find_next_bit" in kept.read_text()


def test_job_that_ran_nothing_is_not_clean(tmp_path: Path) -> None:
    from recvmap.fuzz.campaign.jobs import Job
    from recvmap.fuzz.campaign.result import Result, summary

    job = Job("host/s390x", "host", None, 1, 5.0, {}, [], tmp_path / "s", tmp_path / "l")
    result = Result([job], [], 5.0, 1, "qemu_ref")
    assert result.clean and result.did_not_run == ["host/s390x"]
    assert result.status == "did not run"
    text = summary(result)
    assert "DID NOT RUN" in text and "did not run: host/s390x" in text


def test_every_layer_and_width_fuzzed_from_the_start(tmp_path: Path) -> None:
    """#7: before, the default run's 6 jobs ran 2 at a time in rounds (recovery started at
    half time); now every job runs for (nearly) the whole run."""
    summary = tmp_path / "s.json"
    proc = recvmap(
        "fuzz", "--quiet", "--max-time", "4", "--out", str(tmp_path / "o"), "--json", str(summary)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(summary.read_text())
    names = {(j["layer"], j["word_bits"]) for j in result["jobs"]}
    assert names == {(layer, b) for layer in ("bitmap", "ram", "recovery") for b in (64, 32)}
    for j in result["jobs"]:
        # in rounds a job had at most half the run; started together, each has most of it
        # (the rest is six interpreters starting on two loaded cores)
        assert j["seconds"] >= 0.6 * result["elapsed"], j
        assert j["programs"] > 0, j


def _build_native(out_dir: str) -> str:
    from recvmap.fuzz.subjects.hosts import build

    return str(build("native", out_dir=Path(out_dir)))


def test_host_driver_built_once_under_concurrency(tmp_path: Path) -> None:
    """#9: two --host all jobs built the same driver under one temporary name."""
    from concurrent.futures import ProcessPoolExecutor

    from recvmap.fuzz.subjects.hosts import host_status

    if host_status("native"):
        pytest.skip(f"native host: {host_status('native')}")
    with ProcessPoolExecutor(4) as pool:
        paths = list(pool.map(_build_native, [str(tmp_path)] * 4))
    assert len(set(paths)) == 1 and Path(paths[0]).is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".build-")]
    assert not leftovers
    stamp = (tmp_path / "qref-replay.key").stat().st_mtime_ns
    assert _build_native(str(tmp_path)) == paths[0]  # reused, not rebuilt
    assert (tmp_path / "qref-replay.key").stat().st_mtime_ns == stamp


def test_program_whose_only_operation_is_out_of_domain_did_not_run(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(dict(_GOOD, ops=[["bitmap_set", ["@0", -1, 3]]])))
    proc = recvmap("replay", str(f))
    assert proc.returncode == 0 and "SKIP" in proc.stdout and "did not run" in proc.stdout
    assert "0 passed" in proc.stdout and "did not run" in proc.stderr
    assert recvmap("replay", "--strict", str(f)).returncode == 2  # nothing replayable given


@pytest.mark.parametrize(("guard", "where"), [("after", "past the end"), ("before", "before")])
def test_guard_page_faults_one_word_past_the_array(guard: str, where: str) -> None:
    """#4: the array touches an inaccessible page on the side ``guard`` names."""
    import ctypes

    from recvmap.qemu_ref.loader import CWords

    for nwords in (0, 1, 3, 512, 513):
        w = CWords(ctypes.c_uint64, nwords, 64, guard=guard)
        w.load_image(b"\xab" * (8 * nwords))  # every word of the array is usable
        address = ctypes.addressof(w.array)
        outside = address + 8 * nwords if guard == "after" else address - 8
        pid = os.fork()
        if pid == 0:
            faulthandler.disable()
            ctypes.string_at(outside, 8)  # one word past the array
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV, (nwords, where)


# --- reproducers of huge maps (issue 10 follow-up, defect 2) ------------------------------


def _many_sends(sends: int) -> dict[str, object]:
    """A recovery program over a 1 GiB block of 4K pages (a 2^18-bit map, a 32 KiB
    stream) sent ``sends`` times, then reloaded by the source."""
    host = 1 << 40
    return {
        "layer": "recovery",
        "bits_per_long": 64,
        "big_endian": False,
        "setup": {
            "target": "x86_64",
            "target_page_bits": 12,
            "host": "x86_64",
            "blocks": [
                {"idstr": "pc.ram", "host": host, "used_length": 1 << 30}
                | {"max_length": 1 << 30, "page_size": 4096}
            ],
            "sender": {"bits_per_long": 64, "big_endian": False},
        },
        "ops": [
            ["ramblock_recv_map_init", []],
            ["ram_list_init_bitmaps", []],
            ["ramblock_recv_bitmap_set_range", ["@0", host + (5 << 12), 1000]],
            *[["ramblock_recv_bitmap_send", ["pc.ram"]]] * sends,
            ["ram_dirty_bitmap_reload", ["@0"]],
        ],
    }


def test_reproducer_of_a_large_stream_is_compact_and_replays(tmp_path: Path) -> None:
    """Every sent stream was recorded as hex: a 2^26-bit map sent 20 times made a 285 MB
    reproducer, over replay's 64 MiB cap. Now a long stream is {size, sha256, runs}."""
    from recvmap.fuzz.engine import Divergence
    from recvmap.fuzz.program import Program
    from recvmap.fuzz.vectors.files import expand_runs, load_file, write_divergence

    program = Program.from_json(_many_sends(8))
    found = Divergence(len(program.ops) - 1, program.ops[-1], "crash", None, "slow")
    path = write_divergence(program, found, "qemu_ref", tmp_path, "slow", comment="8 sends")
    size = path.stat().st_size
    assert size < 16_000, f"{size} bytes (8 streams of 32 KiB as hex: 524,000+)"
    obj = json.loads(path.read_text())
    assert obj["version"] == 2  # a compact result: readers of version 1 cannot compare it
    stream = obj["testGroups"][0]["tests"][0]["results"][3][0]
    # worked out from the format (facts section 5): be64 size in bytes, the map as
    # little-endian longs with pages 5..1004 set, the be64 end mark
    want = (
        (1 << 15).to_bytes(8, "big")
        + bytes([0xE0]) + b"\xff" * 124 + bytes([0x1F])
        + bytes((1 << 15) - 126)
        + bytes.fromhex("0123456789abcdef")
    )  # fmt: skip
    assert stream["size"] == len(want) and expand_runs(stream["runs"]) == want
    proc = recvmap("replay", str(path), timeout=120)  # the model and our C
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout + proc.stderr
    # teeth: another digest is a failing vector, a run that does not add up is refused
    stream["sha256"] = "0" * 64
    path.write_text(json.dumps(obj))
    (case,) = load_file(path)
    from recvmap.fuzz.vectors.files import VectorError, check_model

    assert "vector says" in (check_model(case) or ""), check_model(case)
    stream["runs"][0][1] += 1
    path.write_text(json.dumps(obj))
    with pytest.raises(VectorError, match="adding up to size"):
        load_file(path)


def test_reproducer_past_its_deadline_is_written_and_says_what_was_cut(tmp_path: Path) -> None:
    """Defect 3: writing a reproducer kept a run going to 193 s against --max-time 120
    (the release range runs the model at every boundary release). Past the deadline the
    range is the releases no rule change separates from the program's, and the vector
    says it was cut short."""
    from recvmap.fuzz.engine import Divergence
    from recvmap.fuzz.program import Program
    from recvmap.fuzz.vectors.files import write_divergence
    from recvmap.pymodel.releases import DEFAULT_RELEASE, boundaries

    program = Program.from_json(_many_sends(1))
    found = Divergence(len(program.ops) - 1, program.ops[-1], "crash", None, "slow")
    whole = json.loads(write_divergence(program, found, "C", tmp_path / "a", "hang").read_text())
    assert whole["testGroups"][0]["release"] == ">=v3.0.0"  # the recovery stream's first
    t0 = time.monotonic()
    path = write_divergence(program, found, "C", tmp_path / "b", "hang", deadline=t0)
    cut = json.loads(path.read_text())
    own = max(r for r in boundaries() if r <= DEFAULT_RELEASE)
    assert cut["testGroups"][0]["release"] == f">={own}"
    assert cut["testGroups"][0]["tests"][0]["comment"].endswith(
        "[cut short by --max-time: release range]"
    )


def test_a_job_started_again_skips_the_slow_inputs_its_corpus_may_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted job shares its corpus folder: without RECVMAP_SKIP it met the slow input
    first thing again (measured: every restart of a campaign seeded with one)."""
    import hashlib

    from recvmap.fuzz.campaign.harness import Harness
    from recvmap.fuzz.campaign.harness_env import HarnessConfig

    slow, other = b"\x01" * 300, b"\x02" * 300
    monkeypatch.setenv("RECVMAP_SKIP", hashlib.sha256(slow).hexdigest())
    monkeypatch.setenv("RECVMAP_OUT", str(tmp_path))
    h = Harness.from_config("bitmap", HarnessConfig.from_env())
    h.one_input(slow)
    assert h.programs == 0
    h.one_input(other)
    assert h.programs == 1


@needs_gcc
def test_a_divergence_found_near_the_end_is_written_unminimized_not_lost(
    tmp_path: Path,
) -> None:
    """Defect 3 for divergences: the harness minimized with no deadline, so a divergence
    found near --max-time was killed with its job, unreported. Past RECVMAP_DEADLINE the
    program found is written as it is, and says so; before it, it is minimized."""
    from recvmap.fuzz.campaign.harness import Harness
    from recvmap.fuzz.engine import DivergenceError
    from recvmap.fuzz.program import Program
    from recvmap.fuzz.subjects.impls import Subject
    from recvmap.fuzz.vectors.files import load_file

    subject = Subject(broken("mask"), 64)
    program = Program.from_json(
        dict(_GOOD, arrays=[{"nwords": 2}], ops=[["bitmap_set", ["@0", 3, 4]]] * 2)
    )
    for deadline, out, ops in ((time.time() - 1, "late", 2), (None, "early", 1)):
        h = Harness("bitmap", subject, out_dir=tmp_path / out, timeout=None, deadline=deadline)
        with pytest.raises(DivergenceError) as err:
            h.report(program)
        (case,) = load_file(err.value.path)  # type: ignore[attr-defined]
        assert len(case.program.ops) == ops
        late = "[cut short by --max-time: minimization, release range]"
        assert case.test["comment"].endswith(late) == (deadline is not None), case.test["comment"]


@needs_gcc
def test_a_divergence_is_on_record_before_its_minimization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a campaign the finding is in the statistics file, as found, before minimizing:
    a job stopped during a long minimization (libFuzzer's -timeout, the campaign's end)
    still reports its divergence. Before, nothing was written until the end."""
    from recvmap.fuzz.campaign import harness as hmod
    from recvmap.fuzz.program import Program
    from recvmap.fuzz.subjects.impls import Subject
    from recvmap.fuzz.vectors.files import load_file

    def killed(*_: object) -> None:
        raise SystemExit("stopped while minimizing")

    monkeypatch.setattr(hmod, "minimize", killed)
    stats = tmp_path / "stats.json"
    h = hmod.Harness(
        "bitmap", Subject(broken("mask"), 64), out_dir=tmp_path, stats_path=stats,
        timeout=None, deadline=time.time() + 60,
    )  # fmt: skip
    program = Program.from_json(
        dict(_GOOD, arrays=[{"nwords": 2}], ops=[["bitmap_set", ["@0", 3, 4]]])
    )
    with pytest.raises(SystemExit):
        h.report(program)
    record = json.loads(stats.read_text())
    assert record["description"].endswith("[not minimized yet]")
    (case,) = load_file(record["divergence"])
    assert case.program.ops == program.ops
