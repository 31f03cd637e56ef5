# SPDX-License-Identifier: GPL-2.0-or-later
"""Regression vectors: versioned JSON files of operation programs and their expected outcome.

The format follows Wycheproof's (``tests/vectors/schema.json`` is its JSON Schema)::

    {"schema": "recvmap-vectors-v1", "version": 1, "layer": "bitmap", "qemu": "f9494614898f",
     "numberOfTests": 1, "notes": {"TailBits": "..."},
     "testGroups": [{"layer": "bitmap", "bits_per_long": 64, "big_endian": false,
                     "tests": [{"tcId": 1, "comment": "...", "flags": ["TailBits"],
                                "program": {...}, "results": [...], "memory": {...},
                                "result": "valid"}]}]}

A group holds the parameters its programs share (layer, word width, byte order; for the ram
layers the target, its page bits, the host and its base page, and the recovery sender's
word layout). ``results`` are the MODEL's return values of each operation, ``memory`` the
sha256 of each array's memory image after the program (in the group's byte order; ``null``
for a RAM block map that is not allocated). A test is ``invalid`` when its last operation is
outside QEMU's domain: the model must reject it, an implementation must never be given it.

Every group has a ``release`` range (">=v4.0.0", ">=v3.0.0,<v8.2.0"): the QEMU releases
at which its expectations hold. A test is made at one release (default the newest) and
its range is every release around it where the model gives the same outcome, so vectors
whose expectation differs per release are split into groups by range. A flag
"ModelSnapshot" marks a memory digest that is a snapshot of the model's output, not a
value worked out by hand.

Results in JSON: ``null`` for void, ``true``/``false`` for bool, integers, lists for
tuples, ``{"hex": "..."}`` for byte strings (recovery streams).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import (
    DEFAULT_RELEASE,
    RELEASES,
    Release,
    changes_between,
    parse_release,
    range_of,
    release_range,
)

from ..engine.session import Divergence, initial_image
from ..program import Program, Ref
from ..subjects.impls import ModelImpl, Subject

SCHEMA = "recvmap-vectors-v1"
VERSION = 1
QEMU_COMMIT = "f9494614898f"
GROUP_KEYS = (
    "layer",
    "bits_per_long",
    "big_endian",
    "arch",
    "target_page_bits",
    "host",
    "host_page_size",
    "sender_bits_per_long",
    "sender_big_endian",
)
NOTES = {
    "TailBits": "bits past nbits in the last word: what each function does to them is exact",
    "WordBoundary": "arguments at 0, BPL-1, BPL, BPL+1 ... of the word array",
    "Domain": "an argument outside QEMU's domain: the model rejects it, C is never called",
    "ReturnValue": "a return value that differs from the obvious one (e.g. index + nr > size)",
    "Discard": "ram_discard_range clears the received bits before its checks",
    "Placement": "postcopy places a whole host page: page_size / target page bits at once",
    "WrapAround": "an address below the block wraps to a huge bit index",
    "RecoveryStream": "the byte stream of ramblock_recv_bitmap_send (facts section 5)",
    "MalformedStream": "ram_dirty_bitmap_reload rejects it and leaves the bitmap untouched",
    "Divergence": "a program on which an implementation once diverged from the model",
    "ModelSnapshot": "the memory digests are snapshots of the model's output, not worked out "
    "by hand (results are hand-checked)",
    "HandDerived": "results and memory written by hand from QEMU's code (the comment names "
    "the lines), not from the model",
    "Release": "the expectation differs between QEMU releases: see the group's release range",
}


# --- running a program on the model alone ---------------------------------------------


@dataclass
class ModelRun:
    """The model's results, the memory after the program, and the rejected op if any."""

    results: list[Any] = field(default_factory=list)
    images: dict[str, bytes | None] = field(default_factory=dict)
    rejected: int | None = None
    reason: str = ""


def model_run(program: Program, release: str | Release | None = None) -> ModelRun:
    """Run ``program`` on the model only, at ``release`` (default: the program's own,
    else the newest); stop at the first operation it rejects."""
    rel = parse_release(release or program.release).name
    if program.layer == "bitmap":
        return _model_run_bitmap(program, rel)
    return _model_run_ram(program, rel)


def _model_run_bitmap(program: Program, release: str) -> ModelRun:
    model = ModelImpl(program.layout, release)
    arrays = []
    for i, spec in enumerate(program.arrays):
        h = model.alloc(spec.nwords)
        model.load(h, initial_image(program, i))
        arrays.append(h)
    out = ModelRun()
    for i, op in enumerate(program.ops):
        args = [arrays[a.index] if isinstance(a, Ref) else a for a in op.args]
        try:
            out.results.append(model.call(op.name, *args))
        except PreconditionError as err:
            out.rejected, out.reason = i, str(err)
            break
    out.images = {f"@{k}": h.image() for k, h in enumerate(arrays)}
    return out


def _model_run_ram(program: Program, release: str) -> ModelRun:
    from ..engine.ram import RamWorld, model_factories, outcome_value
    from ..program.ram_setup import RamSetup

    world = RamWorld(program, RamSetup.of(program), model_factories(release))
    out = ModelRun()
    for i, op in enumerate(program.ops):
        try:
            out.results.append(outcome_value(world, op))
        except PreconditionError as err:
            out.rejected, out.reason = i, str(err)
            break
    out.images = dict(world.maps())
    return out


# --- JSON forms -------------------------------------------------------------------------


def result_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"hex": bytes(value).hex()}
    if isinstance(value, tuple | list):
        return [result_json(v) for v in value]
    raise TypeError(f"result {value!r} has no JSON form")


def digest(image: bytes | None) -> str | None:
    return None if image is None else hashlib.sha256(image).hexdigest()


def group_params(program: Program) -> dict[str, Any]:
    """The parameters a vector group shares, read from a program."""
    params: dict[str, Any] = {
        "layer": program.layer,
        "bits_per_long": program.layout.bits_per_long,
        "big_endian": program.layout.big_endian,
    }
    if program.layer != "bitmap":
        s = program.setup
        params.update(
            arch=s["target"],
            target_page_bits=s["target_page_bits"],
            host=s["host"],
            host_page_size=s["host_page_size"],
        )
        if program.layer == "recovery":
            params.update(
                sender_bits_per_long=s["sender"]["bits_per_long"],
                sender_big_endian=s["sender"]["big_endian"],
            )
    return params


def _outcome(run: ModelRun) -> tuple[Any, ...]:
    results = json.dumps([result_json(r) for r in run.results])
    return results, run.rejected, tuple(sorted((k, digest(v)) for k, v in run.images.items()))


def test_range(program: Program, release: str | Release | None = None) -> str:
    """The releases around ``release`` at which the model's outcome of ``program`` is the
    same as at ``release`` (a range such as ">=v4.0.0,<v8.2.0")."""
    rel = parse_release(release or program.release)
    want = _outcome(model_run(program, rel))
    memo: dict[Release, bool] = {}

    def same(r: Release) -> bool:
        if r not in memo:
            memo[r] = r == rel or _outcome(model_run(program, r)) == want
        return memo[r]

    return range_of(same, rel)


def make_test(
    program: Program,
    comment: str,
    flags: list[str] | None = None,
    tc_id: int = 0,
    release: str | Release | None = None,
) -> dict[str, Any]:
    """A test whose expectations are the model's at ``release`` (default the program's own,
    else the newest): valid, or invalid at its last operation. Its ``release`` range (moved
    to its group by ``vector_file``) is where the model's outcome is the same."""
    run = model_run(program, release)
    if run.rejected is not None and run.rejected != len(program.ops) - 1:
        raise ValueError(
            f"op #{run.rejected} {program.ops[run.rejected]} is rejected before the end: "
            f"{run.reason}"
        )
    test: dict[str, Any] = {
        "tcId": tc_id,
        "comment": comment,
        "flags": list(flags or []),
        "program": program.to_json(),
        "results": [result_json(r) for r in run.results],
        "memory": {k: digest(v) for k, v in run.images.items()},
        "result": "valid" if run.rejected is None else "invalid",
    }
    if run.rejected is not None:
        test["reason"] = run.reason
    test["release"] = test_range(program, release)
    return test


def vector_file(tests: list[dict[str, Any]], notes: dict[str, str] | None = None) -> dict[str, Any]:
    """Group tests by their shared parameters; number them 1..n."""
    groups: dict[str, dict[str, Any]] = {}
    for t in tests:
        params = group_params(Program.from_json(t["program"]))
        params["release"] = t.pop("release", f">={RELEASES[0]}")
        key = json.dumps(params, sort_keys=True)
        groups.setdefault(key, {**params, "tests": []})["tests"].append(t)
    n = 0
    for g in groups.values():
        for t in g["tests"]:
            n += 1
            t["tcId"] = n
    layers = sorted({g["layer"] for g in groups.values()})
    used = sorted({f for t in tests for f in t["flags"]})
    all_notes = {**NOTES, **(notes or {})}
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "layer": layers[0] if len(layers) == 1 else "mixed",
        "qemu": QEMU_COMMIT,
        "header": [
            "Operation programs on QEMU's bitmap helpers and migration received-page bitmap.",
            "results: the model's return values; memory: sha256 of each array's image.",
        ],
        "notes": {f: all_notes.get(f, "") for f in used},
        "numberOfTests": n,
        "testGroups": list(groups.values()),
    }


def dumps(obj: Any, level: int = 0, width: int = 100) -> str:
    """JSON with one line per value that fits in ``width`` (one operation per line)."""
    text = json.dumps(obj)
    if not isinstance(obj, dict | list) or not obj or len(text) + level <= width:
        return text
    pad = " " * (level + 1)
    if isinstance(obj, dict):
        inner = [f"{pad}{json.dumps(k)}: {dumps(v, level + 1, width)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(inner) + "\n" + " " * level + "}"
    inner = [pad + dumps(v, level + 1, width) for v in obj]
    return "[\n" + ",\n".join(inner) + "\n" + " " * level + "]"


def write_vector_file(path: str | os.PathLike[str], obj: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(obj) + "\n")
    return path


def write_divergence(
    program: Program, divergence: Divergence, impl_name: str, out_dir: str | os.PathLike[str]
) -> Path:
    """The minimized program of a divergence as a one-test vector file; its path."""
    comment = f"{impl_name} diverged: {divergence.describe()}"
    if program.release:
        comment += f" (at QEMU {program.release})"
    test = make_test(program, comment, ["Divergence", "ModelSnapshot"])
    text = json.dumps(test["program"], sort_keys=True)
    name = f"divergence-{program.layer}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    return write_vector_file(Path(out_dir) / name, vector_file([test]))


# --- loading and replaying --------------------------------------------------------------


@dataclass
class Case:
    """One test of a vector file, with its group and file."""

    path: Path
    group: dict[str, Any]
    test: dict[str, Any]

    @property
    def program(self) -> Program:
        return Program.from_json(self.test["program"])

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.test['tcId']}"

    def release_for(self, release: str | Release | None) -> Release:
        """The release to replay at: the one asked for, else the program's, else the newest."""
        return parse_release(release or self.test["program"].get("release"))

    def covers(self, release: Release) -> bool:
        """Whether the group's release range holds ``release``."""
        return release_range(str(self.group.get("release", "*")))(release)


class VectorError(ValueError):
    """A vector file that is not a recvmap-vectors-v1 file; the message says where."""


def load_file(path: str | os.PathLike[str]) -> list[Case]:
    """Every test of a vector file, or of a bare program / reproducer JSON."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise VectorError(f"{path}: {err}") from None
    if isinstance(obj, dict) and "ops" in obj and "testGroups" not in obj:
        program = Program.from_json(obj)  # a bare program: expectations from the model
        test = make_test(program, "bare program", [], 1)
        group = {**group_params(program), "release": test.pop("release")}
        return [Case(path, group, test)]
    problems = validate(obj, schema())
    if problems:
        raise VectorError(f"{path}: {problems[0]}")
    cases = []
    for group in obj["testGroups"]:
        for test in group["tests"]:
            params = group_params(Program.from_json(test["program"]))
            shared = {k: group[k] for k in GROUP_KEYS if k in group}
            if shared != params:
                raise VectorError(
                    f"{path}: test {test['tcId']}: program parameters {params} "
                    f"differ from its group's {shared}"
                )
            cases.append(Case(path, group, test))
    return cases


def is_vector_file(path: Path) -> bool:
    """A recvmap-vectors-v1 file (folders may hold other JSON: schema, other formats)."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and obj.get("schema") == SCHEMA


def iter_files(paths: list[str | os.PathLike[str]]) -> Iterator[Path]:
    """Named files as they are; in a folder, its recvmap-vectors-v1 files."""
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(q for q in p.glob("*.json") if is_vector_file(q))
        else:
            yield p


@dataclass
class Verdict:
    case: Case
    status: str  # "pass", "fail", "skip"
    message: str = ""


def check_model(case: Case, release: str | Release | None = None) -> str | None:
    """Why the model at ``release`` disagrees with the vector's expectations (None: it
    agrees)."""
    program, test = case.program, case.test
    run = model_run(program, case.release_for(release))
    if test["result"] == "invalid":
        if run.rejected != len(program.ops) - 1:
            return f"the model does not reject the last operation {program.ops[-1]}"
    elif run.rejected is not None:
        return f"the model rejects op #{run.rejected} {program.ops[run.rejected]}: {run.reason}"
    got = [result_json(r) for r in run.results]
    for i, (want, have) in enumerate(zip(test["results"], got, strict=False)):
        if want != have:
            return f"op #{i} {program.ops[i]}: the model returns {have!r}, vector says {want!r}"
    if len(got) != len(test["results"]):
        return f"{len(got)} results, vector has {len(test['results'])}"
    memory = {k: digest(v) for k, v in run.images.items()}
    for key, want in test["memory"].items():
        if memory.get(key, "absent") != want:
            return f"memory of {key}: the model's sha256 is {memory.get(key)}, vector says {want}"
    return None


def check_impl(
    case: Case, subject: Subject, release: str | Release | None = None
) -> tuple[str, str]:
    """("pass"|"fail"|"skip", message) for the implementation on the vector's program."""
    from ..engine.replay import first_divergence

    program = case.program.at(case.release_for(release).name)
    if case.test["result"] == "invalid":
        program = program.with_ops(program.ops[:-1])  # never hand C the invalid call
    try:
        results, divergence = first_divergence(program, subject)
    except ValueError as err:
        return "skip", str(err)
    if divergence is not None:
        return "fail", f"{subject.name} diverges: {divergence.describe()}"
    want = case.test["results"][: len(program.ops)]
    got = [result_json(r) for r in results]
    if got != want:
        return "fail", f"results {got} differ from the vector's {want}"
    return "pass", ""


def replay(
    case: Case,
    subject: Subject | None,
    isolate: bool = True,
    release: str | Release | None = None,
) -> Verdict:
    """Check the model against the vector, then the implementation against the model, at
    ``release`` (default: the program's own, else the newest). A vector whose group range
    does not hold the release is skipped. Our C reference implements the newest release
    only: at an older release it is not compared (model only).

    With ``isolate`` the implementation runs in a forked child, so a crash of its C code
    (a segfault, an assert) is a failing verdict naming the signal, not the end of the run.
    """
    rel = case.release_for(release)
    if not case.covers(rel):
        return Verdict(case, "skip", f"not at {rel} (release range {case.group.get('release')})")
    problem = check_model(case, rel)
    if problem is not None:
        return Verdict(case, "fail", f"model at {rel}: {problem}")
    if subject is None:
        return Verdict(case, "pass", "model only")
    if any(changes_between(rel, DEFAULT_RELEASE)) and getattr(subject, "path", None) is None:
        return Verdict(case, "pass", f"model only (our C implements {DEFAULT_RELEASE})")
    if isolate:
        status, message = isolated(check_impl, case, subject, rel)
    else:
        status, message = check_impl(case, subject, rel)
    return Verdict(case, status, message)


def isolated(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a forked child; ("fail", "... crashed ...") if the child dies."""
    if not hasattr(os, "fork"):
        return fn(*args)
    import pickle
    import signal

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(rfd)
            data = pickle.dumps(fn(*args))
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            data = pickle.dumps(("fail", f"{type(err).__name__}: {err}"))
            code = 1
        with os.fdopen(wfd, "wb") as w:
            w.write(data)
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        data = r.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        return "fail", f"the implementation crashed ({sig}) on this program"
    return pickle.loads(data)


# --- the schema and the packaged vectors ------------------------------------------------


def vectors_dir() -> Path:
    """The vector files: installed with the package, else the source tree's tests/vectors."""
    try:
        packaged = resources.files("recvmap").joinpath("vectors")
        with resources.as_file(packaged) as p:
            if Path(p).is_dir() and any(Path(p).glob("*.json")):
                return Path(p)
    except (ModuleNotFoundError, OSError):  # an editable install maps files, not folders
        pass
    return Path(__file__).resolve().parent.parent.parent / "tests" / "vectors"


_SCHEMA: dict[str, Any] | None = None


def schema() -> dict[str, Any]:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = json.loads((vectors_dir() / "schema.json").read_text())
    return _SCHEMA


def export(
    dest: str | os.PathLike[str], source: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Copy every vector file and the schema into ``dest``; the files written."""
    src = Path(source) if source else vectors_dir()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copy2(src / "schema.json", dest / "schema.json"))]
    for f in iter_files([src]):
        load_file(f)  # never export a file that does not validate
        written.append(Path(shutil.copy2(f, dest / f.name)))
    return written


# --- a small JSON Schema validator (the subset schema.json uses) -------------------------

_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "integer": int,
    "number": (int, float),
}


def validate(
    obj: Any, sch: dict[str, Any], root: dict[str, Any] | None = None, where: str = "$"
) -> list[str]:
    """Problems of ``obj`` against ``sch`` (type, const, enum, required, properties,
    additionalProperties, items, minimum, minItems, pattern, anyOf, $ref to $defs)."""
    import re

    root = root or sch
    if "$ref" in sch:
        name = sch["$ref"].rsplit("/", 1)[-1]
        return validate(obj, root["$defs"][name], root, where)
    if "anyOf" in sch:
        if all(validate(obj, s, root, where) for s in sch["anyOf"]):
            return [f"{where}: matches none of the allowed forms"]
    types = sch.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        ok = any(
            isinstance(obj, _TYPES[t])
            and not (t in ("integer", "number") and isinstance(obj, bool))
            for t in names
        )
        if not ok:
            return [f"{where}: expected {'/'.join(names)}, got {type(obj).__name__}"]
    if "const" in sch and obj != sch["const"]:
        return [f"{where}: must be {sch['const']!r}"]
    if "enum" in sch and obj not in sch["enum"]:
        return [f"{where}: must be one of {sch['enum']}"]
    problems: list[str] = []
    if isinstance(obj, dict):
        for key in sch.get("required", []):
            if key not in obj:
                problems.append(f"{where}: missing {key!r}")
        props = sch.get("properties", {})
        for key, value in obj.items():
            if key in props:
                problems += validate(value, props[key], root, f"{where}.{key}")
            elif sch.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected {key!r}")
            elif isinstance(sch.get("additionalProperties"), dict):
                problems += validate(value, sch["additionalProperties"], root, f"{where}.{key}")
    if isinstance(obj, list):
        if len(obj) < sch.get("minItems", 0):
            problems.append(f"{where}: at least {sch['minItems']} items")
        if "items" in sch:
            for i, item in enumerate(obj):
                problems += validate(item, sch["items"], root, f"{where}[{i}]")
    if isinstance(obj, int | float) and not isinstance(obj, bool) and obj < sch.get("minimum", obj):
        problems.append(f"{where}: below {sch['minimum']}")
    if isinstance(obj, str) and "pattern" in sch and not re.search(sch["pattern"], obj):
        problems.append(f"{where}: does not match {sch['pattern']}")
    return problems
