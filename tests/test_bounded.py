# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 22, part 3: bounded work on any input.

One test per case of the issue's "Unbounded work on input" and "Smaller" lists; each failed
before the commit that bounded it (25d7563 .. 97f7cf6): a file deeper than Python's
recursion, over the size cap, a device, a FIFO or a file of /proc was read (or blocked)
before any check; a number option had no range; a tree in a folder named with a space or
``$`` did not build; corpus merge took a file or a read-only folder as OUT; --workers had
no cap; killed outright, recvmap left its harnesses fuzzing and its folder behind; ctypes
cut an integer to its C type; load(bits="64") hid the str; a library's stdout passed for
recvmap's; a tree's build error quoted a file from outside the tree.

A bad input is one line and exit status 2 (``bad_input``): an ERROR line of replay on
stdout, or the command's usage line on stderr, never a traceback. A subprocess ``timeout``
here only stops a test whose input blocks (it is no speed target).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, alive, descendants, recvmap
from qemu_trees import SKIP_REASON, TREES, copy_tree
from test_hostile import _GOOD, SET_HEAD, start_fuzz

from recvmap.fuzz.subjects.build import build_library
from recvmap.pymodel.errors import PreconditionError
from recvmap.qemu_ref import CLibrary, LibraryError, load

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the libraries")
needs_trees = pytest.mark.skipif(not TREES, reason=SKIP_REASON)


def bad_input(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 2, no traceback, and the problem said on exactly one line (replay's
    ERROR line, or a usage line on stderr) holding ``words``; that line."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [line for line in proc.stdout.splitlines() if line.startswith("ERROR ")]
    lines += proc.stderr.strip().splitlines()
    assert len(lines) == 1, out
    for w in words:
        assert w in lines[0], out
    return lines[0]


def a_program(path: Path) -> Path:
    """A small valid bare program of the bitmap layer (it calls bitmap_set)."""
    import json

    path.write_text(json.dumps(_GOOD))
    return path


# --- recvmap replay FILE: kind, size and depth before anything is built ---------------------


@pytest.mark.parametrize("shape", ["object", "array"])
def test_thousand_deep_nesting_is_one_line(tmp_path: Path, shape: str) -> None:
    """Before: a RecursionError traceback from the JSON parser."""
    f = tmp_path / "deep.json"
    f.write_text(
        '{"a":' * 1000 + "1" + "}" * 1000 if shape == "object" else "[" * 1000 + "]" * 1000
    )
    bad_input(recvmap("replay", "--model-only", str(f), timeout=60), str(f))


def test_a_file_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """A sparse file of 1 TiB: reading it (before: the whole file, then the cap) would not
    end here; its size says it is over the cap."""
    f = tmp_path / "huge.json"
    with f.open("wb") as out:
        out.truncate(1 << 40)
    line = bad_input(recvmap("replay", "--model-only", str(f), timeout=60), str(f))
    assert f"{1 << 40} bytes, more than the cap" in line


def _fifo_in_folder(tmp_path: Path) -> tuple[str, str]:
    folder = tmp_path / "vectors"
    folder.mkdir()
    os.mkfifo(folder / "f.json")
    return str(folder), "a FIFO"


def _fifo(tmp_path: Path) -> tuple[str, str]:
    os.mkfifo(tmp_path / "f.json")
    return str(tmp_path / "f.json"), "a FIFO"


SPECIAL_FILES = {
    "/dev/zero": lambda _: ("/dev/zero", "a character device"),
    "/dev/urandom": lambda _: ("/dev/urandom", "a character device"),
    "/proc/self/mem": lambda _: ("/proc/self/mem", "a file of /proc"),
    "a FIFO": _fifo,
    "a folder holding a FIFO named f.json": _fifo_in_folder,
}


@pytest.mark.parametrize("name", sorted(SPECIAL_FILES))
def test_a_file_that_is_not_a_regular_file_is_one_line(tmp_path: Path, name: str) -> None:
    """Before: /dev/zero grew to 5.9 GB, /dev/urandom 2.7 GB, a FIFO blocked for ever,
    /proc/self/mem was an OSError traceback."""
    path, kind = SPECIAL_FILES[name](tmp_path)
    bad_input(recvmap("replay", "--model-only", path, timeout=60), kind)


# --- numbers have ranges ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e300", "2147483647"])
@pytest.mark.parametrize("command", ["fuzz", "replay"])
def test_timeout_out_of_range_is_one_line_naming_the_range(
    tmp_path: Path, command: str, value: str
) -> None:
    """Before: fuzz took both (the harness died: a CRASH), replay 1e300 was an
    OverflowError traceback."""
    if command == "fuzz":
        argv = ["fuzz", "--quiet", "--max-time", "1", "--runs", "1", "--out", str(tmp_path)]
    else:
        argv = ["replay", str(a_program(tmp_path / "p.json"))]
    proc = recvmap(*argv, "--timeout", value, timeout=60)
    bad_input(proc, "--timeout", "above 0, at most 3600", value)


# --- paths may hold spaces and shell characters -------------------------------------------


@needs_trees
@pytest.mark.extra("qemu-tree")
def test_a_tree_in_a_folder_named_with_a_space_and_a_dollar_builds_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: FileNotFoundError on the first word of the path (make's rule read as words)."""
    monkeypatch.setenv("RECVMAP_CACHE", str(tmp_path / "cache"))  # built here, not found
    tree = copy_tree(next(iter(TREES)), tmp_path / "a b$c" / "qemu $HOME")
    proc = recvmap("replay", "--qemu-tree", str(tree), str(a_program(tmp_path / "p.json")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 0 failed" in proc.stdout, proc.stdout


# --- corpus merge checks OUT first ----------------------------------------------------------


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "in"
    corpus.mkdir()
    (corpus / "input").write_bytes(b"\x01\x02\x03")
    return corpus


def test_corpus_merge_into_a_file_is_one_line(tmp_path: Path) -> None:
    """Before: a FileExistsError traceback."""
    out = tmp_path / "out"
    out.write_text("a file\n")
    proc = recvmap("corpus", "merge", "--layer", "bitmap", str(out), str(_corpus(tmp_path)))
    bad_input(proc, str(out), "not a folder")
    assert out.read_text() == "a file\n"


@pytest.mark.extra("fuzz")  # the libFuzzer merge
def test_corpus_merge_offers_libfuzzer_only_inputs(tmp_path: Path) -> None:
    """A 10 GiB (sparse) file in IN was read whole by libFuzzer: 2.5 GB of memory. It, a
    FIFO and a link to /dev/zero are left out, said in one line; the input is merged."""
    corpus = _corpus(tmp_path)
    with (corpus / "huge").open("wb") as f:
        f.truncate(10 << 30)
    os.mkfifo(corpus / "fifo")
    (corpus / "zero").symlink_to("/dev/zero")
    out = tmp_path / "out"
    proc = recvmap("corpus", "merge", "--layer", "bitmap", str(out), str(corpus), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "from 1 offered" in proc.stdout, proc.stdout
    assert "3 entries of IN left out" in proc.stdout, proc.stdout
    assert [f.stat().st_size for f in out.iterdir()] == [3]


def _read_only_prefix(folder: Path) -> list[str]:
    """How to run a command that sees ``folder`` read-only: chmod does for a user; root
    writes anyway, so root runs it in a mount namespace where ``folder`` is a read-only
    bind mount (skipped where that is not allowed)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    mount = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    prefix = ["unshare", "-m", "sh", "-c", mount, "sh", str(folder)]
    probe = None
    if shutil.which("unshare") is not None:
        probe = subprocess.run([*prefix, "touch", str(folder / "p")], capture_output=True)
    if probe is None or probe.returncode == 0 or b"Read-only" not in probe.stderr:
        pytest.skip(f"root cannot make {folder} read-only here (unshare -m, mount -o ro)")
    return prefix


def test_corpus_merge_into_a_read_only_folder_is_one_line(tmp_path: Path) -> None:
    """Before: exit status 1 and no message."""
    out = tmp_path / "out"
    out.mkdir()
    argv = ["corpus", "merge", "--layer", "bitmap", str(out), str(_corpus(tmp_path))]
    prefix = _read_only_prefix(out)
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "recvmap.fuzz.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    bad_input(proc, str(out), "cannot write")


# --- processes: capped, and gone with recvmap -------------------------------------------------


def _watch(proc: subprocess.Popen[str], until: float) -> tuple[int, set[int]]:
    """Poll ``proc``'s descendants until it ends or ``until`` (monotonic): the most seen at
    once, and every one seen."""
    most, seen = 0, set()
    while proc.poll() is None and time.monotonic() < until:
        now = descendants(proc.pid)
        most, seen = max(most, len(now)), seen | now
        time.sleep(0.2)
    return most, seen


def _reap(proc: subprocess.Popen[str], pids: set[int]) -> None:
    """Whatever a failed test left running: killed."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
    for p in pids:
        if alive(p):
            os.kill(p, signal.SIGKILL)


@pytest.mark.extra("fuzz")  # fork mode is atheris'
def test_a_thousand_workers_are_capped_in_one_line(tmp_path: Path) -> None:
    """Before: 441 processes (3.2 GB) on 2 cores, and a libFuzzerTemp folder left."""
    proc = start_fuzz(
        tmp_path, "--workers", "1000", "--target", "bitmap", "--word-bits", "64",
        "--max-time", "3", "--engine", "atheris", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    try:
        most, seen = _watch(proc, time.monotonic() + 90)
        _, err = proc.communicate(timeout=60)
    finally:
        _reap(proc, seen)
    assert proc.returncode == 0, err
    (line,) = [x for x in err.splitlines() if "--workers" in x]
    n = int(line.split("capped to ")[1].split()[0])
    assert 1 <= n <= (os.cpu_count() or 1), line
    # the job's supervisor, its n workers, the watchdog, and a shell or two of libFuzzer's
    assert most <= n + 6, f"{most} processes at once for {n} workers"
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("libFuzzerTemp*")), "a libFuzzerTemp folder left behind"


def test_killed_outright_recvmap_leaves_no_harness_and_no_folder(tmp_path: Path) -> None:
    """SIGKILL of the top `recvmap fuzz` process: its harnesses go, and its run folder.
    Before: 6 harnesses kept fuzzing about 45 s, and the folder stayed."""
    proc = start_fuzz(
        tmp_path, "--max-time", "120", "--target", "bitmap", "--out", str(tmp_path / "out")
    )
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(seen) < 3:  # 2 harnesses and the watchdog
            time.sleep(0.3)
            seen = descendants(proc.pid)
        assert len(seen) >= 3, "the campaign started no harness"
        assert list(tmp_path.glob("recvmap-fuzz-*")), "no run folder"
        proc.send_signal(signal.SIGKILL)  # the top process alone, not its group
        proc.wait()
        end = time.monotonic() + 8
        while time.monotonic() < end:
            left = [p for p in seen if alive(p)]
            folders = list(tmp_path.glob("recvmap-fuzz-*"))
            if not left and not folders:
                break
            time.sleep(0.2)
    finally:
        _reap(proc, seen)
    assert not left, f"{len(left)} processes outlived recvmap by 8 s"
    assert not folders, f"{folders} outlived recvmap by 8 s"


# --- the C library's Python face --------------------------------------------------------------


def test_an_integer_c_cannot_hold_is_refused_not_cut(lib: CLibrary) -> None:
    """Before: ctypes cut 2**64+5 to 5, and bit 5 was set."""
    bits = lib.layout.bits_per_long
    words = lib.words(2)
    with pytest.raises(PreconditionError, match=r"^bitmap_set: start: ") as err:
        lib.bitmap_set(words, 2**bits + 5, 1)
    assert (err.value.function, err.value.argument) == ("bitmap_set", "start")
    assert words.image() == bytes(2 * bits // 8)


def test_load_of_a_string_width_names_the_str() -> None:
    """Before: "must be 32 or 64, not 64"."""
    with pytest.raises(LibraryError, match=r"not '64' \(a str\)"):
        load(bits="64")  # type: ignore[arg-type]


# --- what a library prints, what a tree's build error quotes -----------------------------------

FAKE_SUMMARY = "9 passed, 0 failed, 0 skipped (qemu_ref)"


@needs_gcc
def test_a_library_printing_a_fake_summary_is_marked_as_the_librarys(tmp_path: Path) -> None:
    """Before: the library's line stood among recvmap's own, unmarked."""
    lib = build_library(
        64,
        {
            "bitmap.c": [
                ("#include <string.h>", "#include <string.h>\n#include <stdio.h>"),
                (SET_HEAD, SET_HEAD + f'    printf("{FAKE_SUMMARY}\\n");\n    fflush(stdout);\n'),
            ]
        },
    )
    proc = recvmap("replay", "--impl", str(lib), str(a_program(tmp_path / "p.json")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    printed = [line for line in proc.stdout.splitlines() if FAKE_SUMMARY in line]
    assert printed, proc.stdout  # the library did print
    assert all(line.startswith(f"[{lib.name} stdout] ") for line in printed), proc.stdout


@needs_trees
@pytest.mark.extra("qemu-tree")
def test_a_tree_including_a_file_outside_it_does_not_quote_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the compiler's first error, about the included file, was the line, quoting
    it ("unknown type name 'recvmapsecret'")."""
    monkeypatch.setenv("RECVMAP_CACHE", str(tmp_path / "cache"))
    secret = tmp_path / "outside" / "secret.h"
    secret.parent.mkdir()
    secret.write_text("recvmapsecret x;\nwhisper more text {\n")
    tree = copy_tree(next(iter(TREES)), tmp_path / "qemu")
    code = tree / "util" / "bitmap.c"
    code.write_text(f'#include "{secret}"\n' + code.read_text())
    proc = recvmap("replay", "--qemu-tree", str(tree), str(a_program(tmp_path / "p.json")))
    bad_input(proc, "util/bitmap.c")
    out = proc.stdout + proc.stderr
    assert "recvmapsecret" not in out and "whisper" not in out, out


def test_a_lone_surrogate_in_a_file_is_printed_escaped(tmp_path: Path) -> None:
    """Found by the hostile-input suite: replay's NOTE line quoting a schema holding a lone
    surrogate (bytes ED A0 80, which json reads) was a UnicodeEncodeError, and so was the
    internal error's log: a traceback."""
    f = tmp_path / "s.json"
    f.write_bytes(b'{"schema": "recvmap-v\xed\xa0\x80ectors-v1", "version": 1}')
    proc = recvmap("replay", str(f), timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "(recvmap-v\\ud800ectors-v1): skipped" in proc.stdout, proc.stdout
