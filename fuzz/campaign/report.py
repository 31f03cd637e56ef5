# SPDX-License-Identifier: GPL-2.0-or-later
"""Machine-readable results of ``recvmap fuzz``: the versioned JSON summary and JUnit XML.

The JSON summary (``--json FILE``) follows ``summary.schema.json`` next to this module
(schema ``recvmap-fuzz-summary``, ``version`` 1). A consumer checks ``schema`` and
``version``; fields are only ever added within a version, and a change of meaning or a
removal bumps it. The summary names the tool and its version, the command line, the
engine that actually ran (``atheris`` or ``random``), the QEMU release the model stood for,
the matrix, one record per job and structured divergences (the first differing operation,
what differed, both values), besides the older free-text ``description``.

The JUnit XML (``--junit FILE``) is one ``testsuite`` with one ``testcase`` per job:
``failure`` for a divergence or a crash, ``skipped`` for a job that never ran, and one
``skipped`` case per layer the library cannot run (so a CI dashboard never shows a
skipped layer as passed).
"""

from __future__ import annotations

import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from recvmap.pymodel.releases import parse_rules

from ..vectors.files import QEMU_COMMIT, replay_command
from .jobs import Config
from .launch import engine_of
from .result import Result

SCHEMA_NAME = "recvmap-fuzz-summary"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).resolve().parent / "summary.schema.json"


def tool_version() -> str:
    try:
        return version("recvmap")
    except Exception:  # noqa: BLE001 - a source checkout without metadata
        return "unknown"


def engine_name(cfg: Config) -> str:
    return engine_of(cfg.engine)


def release_name(cfg: Config, result: Result | None = None) -> str:
    """The QEMU release the model stood for: the campaign's own (a QEMU tree's), else
    ``--release``, else the newest it knows."""
    own = getattr(result, "release", None)
    return parse_rules(own or getattr(cfg, "release", None)).name


def summary_json(result: Result, cfg: Config, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``--json`` summary: the campaign's own record plus the versioned envelope."""
    body = result.to_json()
    by_job = {j.name: j for j in result.jobs}
    divergences = []
    for d in body["divergences"]:
        job = by_job.get(d["job"])
        detail = job.stats.get("detail") if job is not None else None
        divergences.append(
            {
                "job": d["job"],
                "layer": job.layer if job is not None else None,
                "word_bits": job.bits if job is not None else None,
                "vector": d.get("vector"),
                "description": d.get("description", ""),
                "first": detail,
                "replay": d.get("replay"),
                "alone": d.get("alone", ""),
            }
        )
    crashes = [
        {k: c[k] for k in CRASH_KEYS if k in c} | {k: c.get(k) for k in CRASH_KEYS[:4]}
        for c in body["crashes"]
    ]
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "tool": {"name": "recvmap", "version": tool_version()},
        "command_line": ["recvmap", *(sys.argv[1:] if argv is None else argv)],
        "engine": engine_name(cfg),
        "release": release_name(cfg, result),
        "qemu": QEMU_COMMIT,
        "config": {
            "targets": list(cfg.targets),
            "arches": list(cfg.arches) if cfg.arches else None,
            "word_bits": list(cfg.word_bits) if cfg.word_bits else None,
            "max_time": cfg.max_time,
            "runs": cfg.runs,
            "jobs": cfg.jobs,
            "workers": int(getattr(cfg, "workers", 1) or 1),
            "hosts": list(cfg.hosts),
            "native": cfg.native,
            "impl": str(cfg.impl) if cfg.impl is not None else None,
        },
        **{k: body[k] for k in ("status", "impl", "seed", "elapsed", "totals")},
        "jobs": [
            {**j, "processes": int(by_job[j["name"]].stats.get("workers", 1))} for j in body["jobs"]
        ],
        "matrix": body["matrix"],
        "missing_cells": body["missing_cells"],
        "divergences": divergences,
        "crashes": crashes,
        "hangs": [_finding_json(h) for h in body["hangs"]],
        "slow": [_finding_json(h) for h in body["slow"]],
        "unconfirmed": [_plain(u) for u in body["unconfirmed"]],
        "errors": [_plain(e) for e in body["errors"]],
        "skipped_symbols": body["skipped_symbols"],
        "notes": body["notes"],
    }


CRASH_KEYS = (
    "job", "returncode", "artifact", "vector", "log", "tail", "replay", "alone", "confirmed",
)  # fmt: skip

FINDING_KEYS = (
    "job", "input", "timeout", "seconds", "alone_budget", "confirmed", "alone",
    "vector", "replay", "cut_short", "error",
)  # fmt: skip


def _finding_json(h: dict[str, Any]) -> dict[str, Any]:
    """A hang or a slow input: the keys of the schema's ``hang`` that it has."""
    return {k: h[k] for k in FINDING_KEYS if k in h}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """An unconfirmed suspicion or an error as JSON: its plain fields."""
    return {k: v for k, v in item.items() if v is None or isinstance(v, str | int | float | bool)}


def schema() -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return obj


def junit_xml(result: Result) -> str:
    """The campaign as JUnit XML: a job is a test case; divergences, crashes and hangs
    fail it (each with the command that replays its reproducer); recvmap's own failure is
    an ``error``; a slow input and an unconfirmed suspicion are said in its output."""
    suite = ET.Element(
        "testsuite",
        name="recvmap fuzz",
        timestamp=datetime.now(UTC).isoformat(timespec="seconds"),
        hostname=os.uname().nodename if hasattr(os, "uname") else "",
    )
    failures = skipped = errors = 0
    for j in result.jobs:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"recvmap.fuzz.{j.layer}",
            name=j.name,
            time=f"{j.elapsed:.3f}",
        )
        div = next((d for d in result.divergences if d["job"] == j.name), None)
        crash = next((c for c in result.crashes if c["job"] == j.name), None)
        hang = next((h for h in result.hangs if h["job"] == j.name), None)
        slow = [h for h in result.slow if h["job"] == j.name]
        error = next((e for e in result.errors if e["job"] == j.name), None)
        unconfirmed = [u for u in result.unconfirmed if u["job"] == j.name]
        if div is not None:
            failures += 1
            f = ET.SubElement(case, "failure", message=str(div.get("description", "")))
            f.set("type", "divergence")
            f.text = (
                f"minimized reproducer: {div.get('vector')}\n"
                f"replay it: {div.get('replay') or replay_command(str(div.get('vector')))}\n"
                + (f"confirmed: {div['alone']}\n" if div.get("alone") else "")
            )
        elif crash is not None:
            failures += 1
            f = ET.SubElement(
                case, "failure", message=f"crash (exit status {crash.get('returncode')})"
            )
            f.set("type", "crash")
            f.text = "".join(
                f"{label}: {crash[key]}\n"
                for label, key in (
                    ("confirmed", "alone"),
                    ("input", "artifact"),
                    ("minimized reproducer", "vector"),
                    ("replay it", "replay"),
                )
                if crash.get(key)
            ) + str(crash.get("tail", ""))
        elif hang is not None:
            failures += 1
            f = ET.SubElement(
                case, "failure", message=f"hang: an input ran longer than {hang['timeout']} s"
            )
            f.set("type", "hang")
            f.text = f"{hang.get('alone', '')}\ninput: {hang['input']}\n" + (
                f"reproducer: {hang['vector']}\nreplay it: {hang.get('replay')}\n"
                if hang.get("vector")
                else ""
            )
        elif error is not None:  # recvmap's failure, not the implementation's
            errors += 1
            e = ET.SubElement(case, "error", message=str(error["error"]))
            e.set("type", "recvmap")
            e.text = f"log: {error.get('log')}\n{error.get('tail', '')}"
        elif j.proc is None:
            skipped += 1
            ET.SubElement(case, "skipped", message="not run")
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"programs {j.programs}, ops {j.ops}, coverage {j.cov}, seed {j.seed}"
            + "".join(
                f"\nslow input (not a finding): {h.get('seconds')} s > --timeout {h['timeout']} s, "
                f"completes alone; input {h['input']}"
                for h in slow
            )
            + "".join(
                f"\nnot confirmed (not a finding): a suspected {u['kind']}: {u.get('alone', '')}"
                for u in unconfirmed
            )
        )
    for note in result.notes:
        if ": skipped, " in note:
            skipped += 1
            name = note.split(":", 1)[0]
            case = ET.SubElement(
                suite, "testcase", classname="recvmap.fuzz.skipped", name=name, time="0"
            )
            ET.SubElement(case, "skipped", message=note)
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{result.elapsed:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, "unicode") + "\n"


def write_reports(
    results: Result | Sequence[Result],
    cfg: Config,
    json_path: Path | None,
    junit_path: Path | None,
    argv: Sequence[str] | None = None,
) -> None:
    """The --json summary and the --junit file of one campaign, or of several (two QEMU
    trees: a JSON list of summaries, one JUnit testsuite each under <testsuites>)."""
    many = list(results) if isinstance(results, list | tuple) else [results]
    if json_path is not None:
        docs = [summary_json(r, cfg, argv) for r in many]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(docs[0] if len(docs) == 1 else docs, indent=1) + "\n")
    if junit_path is not None:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        if len(many) == 1:
            junit_path.write_text(junit_xml(many[0]))
        else:
            suites = ET.Element("testsuites")
            for r in many:
                suites.append(ET.fromstring(junit_xml(r).split("\n", 1)[1]))
            text = ET.tostring(suites, "unicode")
            junit_path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")
