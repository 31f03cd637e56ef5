# SPDX-License-Identifier: GPL-2.0-or-later
"""Scale out on one machine: ``recvmap fuzz --workers N`` (libFuzzer fork mode on one
corpus) and ``recvmap corpus merge``."""

from __future__ import annotations

import functools
import json
import random
import re
import shutil
from pathlib import Path

import helpers
import pytest
from helpers import MASK, MUTANT

from recvmap.fuzz.campaign.workers import read_stats
from recvmap.fuzz.subjects.build import build_library
from recvmap.fuzz.vectors.files import load_file

needs_atheris = pytest.mark.extra("fuzz")  # fork mode is libFuzzer's

recvmap = functools.partial(helpers.recvmap, timeout=240)


def test_worker_statistics_add_up(tmp_path: Path) -> None:
    stats = tmp_path / "bitmap-64.stats.json"
    stats.write_text(json.dumps({"programs": 1, "ops": 2, "cells": {"widths": ["64"]}}))
    (tmp_path / "bitmap-64.stats.json.101").write_text(
        json.dumps({"programs": 10, "ops": 20, "cells": {"widths": ["32"]}})
    )
    (tmp_path / "bitmap-64.stats.json.102").write_text(
        json.dumps({"programs": 5, "ops": 7, "divergence": "v.json", "description": "op #0"})
    )
    (tmp_path / "bitmap-64.stats.json.tmp").write_text("{half a file")
    s = read_stats(stats)
    assert (s["programs"], s["ops"], s["workers"]) == (16, 29, 2)
    assert s["cells"] == {"widths": ["32", "64"]} and s["divergence"] == "v.json"


@pytest.mark.slow
@needs_atheris
def test_workers_share_one_corpus(tmp_path: Path) -> None:
    argv = ["fuzz", "--target", "bitmap", "--word-bits", "64", "--workers", "2", "--jobs", "1"]
    argv += ["--max-time", "12", "--seed", "4", "--corpus", "corpus", "--json", "s.json"]
    r = recvmap(*argv, "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["config"]["workers"] == 2 and len(s["jobs"]) == 1
    (job,) = s["jobs"]
    assert job["processes"] >= 2, job  # the workers' statistics, added up
    assert job["ops"] > 100 and job["coverage"] > 0
    corpus = list((tmp_path / "corpus" / "bitmap-64").iterdir())
    assert len(corpus) > 5  # the workers handed their inputs back to the one folder


@pytest.mark.slow
@needs_atheris
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the mutant")
def test_a_worker_divergence_ends_the_job_with_a_reproducer(tmp_path: Path) -> None:
    lib = build_library(64, {"qemu_ref.h": [(MASK, MUTANT)]})
    argv = ["fuzz", "--impl", str(lib), "--target", "bitmap", "--workers", "2", "--jobs", "1"]
    argv += ["--max-time", "40", "--seed", "1", "--out", "out", "--quiet"]
    r = recvmap(*argv, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    m = re.search(r"^minimized reproducer: (\S+)$", r.stdout, re.M)
    assert m, r.stdout
    (case,) = load_file(tmp_path / m[1])
    assert "Divergence" in case.test["flags"]


@pytest.mark.slow
@needs_atheris
def test_corpus_merge_keeps_what_adds_coverage(tmp_path: Path) -> None:
    rng = random.Random(9)
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for i in range(40):
        data = rng.randbytes(rng.randrange(1, 600))
        (a / f"in{i}").write_bytes(data)
        (b / f"copy{i}").write_bytes(data)  # the same inputs again, under other names
    (b / "short").write_bytes(b"\x00")
    r = recvmap("corpus", "merge", "--layer", "bitmap", "m", "a", "b", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    kept = list((tmp_path / "m").iterdir())
    assert 0 < len(kept) <= 41
    assert f"m: {len(kept)} inputs ({len(kept)} new) from 81 offered" in r.stdout
    offered = {f.read_bytes() for d in (a, b) for f in d.iterdir()}
    assert all(f.read_bytes() in offered for f in kept)
    again = recvmap("corpus", "merge", "--layer", "bitmap", "m", "a", cwd=tmp_path)
    assert again.returncode == 0 and "(0 new)" in again.stdout, again.stdout + again.stderr


def test_corpus_merge_bad_arguments_are_one_line(tmp_path: Path) -> None:
    r = recvmap("corpus", "merge", "--layer", "bitmap", "m", "missing", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such folder" in r.stderr
    r = recvmap("corpus", "merge", "m", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 2 and "--layer" in r.stderr
