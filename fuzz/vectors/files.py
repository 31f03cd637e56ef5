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

Readable expectations (optional, within version 1): ``words`` states, beside the digests,
the expected words of each image of at most WORDS_INLINE words, in hex ("0x" and
BITS_PER_LONG / 4 digits, word 0 first), as QEMU's tests/unit/test-bitmap.c states them;
larger images keep their digests only. ``errors`` states the error_report line each
operation of a ram or recovery program printed, by operation index (QEMU's messages
change between releases while the verdict stays: 72821d93e0, dcdc460767).

Results in JSON: ``null`` for void, ``true``/``false`` for bool, integers, lists for
tuples, ``{"hex": "..."}`` for byte strings (recovery streams). A byte string longer than
BYTES_INLINE bytes (the stream of a huge map: 8 MiB for 2^26 bits) is written compactly
as ``{"size": N, "sha256": "...", "runs": [[byte, count], ...]}``: its length, its
digest and, when it has at most MAX_RUNS runs of equal bytes, the bytes run-length
encoded (a map is mostly runs of 0x00 and 0xff). A file with a compact result has
``"version": 2``; files without one stay version 1, readable by older readers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recvmap.pymodel import arch
from recvmap.pymodel.releases import (
    DEFAULT_RULES,
    RELEASES,
    Release,
    Rules,
    boundaries,
    parse_rules,
    range_of,
    release_range,
)
from recvmap.pymodel.words import Layout
from recvmap.qemu_ref.loader import GUARDS, guard_from_env, guard_mode, set_guard

from ..engine import Divergence, ModelRun, isolated, model_run
from ..engine.isolate import confirm_budget
from ..engine.replay import replay_images
from ..program import Program
from ..subjects.impls import Subject
from .intake import (
    DEFAULT_LIMITS,
    Limits,
    NotVectorsError,
    VectorError,
    check_program,
    check_release,
    read_json,
    schema,
    validate,
    vectors_dir,
)

SCHEMA = "recvmap-vectors-v1"
VERSION = 1  # files of plain results
VERSION_COMPACT = 2  # files with a compact byte-string result (size, sha256, runs)
BYTES_INLINE = 4096  # longer byte-string results are written compactly
MAX_RUNS = 1024  # runs of a compact result (more: size and sha256 only)
WORDS_INLINE = 64  # images of at most this many words also state their words in hex
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


# --- JSON forms -------------------------------------------------------------------------


def result_json(value: Any, compact: bool = False) -> Any:
    """A result in JSON; with ``compact`` a long byte string as size, sha256 and runs."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if compact and len(data) > BYTES_INLINE:
            return compact_bytes(data)
        return {"hex": data.hex()}
    if isinstance(value, tuple | list):
        return [result_json(v, compact) for v in value]
    raise TypeError(f"result {value!r} has no JSON form")


def compact_bytes(data: bytes) -> dict[str, Any]:
    """``{"size", "sha256", "runs"}`` of a long byte string (runs left out past MAX_RUNS)."""
    out: dict[str, Any] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    runs: list[list[int]] = []
    i = 0
    while i < len(data) and len(runs) <= MAX_RUNS:
        byte = data[i]
        m = _other(byte).search(data, i)  # C speed: the first byte of another value
        end = len(data) if m is None else m.start()
        runs.append([byte, end - i])
        i = end
    if len(runs) <= MAX_RUNS:
        out["runs"] = runs
    return out


@functools.cache
def _other(byte: int) -> re.Pattern[bytes]:
    return re.compile(b"[^" + re.escape(bytes([byte])) + b"]")


def expand_runs(runs: list[list[int]]) -> bytes:
    """The bytes of a compact result's runs (for implementations that want them)."""
    return b"".join(bytes([byte]) * count for byte, count in runs)


def is_compact(obj: Any) -> bool:
    """Whether a JSON result holds a compact byte string anywhere."""
    if isinstance(obj, dict):
        return "sha256" in obj
    if isinstance(obj, list):
        return any(is_compact(v) for v in obj)
    return False


def result_matches(want: Any, value: Any) -> bool:
    """Whether the result ``value`` is the JSON result ``want`` (either byte-string form)."""
    if isinstance(want, dict) and "sha256" in want:
        if not isinstance(value, bytes | bytearray | memoryview):
            return False
        data = bytes(value)
        return len(data) == want.get("size") and hashlib.sha256(data).hexdigest() == want["sha256"]
    if isinstance(want, list) and isinstance(value, tuple | list):
        return len(want) == len(value) and all(
            result_matches(w, v) for w, v in zip(want, value, strict=True)
        )
    try:
        return bool(want == result_json(value))
    except TypeError:
        return False


def brief_json(obj: Any) -> str:
    """A JSON result for a message: long hex cut like the engine cuts long streams."""
    text = json.dumps(obj)
    return text if len(text) <= 200 else text[:160] + f"... ({len(text)} characters)"


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
            host_page_size=s.get("host_page_size") or _base_page(s["host"]),
        )
        if program.layer == "recovery":
            params.update(
                sender_bits_per_long=s["sender"]["bits_per_long"],
                sender_big_endian=s["sender"]["big_endian"],
            )
    return params


def _base_page(host: str) -> int:
    return arch.host(host).base_page


def _outcome(run: ModelRun) -> tuple[Any, ...]:
    results = json.dumps([result_json(r) for r in run.results])
    images = tuple(sorted((k, digest(v)) for k, v in run.images.items()))
    return results, run.rejected, images, tuple(sorted(run.errors.items()))


def image_words(image: bytes, layout: Layout) -> list[str]:
    """The words of a memory image in hex, word 0 first ("0x" and BPL / 4 digits)."""
    n = layout.bytes_per_long
    order = "big" if layout.big_endian else "little"
    return [
        f"0x{int.from_bytes(image[i : i + n], order):0{2 * n}x}" for i in range(0, len(image), n)
    ]


def readable_words(program: Program, images: dict[str, bytes | None]) -> dict[str, list[str]]:
    """``words`` of a test: each allocated image of at most WORDS_INLINE words, in hex."""
    out = {}
    for key, image in images.items():
        layout = _image_layout(program, key)
        if image is not None and len(image) <= WORDS_INLINE * layout.bytes_per_long:
            out[key] = image_words(image, layout)
    return out


def first_word_difference(want: list[str], image: bytes, layout: Layout) -> str | None:
    """ "word k: expected 0x..., actual 0x..." for the first word of ``image`` that is not
    the expected one (None: all equal)."""
    have = image_words(image, layout)
    for k, (w, h) in enumerate(zip(want, have, strict=False)):
        if int(w, 16) != int(h, 16):
            return f"word {k}: expected {w}, actual {h}"
    if len(want) != len(have):
        return f"{len(have)} words, expected {len(want)}"
    return None


def test_range(
    program: Program,
    release: str | Release | Rules | None = None,
    deadline: float | None = None,
    want: tuple[Any, ...] | None = None,
) -> str:
    """The releases around ``release`` at which the model's outcome of ``program`` is the
    same as at ``release`` (a range such as ">=v4.0.0,<v8.2.0"). Past ``deadline``
    (time.monotonic()) no more releases are tried: the range is what was shown by then,
    at least the releases no rule change separates from ``release``. Rules that are no
    release's (a tree between releases) give their own name: exactly those rules."""
    rules = parse_rules(release or program.release)
    if rules.release is None:
        return rules.name
    rel = rules.release
    own = max(r for r in boundaries() if r <= rel)  # no rule changes between own and rel
    if want is None:
        want = _outcome(model_run(program, rel))
    memo: dict[Release, bool] = {}

    def same(r: Release) -> bool:
        if r in (rel, own):
            return True
        if deadline is not None and time.monotonic() > deadline:
            return False
        if r not in memo:
            memo[r] = _outcome(model_run(program, r)) == want
        return memo[r]

    return range_of(same, rel)


def make_test(
    program: Program,
    comment: str,
    flags: list[str] | None = None,
    tc_id: int = 0,
    release: str | Release | Rules | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """A test whose expectations are the model's at ``release`` (default the program's own,
    else the newest): valid, or invalid at its last operation. Its ``release`` range (moved
    to its group by ``vector_file``) is where the model's outcome is the same (as far as
    ``deadline`` allows: see ``test_range``). Long byte-string results are compact."""
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
        "results": [result_json(r, compact=True) for r in run.results],
        "memory": {k: digest(v) for k, v in run.images.items()},
    }
    words = readable_words(program, run.images)
    if words:
        test["words"] = words
    if run.errors:
        test["errors"] = {str(i): text for i, text in sorted(run.errors.items())}
    test["result"] = "valid" if run.rejected is None else "invalid"
    if run.rejected is not None:
        test["reason"] = run.reason
    test["release"] = test_range(program, release, deadline, _outcome(run))
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
    compact = any(is_compact(t["results"]) for t in tests)
    return {
        "schema": SCHEMA,
        "version": VERSION_COMPACT if compact else VERSION,
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


BARE = "bare program"  # the comment of the test made from a bare program
KINDS = ("divergence", "crash", "hang", "slow", "nondeterministic")


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def subject_record(subject: Subject) -> dict[str, Any]:
    """What a reproducer records of the implementation it was found on.

    A user's library: its absolute path and sha256 (replay warns when they differ), so the
    printed replay command runs the same code. Open for more (a QEMU tree, a release).
    """
    record: dict[str, Any] = {"name": subject.name}
    if subject.path is not None:
        record["library"] = str(Path(subject.path).resolve())
        record["sha256"] = file_sha256(subject.path)
    record["word_bits"] = list(subject.widths)
    return record


def replay_command(
    path: str | os.PathLike[str],
    subject: dict[str, Any] | None = None,
    timeout: float | None = None,
    host: str | None = None,
    release: str | None = None,
) -> str:
    """The command line that replays ``path`` on the implementation it was found on
    (with ``--timeout`` for a program known to be slow; ``host``: our C on that emulated
    host; ``release``: at those rules, when the file's programs do not carry them)."""
    words = ["recvmap", "replay"]
    if host is not None:
        words += ["--host", host]
    if release is not None:
        words += ["--release", release]
    if subject and subject.get("library"):
        words += ["--impl", str(subject["library"])]
        if len(subject.get("word_bits", [])) == 1:
            words += ["--word-bits", str(subject["word_bits"][0])]
    if timeout is not None:
        words += ["--timeout", f"{timeout:g}"]
    return " ".join(shlex.quote(w) for w in [*words, str(path)])


def write_divergence(
    program: Program,
    divergence: Divergence,
    impl_name: str,
    out_dir: str | os.PathLike[str],
    kind: str = "divergence",
    subject: dict[str, Any] | None = None,
    comment: str | None = None,
    deadline: float | None = None,
    cut: list[str] | None = None,
    replay_timeout: float | None = None,
) -> Path:
    """The minimized program of a finding as a one-test vector file; its path.

    ``kind`` names the file: divergence-, crash-, hang-, slow- or
    nondeterministic-<layer>-<hash>. ``comment`` replaces the one made from the
    divergence; past ``deadline`` the release range is not widened further, and what was
    cut short (``cut``, appended to) is said in the comment. With ``subject`` (the
    implementation's record) the file says what it was found on, the rules and guard
    side it ran with, and the command that replays it (``replay_timeout``: its --timeout).
    """
    assert kind in KINDS, kind
    what = {"divergence": "diverged", "crash": "crashed", "hang": "hung"}.get(kind, kind)
    if comment is None:
        comment = f"{impl_name} {what}: {divergence.describe()}"
    if program.release:
        comment += f" (at QEMU {program.release})"
    cut = [] if cut is None else cut
    test = make_test(program, comment, ["Divergence", "ModelSnapshot"], deadline=deadline)
    if deadline is not None and time.monotonic() > deadline:
        cut.append("release range")
    if cut:
        test["comment"] += f" [cut short by --max-time: {', '.join(cut)}]"
    text = json.dumps(test["program"], sort_keys=True)
    name = f"{kind}-{program.layer}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"
    path = Path(out_dir) / name
    obj = vector_file([test])
    if subject:  # what it was found on and with, and the command that replays it
        obj["subject"] = {
            **subject,
            "release": parse_rules(program.release).name,
            "guard": program.guard,
            "replay": replay_command(path, subject, replay_timeout),
        }
    return write_vector_file(path, obj)


# --- loading and replaying --------------------------------------------------------------


@dataclass
class Case:
    """One test of a vector file, with its group and file."""

    path: Path
    group: dict[str, Any]
    test: dict[str, Any]
    subject: dict[str, Any] | None = None  # reproducers: the implementation it was found on

    @property
    def program(self) -> Program:
        return Program.from_json(self.test["program"])

    @property
    def name(self) -> str:
        return f"{self.path.name}#{self.test['tcId']}"

    def release_for(self, release: str | Release | Rules | None) -> Rules:
        """The rules to replay at: those asked for, else the program's, else the newest."""
        return parse_rules(release or self.test["program"].get("release"))

    def covers(self, rules: Release | Rules) -> bool:
        """Whether the vector's expectations hold under ``rules``.

        The rules of a release: the group's release range holds it. Rules between
        releases (a tree that has some changes of the next release, not all): a range
        names releases only, so it cannot say; but a range is, by construction, the
        releases at which the model's outcome of the program equals the expectation, so
        the same question is asked of these rules directly: the vector applies when the
        model's outcome under them equals its expectations (or its range names exactly
        these rules). The implementation is then compared with the model as always.
        """
        rules = parse_rules(rules)
        holds = release_range(str(self.group.get("release", "*")))(rules)
        if holds or rules.release is not None:
            return holds
        return check_model(self, rules) is None


def load_file(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> list[Case]:
    """Every test of a vector file, or of a bare program / reproducer JSON.

    Everything is checked (``fuzz.intake``) before anything runs: a file that is not
    JSON, too large, not valid against the schema or meaningless raises VectorError; a
    JSON file of another kind raises NotVectorsError (skip it). The file is read once:
    right after ``is_vector_file`` (``iter_files``) its parsed JSON is reused.
    """
    path = Path(path)
    return load_obj(_read_json_once(path, limits), path, limits)


# The JSON ``is_vector_file`` parsed last, with the file's identity and the caps it was
# read under: ``load_file`` of the same unchanged file takes it instead of reading again.
_LAST: list[tuple[tuple[Any, ...], Any]] = []


def _identity(path: Path, limits: Limits) -> tuple[Any, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, limits)


def _read_json_once(path: Path, limits: Limits) -> Any:
    if _LAST:
        (key, obj), ident = _LAST.pop(), _identity(path, limits)
        if ident is not None and key == ident:
            return obj
    return read_json(path, limits)


def load_obj(obj: Any, path: Path, limits: Limits = DEFAULT_LIMITS) -> list[Case]:
    """``load_file`` of already parsed JSON (``path`` names it in messages)."""
    if isinstance(obj, dict) and "ops" in obj and "testGroups" not in obj:
        check_program(obj, limits, f"{path}")
        program = Program.from_json(obj)  # a bare program: expectations from the model
        try:
            test = make_test(program, BARE, [], 1)
        except ValueError as err:  # an operation the model rejects before the last one
            raise VectorError(f"{path}: {err}") from None
        group = {**group_params(program), "release": test.pop("release")}
        return [Case(path, group, test)]
    if not isinstance(obj, dict) or obj.get("schema") != SCHEMA:
        kind = obj.get("schema", obj.get("$schema")) if isinstance(obj, dict) else None
        if isinstance(kind, str):
            raise NotVectorsError(f"{path}: not a {SCHEMA} file ({kind}): skipped")
    problems = validate(obj, schema())
    if problems:
        raise VectorError(f"{path}: {problems[0]}")
    if sum(len(g["tests"]) for g in obj["testGroups"]) > limits.tests:
        raise VectorError(f"{path}: more than {limits.tests} tests (the cap)")
    cases = []
    for gi, group in enumerate(obj["testGroups"]):
        check_release(group["release"], f"{path}: testGroups[{gi}].release", release_range)
        for ti, test in enumerate(group["tests"]):
            where = f"{path}: testGroups[{gi}].tests[{ti}]"
            check_program(test["program"], limits, f"{where}.program")
            check_results(test["results"], f"{where}.results")
            if test["result"] == "invalid" and not test["program"]["ops"]:
                raise VectorError(f"{where}: an invalid test needs the operation it rejects")
            check_readable(test, where)
            params = group_params(Program.from_json(test["program"]))
            shared = {k: group[k] for k in GROUP_KEYS if k in group}
            if shared != params:
                raise VectorError(
                    f"{path}: test {test['tcId']}: program parameters {params} "
                    f"differ from its group's {shared}"
                )
            cases.append(Case(path, group, test, obj.get("subject")))
    return cases


def check_readable(test: dict[str, Any], where: str) -> None:
    """``words`` name arrays of ``memory``; ``errors`` name operations of the program."""
    unknown = set(test.get("words", {})) - set(test["memory"])
    if unknown:
        raise VectorError(f"{where}.words: {sorted(unknown)[0]!r} is no array of its memory")
    nops = len(test["program"]["ops"])
    for key in test.get("errors", {}):
        if not (key.isdigit() and int(key) < nops):
            raise VectorError(f"{where}.errors: {key!r} is no operation index (0..{nops - 1})")


def check_results(results: Any, where: str) -> None:
    """Byte-string results are ``{"hex"}`` or compact ``{"size", "sha256"[, "runs"]}``
    whose runs add up to the size; anything else that is an object is an error."""
    stack = [(results, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, list):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, dict):
            _check_bytes(item, at)


def _check_bytes(item: dict[str, Any], at: str) -> None:
    if set(item) == {"hex"} and isinstance(item["hex"], str):
        try:
            bytes.fromhex(item["hex"])
            return
        except ValueError:
            raise VectorError(f"{at}: not hex digits: {item['hex'][:40]!r}") from None
    size, sha, runs = item.get("size"), item.get("sha256"), item.get("runs", [])
    if not set(item) <= {"size", "sha256", "runs"} or not (
        isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and isinstance(sha, str)
        and re.fullmatch("[0-9a-f]{64}", sha)
        and isinstance(runs, list)
    ):
        raise VectorError(f'{at}: a byte string is {{"hex"}} or {{"size", "sha256", "runs"}}')
    if "runs" in item:
        ok = all(
            isinstance(r, list)
            and len(r) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) for x in r)
            and 0 <= r[0] <= 255
            and r[1] >= 1
            for r in runs
        )
        if not ok or sum(r[1] for r in runs) != size:
            raise VectorError(f"{at}: runs must be [byte, count] pairs adding up to size {size}")


def is_vector_file(path: Path, limits: Limits = DEFAULT_LIMITS) -> bool:
    """A recvmap-vectors-v1 file (folders may hold other JSON: schema, other formats)."""
    ident = _identity(path, limits)
    try:
        obj = read_json(path, limits)
    except VectorError:
        return False
    if ident is not None and _identity(path, limits) == ident:
        _LAST[:] = [(ident, obj)]
    return isinstance(obj, dict) and obj.get("schema") == SCHEMA


def iter_files(paths: list[str | os.PathLike[str]]) -> Iterator[Path]:
    """Named files as they are; in a folder, its recvmap-vectors-v1 files (each read once,
    when ``load_file`` follows at once: the usual loop)."""
    for p in map(Path, paths):
        if p.is_dir():
            for q in sorted(p.glob("*.json")):
                if is_vector_file(q):
                    yield q
        else:
            yield p


def expand(paths: list[Path]) -> Iterator[tuple[Path, bool]]:
    """The files ``paths`` name, nothing read: (path, True) for a named file, (path, False)
    for each ``*.json`` of a named folder."""
    for p in paths:
        if p.is_dir():
            yield from ((q, False) for q in sorted(p.glob("*.json")))
        else:
            yield p, True


@dataclass
class Verdict:
    case: Case
    # "pass", "fail", "skip"; "slow" (outran --timeout, completes alone: not a finding),
    # "unconfirmed" (a crash that did not come back alone: not a finding), "error"
    # (recvmap's own failure on this vector, never the implementation's)
    status: str
    message: str = ""


def check_model(case: Case, release: str | Release | Rules | None = None) -> str | None:
    """Why the model at ``release`` disagrees with the vector's expectations (None: it
    agrees)."""
    program, test = case.program, case.test
    run = model_run(program, case.release_for(release))
    if test["result"] == "invalid":
        if run.rejected != len(program.ops) - 1:
            return f"the model does not reject the last operation {program.ops[-1]}"
    elif run.rejected is not None:
        return f"the model rejects op #{run.rejected} {program.ops[run.rejected]}: {run.reason}"
    got = run.results
    for i, (want, have) in enumerate(zip(test["results"], got, strict=False)):
        if not result_matches(want, have):
            return (
                f"op #{i} {program.ops[i]}: the model returns "
                f"{brief_json(result_json(have, compact=True))}, vector says {brief_json(want)}"
            )
    if len(got) != len(test["results"]):
        return f"{len(got)} results, vector has {len(test['results'])}"
    errors = {str(i): text for i, text in run.errors.items()}
    if "errors" in test and test["errors"] != errors:
        return f"error_report lines: the model prints {errors}, vector says {test['errors']}"
    for key, want_words in test.get("words", {}).items():
        image = run.images.get(key)
        layout = _image_layout(program, key)
        differs = "no map" if image is None else first_word_difference(want_words, image, layout)
        if differs:
            return f"memory of {key}: the model's {differs.replace('actual', 'model')}"
    memory = {k: digest(v) for k, v in run.images.items()}
    for key, want in test["memory"].items():
        if memory.get(key, "absent") != want:
            return f"memory of {key}: the model's sha256 is {memory.get(key)}, vector says {want}"
    return None


def check_impl(
    case: Case, subject: Subject, release: str | Release | Rules | None = None
) -> tuple[str, str]:
    """("pass"|"fail"|"skip", message) for the implementation on the vector's program.

    The implementation must agree with the model after every operation, return the
    vector's results, and leave the memory the vector's digests describe (compared
    directly, not through the model). A subject on another host may retarget the program
    to its byte order (``adapt``: same words, the host's order; its images are read back
    in the vector's order) or refuse its layout (a ValueError naming it: skipped).
    """
    program = case.program.at(case.release_for(release).name)
    adapt = getattr(subject, "adapt", None)
    if adapt is not None:
        try:
            program = adapt(program)
        except ValueError as err:
            return "skip", str(err)
        if program.layout != case.program.layout and not _order_free(case, program):
            return "skip", (
                f"{case.program.layout.text} words: its expectations depend on the byte order "
                f"(the same words on {program.layout.text} words give others), so "
                f"{subject.name} runs its twin of that layout instead"
            )
    if case.test["result"] == "invalid":
        program = program.with_ops(program.ops[:-1])  # never hand C the invalid call
        if not program.ops and case.test["comment"] == BARE:
            return "skip", (
                "did not run: the program's only operation is outside QEMU's domain "
                f"({case.test.get('reason', 'the model rejects it')}); nothing reached "
                f"{subject.name}"
            )

    # The guard page side the program ran with, when it says (a fuzzer's reproducer),
    # else both in turn (unless RECVMAP_GUARD chose one): a read past the end and a read
    # before the start of an array each fault under one of them. A subject whose C runs
    # in another process (a host's driver) has no guard pages to choose.
    guards = getattr(subject, "guards", True) and not guard_from_env()
    if guards and program.guard in GUARDS:
        modes = [program.guard]
    else:
        modes = [g for g in GUARDS if g != "none"] if guards else [guard_mode()]
    images: dict[str, bytes | None] = {}
    try:
        for mode in modes:
            set_guard(mode)
            results, divergence, images = replay_images(program, subject)
            if divergence is not None:
                return "fail", f"{subject.name} diverges: {divergence.describe()}" + (
                    _as_words(divergence, program)
                )
    except ValueError as err:
        return "skip", str(err)
    finally:
        set_guard(None)
    want = case.test["results"][: len(program.ops)]
    if len(want) != len(results) or not all(
        result_matches(w, r) for w, r in zip(want, results, strict=True)
    ):
        got = [result_json(r, compact=True) for r in results]
        return "fail", f"results {brief_json(got)} differ from the vector's {brief_json(want)}"
    for key, expected in case.test["memory"].items():
        image = images.get(key, b"absent")
        if image is not None and image != b"absent":
            image = in_order(image, _image_layout(program, key), _image_layout(case.program, key))
            want_words = case.test.get("words", {}).get(key)
            differs = want_words and first_word_difference(
                want_words, image, _image_layout(case.program, key)
            )
            if differs:
                return "fail", f"memory of {key} after the program: {differs}"
        if image == b"absent" or digest(image) != expected:
            return "fail", (
                f"memory of {key}: {subject.name} leaves sha256 {digest(image)}, "
                f"the vector says {expected}"
            )
    return "pass", ""


def _order_free(case: Case, retargeted: Program) -> bool:
    """Whether the vector's expectations hold for ``retargeted`` (the same program in the
    other byte order): its model results are the vector's, and its memory, read back in
    the vector's byte order, the vector's digests. Not so where a result depends on the
    byte order (bitmap_to_le)."""
    run = model_run(retargeted)
    if run.rejected is not None and case.test["result"] == "valid":
        return False
    want = case.test["results"]
    if len(want) != len(run.results) or not all(
        result_matches(w, r) for w, r in zip(want, run.results, strict=True)
    ):
        return False
    for key, expected in case.test["memory"].items():
        image = run.images.get(key)
        if image is not None:
            have = _image_layout(retargeted, key)
            image = in_order(image, have, _image_layout(case.program, key))
        if digest(image) != expected:
            return False
    return True


def _as_words(divergence: Divergence, program: Program) -> str:
    """A memory divergence's first differing word as values in the program's layout:
    "; as words: expected (the model) 0x..., actual 0x..." ("" for other divergences)."""
    if divergence.what != "memory" or divergence.words is None:
        return ""
    key = divergence.label or f"@{divergence.array}"
    layout = _image_layout(program, key)
    k, model, impl = divergence.words
    if len(model) != 2 * layout.bytes_per_long:
        return ""
    want, have = image_words(bytes.fromhex(model), layout), image_words(bytes.fromhex(impl), layout)
    return f"; word {k} of {key}: expected (the model) {want[0]}, actual {have[0]}"


def _image_layout(program: Program, key: str) -> Layout:
    """The word layout of the array or map ``key`` of a program's memory."""
    if program.layer == "recovery" and key.startswith("destination:"):
        s = program.setup["sender"]
        return Layout(int(s["bits_per_long"]), bool(s["big_endian"]))
    return program.layout


def in_order(image: bytes, have: Layout, want: Layout) -> bytes:
    """A memory image of ``have``'s words in ``want``'s byte order (same word width)."""
    if have.big_endian == want.big_endian:
        return image
    n = have.bytes_per_long
    return b"".join(image[i : i + n][::-1] for i in range(0, len(image), n))


def replay(
    case: Case,
    subject: Subject | None,
    isolate: bool = True,
    release: str | Release | Rules | None = None,
    timeout: float | None = None,
) -> Verdict:
    """Check the model against the vector, then the implementation against the model, at
    ``release`` (default: the program's own, else the newest). A vector whose group range
    does not hold the release is skipped. Our C reference implements the newest release
    only: at an older release it is not compared (model only).

    With ``isolate`` the implementation runs in a forked child, so a crash of its C code
    (a segfault, an assert, an exit, a process started) is a failing verdict naming it, not
    the end of the run, and a child still running after ``timeout`` seconds is killed: a
    HANG verdict. Either is confirmed alone before it is one (``confirm_alone``).
    """
    rel = case.release_for(release)
    if not case.covers(rel):
        return Verdict(case, "skip", f"not at {rel} (release range {case.group.get('release')})")
    problem = check_model(case, rel)
    if problem is not None:
        return Verdict(case, "fail", f"model at {rel}: {problem}")
    if subject is None:
        return Verdict(case, "pass", "model only")
    if rel != DEFAULT_RULES and getattr(subject, "path", None) is None:
        return Verdict(case, "pass", f"model only (our C implements {DEFAULT_RULES})")
    runner = getattr(subject, "isolated", None)  # a subject whose C runs elsewhere
    if not isolate:
        status, message = check_impl(case, subject, rel)
        return Verdict(case, status, message)

    def run(limit: float | None) -> tuple[str, str]:
        if runner is not None:
            return runner(check_impl, case, subject, rel, timeout=limit)  # type: ignore[no-any-return]
        return isolated(check_impl, case, subject, rel, timeout=limit)  # type: ignore[no-any-return]

    status, message = run(timeout)
    if status == "fail" and suspicion(message) is not None:
        status, message = confirm_alone(run, message, timeout)
    return Verdict(case, status, message)


def suspicion(message: str) -> str | None:
    """ "hang" or "crash" for a failing verdict that must be confirmed alone (None: a
    divergence, which the replay states whole)."""
    if message.startswith("HANG"):
        return "hang"
    if " crashed " in message or message.startswith("the implementation "):
        return "crash"
    return None


def confirm_alone(run: Any, message: str, timeout: float | None) -> tuple[str, str]:
    """Run a vector whose replay hung or crashed (``message``) again, alone, in a fresh
    child (``run(limit)``): a HANG gets ``confirm_budget(timeout)`` (on a loaded machine, or
    under qemu-user, a correct program can outrun --timeout), a crash must come back the
    same way. Not confirmed is never a failing verdict: "slow" or "unconfirmed"."""
    if suspicion(message) == "hang":
        budget = confirm_budget(timeout or 0.0)
        t0 = time.monotonic()
        again, said = run(budget)
        took = time.monotonic() - t0
        if again == "pass":
            return "slow", (
                f"SLOW: outran --timeout {timeout:g} s; alone it completes in {took:.1f} s "
                "(not a finding)"
            )
        if again == "fail" and said.startswith("HANG"):
            return "fail", f"{message}; confirmed alone: still running after {budget:g} s"
        return again, f"{said} (alone; at first: {message})"
    again, said = run(timeout)
    if (
        again == "fail"
        and said.split(" on this program")[0] == message.split(" on this program")[0]
    ):
        return "fail", f"{message} (confirmed: again when re-run alone)"
    return "unconfirmed", (
        f"NOT CONFIRMED: {message}; re-run alone: {said or again} (not a finding)"
    )


# --- the schema and the packaged vectors ------------------------------------------------


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
