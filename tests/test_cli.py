# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``recvmap`` command: campaigns, exit statuses, reproducers, replay, export, arches.

The campaigns here are short (a few seconds each) but real: atheris harnesses as
subprocesses, two at a time. One of them fuzzes a deliberately broken library (our C
reference built by gcc with an off-by-one BITMAP_LAST_WORD_MASK, passed with --impl) and
must stop with exit status 1 and a minimized reproducer vector that replays the divergence.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
from helpers import MASK, MUTANT, recvmap

from recvmap.fuzz import cli
from recvmap.fuzz.campaign.harness import Harness, run_random
from recvmap.fuzz.engine import first_divergence
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.subjects.build import build_library, source_dir
from recvmap.fuzz.subjects.impls import Subject
from recvmap.fuzz.vectors.files import load_file
from recvmap.pymodel.words import LP64_LE

VECTORS = Path(__file__).parent / "vectors"
FUZZ = Path(cli.__file__).resolve().parent / "campaign"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the variants")


@pytest.fixture(scope="module")
def mutant() -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc builds the mutant")
    return build_library(64, {"qemu_ref.h": [(MASK, MUTANT)]})


# --- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["fuzz", "--bogus"],
        ["fuzz", "--word-bits", "48"],
        ["fuzz", "--max-time", "-3"],
        ["fuzz", "--max-time", "soon"],
        ["fuzz", "--target", "bitmap,disk"],
        ["fuzz", "--arch", "vax"],
        ["fuzz", "--impl", "/nonexistent/libx.so"],
        ["fuzz", "--host", "pdp11"],
        ["replay"],
        ["vectors"],
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_bad_arguments_are_one_clear_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("recvmap"), err


def test_a_file_that_is_not_a_library_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "libnot.so"
    bogus.write_text("not an ELF file")
    assert cli.main(["fuzz", "--impl", str(bogus), "--max-time", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot load" in err


def test_arches_prints_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["arches"]) == 0
    out = capsys.readouterr().out
    assert "Targets" in out and "Hosts" in out
    assert re.search(r"^sparc64\s+13\b", out, re.M) and re.search(r"^aarch64-64k\s+64\b", out, re.M)


# --- campaigns ----------------------------------------------------------------------------


def test_clean_campaign_exits_0_with_a_summary(tmp_path: Path) -> None:
    report = tmp_path / "summary.json"
    r = recvmap(
        "fuzz",
        "--target",
        "ram,recovery",
        "--max-time",
        "8",
        "--seed",
        "7",
        "--json",
        str(report),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^job\s+words\s+seconds\s+programs\s+ops\s+ops/s\s+cov", r.stdout, re.M)
    assert re.search(r"^total\b.*clean$", r.stdout, re.M)
    s = json.loads(report.read_text())
    assert s["status"] == "clean" and s["seed"] == 7
    assert {j["layer"] for j in s["jobs"]} == {"ram", "recovery"}
    assert s["totals"]["ops"] > 100 and s["totals"]["programs"] > 10
    if find_spec("atheris") is not None:  # the random engine measures no coverage
        assert all(j["coverage"] > 0 for j in s["jobs"])
    assert len(s["matrix"]["targets"]) >= 10 and s["matrix"]["widths"] == ["32", "64"]
    assert not list((tmp_path / "out").glob("*.json"))


@needs_gcc
def test_campaign_catches_an_injected_bug(mutant: Path, tmp_path: Path) -> None:
    """--impl with our C built with an off-by-one last-word mask: exit 1 and a vector."""
    r = recvmap(
        "fuzz",
        "--impl",
        str(mutant),
        "--target",
        "bitmap",
        "--max-time",
        "30",
        "--seed",
        "1",
        "--out",
        str(tmp_path),
        "--quiet",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "DIVERGENCE in bitmap/64" in r.stdout
    m = re.search(r"^minimized reproducer: (\S+)$", r.stdout, re.M)
    assert m, r.stdout
    (case,) = load_file(m[1])
    assert (
        case.test["flags"] == ["Divergence", "ModelSnapshot"]
        and "libqemuref64.so diverged" in case.test["comment"]
    )
    assert len(case.program.ops) <= 4  # minimized
    again = recvmap("replay", m[1], "--impl", str(mutant))
    assert again.returncode == 1 and "FAIL" in again.stdout and "op #" in again.stdout
    model_only = recvmap("replay", "--model-only", m[1])
    assert model_only.returncode == 0, model_only.stdout


@needs_gcc
@pytest.mark.parametrize(
    "engine", ["random", pytest.param("atheris", marks=pytest.mark.extra("fuzz"))]
)
def test_a_crash_becomes_a_minimized_reproducer(tmp_path: Path, engine: str) -> None:
    """A library that segfaults (BIT_WORD scaled for bits >= 128): CRASH, a 1-op vector,
    whatever the engine (the random one used to report the crash with no reproducer)."""
    word = "#define BIT_WORD(nr)            ((nr) / QREF_BITS_PER_LONG)"
    far = (
        "#define BIT_WORD(nr)            ((nr) / QREF_BITS_PER_LONG * ((nr) >= 128 ? 1L << 28 : 1))"
    )
    lib = build_library(64, {"qemu_ref.h": [(word, far)]})
    r = recvmap(
        "fuzz",
        "--impl",
        str(lib),
        "--target",
        "bitmap",
        "--max-time",
        "20",
        "--seed",
        "1",
        "--engine",
        engine,
        "--out",
        str(tmp_path),
        "--quiet",
    )
    assert r.returncode == 1 and "CRASH in bitmap/64" in r.stdout, r.stdout + r.stderr
    m = re.search(r"^minimized reproducer: (\S+)$", r.stdout, re.M)
    assert m, r.stdout
    (case,) = load_file(m[1])
    assert "crashed" in case.test["comment"] and len(case.program.ops) <= 3
    again = recvmap("replay", m[1], "--impl", str(lib))
    assert again.returncode == 1 and "crashed (SIGSEGV)" in again.stdout


@needs_gcc
def test_the_mutant_diverges_where_the_mask_matters(mutant: Path) -> None:
    subject = Subject(mutant)
    program = Program(
        LP64_LE, [ArraySpec(2, {1: (1 << 64) - 1})], [Op("bitmap_fill", (Ref(0), 70))]
    )
    _, divergence = first_divergence(program, subject)
    assert divergence is not None
    assert divergence.describe().startswith("op #0 bitmap_fill(@0, 70): memory of @0 differs")


@needs_gcc
def test_harness_names_the_divergence_and_writes_the_reproducer(
    mutant: Path, tmp_path: Path
) -> None:
    harness = Harness("bitmap", Subject(mutant), out_dir=tmp_path)
    with pytest.raises(AssertionError) as info:
        run_random(harness, seconds=20, seed=3)
    text = str(info.value)
    assert "diverges from the model: op #" in text
    assert "returned" in text or "differs first at byte" in text
    path = Path(text.rsplit("reproducer: ", 1)[1])
    assert path.exists() and path.parent == tmp_path


@needs_gcc
def test_missing_symbols_are_listed_never_silent(tmp_path: Path) -> None:
    """A library with only bitops.c: the bitmap functions it lacks are skipped and named."""
    lib = tmp_path / "libpartial.so"
    src = source_dir()
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-I", str(src), "-o", str(lib), str(src / "bitops.c")],
        check=True,
    )
    r = recvmap(
        "fuzz",
        "--impl",
        str(lib),
        "--max-time",
        "4",
        "--seed",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "out"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    skipped = re.search(r"^skipped \(64-bit library lacks them\): (.*)$", r.stdout, re.M)
    assert skipped and "bitmap_set" in skipped[1] and "ramblock_recv_bitmap_set" in skipped[1]
    assert "note: ram/64: skipped, the library lacks" in r.stdout
    assert "note: recovery/64: skipped" in r.stdout


# --- the harness scripts --------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["bitmap", "ram", "recovery"])
def test_harness_scripts_are_executable(layer: str) -> None:
    script = FUZZ / f"harness_{layer}.py"
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env python3\n")


def test_harness_runs_directly_with_libfuzzer_flags(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        RECVMAP_OUT=str(tmp_path),
        RECVMAP_STATS=str(tmp_path / "stats.json"),
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    r = subprocess.run(
        [str(FUZZ / "harness_ram.py"), "-runs=150", "-seed=1", str(corpus)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"Done 150 runs", r.stderr), r.stderr[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["layer"] == "ram" and stats["programs"] > 0


# --- replay and export --------------------------------------------------------------------


def test_replay_of_the_rule_vectors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["replay", str(VECTORS / "bitmap-rules.json")]) == 0
    out = capsys.readouterr().out
    m = re.search(r"^\d+ passed, 0 failed, (\d+) skipped \(qemu_ref\)$", out, re.M)
    assert m, out
    groups = json.loads((VECTORS / "bitmap-rules.json").read_text())["testGroups"]
    older = [t for g in groups if g["release"].endswith(",<v4.0.0") for t in g["tests"]]
    # an older release's rule: not at the newest; big-endian groups: not on this host
    big = [t for g in groups if g["big_endian"] and not g["release"].endswith(",<v4.0.0")
           for t in g["tests"]]  # fmt: skip
    assert int(m[1]) == len(older) + len(big) and older and big
    assert len(re.findall(r"^SKIP \S+: .* big-endian words here", out, re.M)) == len(big)


def test_replay_reports_a_wrong_vector(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    obj = json.loads((VECTORS / "ram-rules.json").read_text())
    obj["testGroups"][0]["tests"][0]["results"][1] = 7
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(obj))
    assert cli.main(["replay", "--model-only", str(bad)]) == 1
    assert "FAIL bad.json#1" in capsys.readouterr().out


def test_vectors_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["vectors", "export", str(tmp_path / "v")]) == 0
    names = {p.name for p in (tmp_path / "v").iterdir()}
    assert {"schema.json", "bitmap-rules.json", "recovery-stream.json"} <= names
    assert cli.main(["vectors", "list"]) == 0
    assert "recovery-stream.json:" in capsys.readouterr().out


def test_history_bad_paths_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``recvmap history``: a missing folder or one that is not a git top level is one line,
    exit 2; with --bisect exit 128, so that git bisect run stops instead of marking the
    commit bad (any 1..127 but 125 would)."""
    for argv, status, words in (
        (["history", str(tmp_path / "nope")], 2, "no such folder"),
        (["history", str(tmp_path)], 2, "not the top folder of a git repository"),
        (["history", "--bisect", str(tmp_path)], 128, "not the top folder"),
        (["history", "--bisect", str(tmp_path), "HEAD~2..HEAD"], 128, "judges HEAD only"),
        (["history", str(tmp_path), "--per-commit-time", "0"], 2, "above 0"),
    ):
        assert cli.main(argv) == status, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, (argv, err)
