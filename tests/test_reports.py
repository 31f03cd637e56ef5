# SPDX-License-Identifier: GPL-2.0-or-later
"""Machine-readable campaign results: ``--json`` against the committed schema, ``--junit``.

Real short campaigns (a clean one on our C, one on a library with an off-by-one last-word
mask); the JSON is validated with the reference ``jsonschema`` package (not our own small
validator), and the JUnit XML is parsed back with the standard library.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import MASK, MUTANT

from recvmap.fuzz.campaign.report import SCHEMA_FILE, schema
from recvmap.fuzz.subjects.build import build_library, source_dir

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (a test dependency) missing")

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the variants")


recvmap = functools.partial(helpers.recvmap, timeout=180)


def check(doc: Any) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert SCHEMA_FILE.name == "summary.schema.json"
    assert schema()["properties"]["version"] == {"const": 1}


def test_clean_campaign_json_validates_and_junit_parses(tmp_path: Path) -> None:
    argv = ["fuzz", "--target", "bitmap,ram", "--max-time", "6", "--seed", "5", "--quiet"]
    argv += ["--out", str(tmp_path / "out")]
    argv += ["--json", str(tmp_path / "s.json"), "--junit", str(tmp_path / "j.xml")]
    r = recvmap(*argv)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    check(doc)
    assert doc["schema"] == "recvmap-fuzz-summary" and doc["version"] == 1
    assert doc["command_line"] == ["recvmap", *argv]
    assert doc["status"] == "clean" and doc["divergences"] == [] and doc["seed"] == 5
    assert doc["engine"] in ("atheris", "random") and doc["tool"]["version"] == "0.1.0"
    assert {j["layer"] for j in doc["jobs"]} == {"bitmap", "ram"}
    suite = ET.parse(tmp_path / "j.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("failures") == "0"
    cases = suite.findall("testcase")
    assert int(suite.get("tests", "-1")) == len(cases) == len(doc["jobs"])
    assert {c.get("name") for c in cases} == {j["name"] for j in doc["jobs"]}
    assert not any(c.find("failure") is not None for c in cases)


@needs_gcc
def test_a_divergence_is_structured_in_json_and_a_junit_failure(tmp_path: Path) -> None:
    lib = build_library(64, {"qemu_ref.h": [(MASK, MUTANT)]})
    argv = ["fuzz", "--impl", str(lib), "--target", "bitmap", "--max-time", "30", "--seed", "1"]
    argv += ["--quiet", "--out", str(tmp_path / "out")]
    argv += ["--json", str(tmp_path / "s.json"), "--junit", str(tmp_path / "j.xml")]
    r = recvmap(*argv)
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    check(doc)
    assert doc["status"] == "divergence" and doc["config"]["impl"] == str(lib)
    assert doc["divergences"]  # both jobs (bitmap/64 and its second seed) may find it
    d = doc["divergences"][0]
    assert d["layer"] == "bitmap" and d["word_bits"] == 64 and Path(d["vector"]).is_file()
    first = d["first"]
    assert first["what"] in ("memory", "result") and first["model"] != first["impl"]
    assert first["function"] in d["description"] and f"op #{first['index']}" in d["description"]
    suite = ET.parse(tmp_path / "j.xml").getroot()
    failed_cases = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert suite.get("failures") == str(len(failed_cases)) == str(len(doc["divergences"]))
    (failed,) = [c for c in failed_cases if c.get("name") == d["job"]]
    failure = failed.find("failure")
    assert failure is not None and failure.get("type") == "divergence"
    assert failed.get("name") == d["job"] and d["vector"] in (failure.text or "")


def test_skipped_layers_are_junit_skips_never_passes(tmp_path: Path) -> None:
    """A library with only bitops.c: ram and recovery are skipped test cases."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc builds the partial library")
    lib = tmp_path / "libpartial.so"
    src = source_dir()
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O1", "-I", str(src), "-o", str(lib), str(src / "bitops.c")],
        check=True,
    )
    argv = ["fuzz", "--impl", str(lib), "--max-time", "3", "--seed", "2", "--quiet"]
    argv += ["--out", str(tmp_path / "out"), "--junit", str(tmp_path / "j.xml")]
    argv += ["--json", str(tmp_path / "s.json")]
    r = recvmap(*argv)
    assert r.returncode == 0, r.stdout + r.stderr
    check(json.loads((tmp_path / "s.json").read_text()))
    suite = ET.parse(tmp_path / "j.xml").getroot()
    skipped = {c.get("name") for c in suite.findall("testcase") if c.find("skipped") is not None}
    assert {"ram/64", "recovery/64"} <= skipped
    assert int(suite.get("skipped", "0")) == len(skipped)


def test_the_schema_rejects_what_it_must(tmp_path: Path) -> None:
    """The schema has teeth: a summary missing its version, or with a bad release, fails."""
    doc: dict[str, Any] = {
        "schema": "recvmap-fuzz-summary",
        "version": 1,
        "tool": {"name": "recvmap", "version": "0.1.0"},
        "command_line": ["recvmap", "fuzz"],
        "engine": "atheris",
        "release": "v10.1.0",
        "qemu": "f9494614898f",
        "config": {
            "targets": ["bitmap"],
            "word_bits": None,
            "max_time": 1.0,
            "jobs": 1,
            "workers": 1,
            "impl": None,
        },
        "status": "clean",
        "impl": "qemu_ref",
        "seed": 1,
        "elapsed": 1.0,
        "totals": {
            "programs": 1,
            "ops": 1,
            "ops_per_second": 1,
            "ops_per_core_second": 1,
            "coverage": 1,
        },
        "jobs": [],
        "matrix": {},
        "missing_cells": {},
        "divergences": [],
        "crashes": [],
        "skipped_symbols": {},
        "notes": [],
    }
    check(doc)
    v = jsonschema.Draft202012Validator(schema())
    for bad in (
        {k: x for k, x in doc.items() if k != "version"},
        {**doc, "version": 2},
        {**doc, "release": "10.1"},
        {**doc, "engine": "afl"},
        {**doc, "divergences": [{"job": "bitmap/64"}]},
    ):
        assert not v.is_valid(bad), bad


def test_qemu_tree_campaigns_write_the_same_reports(tmp_path: Path) -> None:
    """--qemu-tree writes the versioned summary too (a list of them for two trees, judged
    each at its own release) and one JUnit testsuite per tree."""
    from qemu_trees import TREES

    if len(TREES) < 2:
        pytest.skip("needs two shared QEMU trees")
    a, b = sorted(TREES)[-2:]
    argv = ["fuzz", "--qemu-tree", str(TREES[a]), "--qemu-tree", str(TREES[b])]
    argv += ["--target", "bitmap", "--max-time", "4", "--seed", "3", "--quiet"]
    argv += ["--out", str(tmp_path / "out")]
    argv += ["--json", str(tmp_path / "s.json"), "--junit", str(tmp_path / "j.xml")]
    r = recvmap(*argv)
    assert r.returncode == 0, r.stdout + r.stderr
    docs = json.loads((tmp_path / "s.json").read_text())
    assert isinstance(docs, list) and len(docs) == 2
    for doc in docs:
        check(doc)
        assert doc["status"] == "clean"
    assert sorted(d["release"] for d in docs) == sorted([a, b])
    root = ET.parse(tmp_path / "j.xml").getroot()
    assert root.tag == "testsuites" and len(root.findall("testsuite")) == 2
