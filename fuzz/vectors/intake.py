# SPDX-License-Identifier: GPL-2.0-or-later
"""Every input file passes here before anything runs: size, JSON, schema, then meaning.

A vector file or a bare program comes from anywhere (a reproducer mailed by a user, a
file a fuzzer wrote, a hand-edited test). ``read_json`` caps the file's size and its
nesting; ``check_program`` checks what the JSON Schema cannot say: each operation names a
function of its layer with that function's number of arguments, each ``@k`` names an array
(or block) that exists, integers stand where the function takes integers, and the arrays,
blocks, maps and streams stay within ``Limits`` (so a program of 2**34 words is refused
instead of exhausting memory). Every problem is a ``VectorError`` with its place in the
file: the command prints one line for it, and nothing of the file runs.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.ramblock import RamContext
from recvmap.pymodel.releases import at_release, parse_rules
from recvmap.pymodel.words import BITS_TO_LONGS, Layout
from recvmap.qemu_ref.ram import CRamContext

from ..engine.ram import RamWorld, model_factories
from ..program import Program
from ..program.decode_alloc import alloc_words
from ..program.format import Alloc
from ..program.ram_setup import RAM_FUNCTIONS, RamSetup


class VectorError(ValueError):
    """A vector file that is not a recvmap-vectors-v1 file; the message says where."""


class NotVectorsError(VectorError):
    """A JSON file of another kind (a JSON Schema, another format): skipped, with a note."""


@dataclass(frozen=True)
class Limits:
    """Caps on one input file (``recvmap replay --max-...``)."""

    file_bytes: int = 64 << 20
    words: int = 1 << 22  # words of all arrays of one program (and bits of ram maps / 64)
    ops: int = 100_000  # operations of one program
    tests: int = 1_000_000  # tests of one file
    depth: int = 32  # JSON nesting
    blocks: int = 64  # RAM blocks of one program
    stream_bytes: int = 64 << 20  # a recovery stream built by stream_* operations


DEFAULT_LIMITS = Limits()


def _depth(obj: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)
    return deepest


def parse_json(text: str | bytes, limits: Limits = DEFAULT_LIMITS, where: str = "") -> Any:
    """json.loads with the depth cap; every failure is a VectorError."""
    prefix = f"{where}: " if where else ""
    if len(text) > limits.file_bytes:
        raise VectorError(f"{prefix}{len(text)} bytes, more than the cap of {limits.file_bytes}")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise VectorError(f"{prefix}JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise VectorError(f"{prefix}not JSON: {err}") from None
    if _depth(obj) > limits.depth:
        raise VectorError(f"{prefix}JSON nested deeper than {limits.depth} levels")
    return obj


def read_json(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Any:
    """The JSON of a file, within the size and depth caps."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limits.file_bytes:
            raise VectorError(f"{path}: {size} bytes, more than the cap of {limits.file_bytes}")
        data = path.read_bytes()
    except OSError as err:
        raise VectorError(f"{path}: {err.strerror or err}") from None
    return parse_json(data, limits, str(path))


# --- the meaning of a program -------------------------------------------------------------

_REF = re.compile(r"@[0-9]{1,9}")
_INDEX = re.compile(r"[0-9]{1,12}")


def _params(fn: Callable[..., Any], skip: int = 0) -> list[tuple[str, str, bool]]:
    """(name, annotation, required) of fn's parameters after the first ``skip``."""
    out = []
    for p in list(inspect.signature(fn).parameters.values())[skip:]:
        out.append((p.name, str(p.annotation), p.default is inspect.Parameter.empty))
    return out


def _bitmap_table() -> dict[str, list[tuple[str, str, bool]]]:
    table = {}
    for name, fn in at_release().functions().items():
        sig = inspect.signature(fn)
        params = _params(fn)
        if str(sig.return_annotation) == "Words" or any(a == "Layout" for _, a, _ in params):
            continue  # allocators: a program's arrays are its "arrays"
        table[name] = params
    return table


def _ram_table() -> dict[str, list[tuple[str, str, bool]]]:
    table = {}
    for name in RAM_FUNCTIONS:
        params = _params(getattr(RamContext, name), skip=1)
        if name == "ram_dirty_bitmap_reload":
            params = params[:-1]  # the stream register supplies the stream
        table[name] = [p for p in params if p[1] != "bool | None"]
    # a program's sender may have a larger buffer: the C face's ``spare`` (qemu_ref.ram)
    table["ramblock_recv_bitmap_send"] = _params(CRamContext.ramblock_recv_bitmap_send, skip=1)
    table["stream_truncate"] = [("n", "int", True)]
    table["stream_xor"] = [("pos", "int", True), ("mask", "int", True)]
    table["stream_append"] = [("n", "int", True), ("byte", "int", True)]
    table["stream_set_size"] = [("size", "int", True)]
    table["stream_load"] = [("hex", "str", True)]
    return table


_TABLES: dict[str, dict[str, list[tuple[str, str, bool]]]] = {}


def _table(layer: str) -> dict[str, list[tuple[str, str, bool]]]:
    if layer not in _TABLES:
        _TABLES[layer] = _bitmap_table() if layer == "bitmap" else _ram_table()
    return _TABLES[layer]


def _check_op(where: str, layer: str, op: Any, nrefs: int, limits: Limits) -> None:
    name, args = op[0], op[1]
    if not isinstance(name, str) or not isinstance(args, list):
        raise VectorError(f"{where}: an operation is [name, [arguments]]")
    params = _table(layer).get(name)
    if params is None:
        raise VectorError(f"{where}: {name!r} is not an operation of the {layer} layer")
    if len(op) != 2:
        raise VectorError(f"{where}: an operation is [name, [arguments]], not {len(op)} items")
    low = sum(1 for p in params if p[2])
    if not low <= len(args) <= len(params):
        count = str(low) if low == len(params) else f"{low} to {len(params)}"
        raise VectorError(f"{where}: {name} takes {count} arguments, not {len(args)}")
    for (pname, kind, _), arg in zip(params, args, strict=False):
        place = f"{where}: {name} {pname}"
        if kind in ("Words", "RAMBlock"):
            if not (isinstance(arg, str) and _REF.fullmatch(arg)):
                raise VectorError(f"{place}: expected a reference @k, got {arg!r}")
            if int(arg[1:]) >= nrefs:
                what = "array" if layer == "bitmap" else "block"
                raise VectorError(f"{place}: {arg} names no {what} (the program has {nrefs})")
        elif kind == "int":
            if isinstance(arg, bool) or not isinstance(arg, int):
                raise VectorError(f"{place}: expected an integer, got {arg!r}")
        elif kind == "str":
            if not isinstance(arg, str) or arg.startswith("@"):
                raise VectorError(f"{place}: expected a string, got {arg!r}")
    if name == "stream_load":
        text = args[0]
        if len(text) > 2 * limits.stream_bytes:
            raise VectorError(f"{where}: stream_load of more than {limits.stream_bytes} bytes")
        try:
            bytes.fromhex(text)
        except ValueError:
            raise VectorError(f"{where}: stream_load: not hex digits: {text[:40]!r}") from None
    if name == "stream_append" and not 0 <= args[0] <= limits.stream_bytes:
        raise VectorError(f"{where}: stream_append of {args[0]} bytes: 0 to {limits.stream_bytes}")


def _check_setup(where: str, program: dict[str, Any], limits: Limits) -> int:
    """The ram setup of a program; the number of blocks."""
    setup = program.get("setup")
    if not isinstance(setup, dict):
        raise VectorError(f"{where}: a {program.get('layer')} program needs a setup")
    try:
        arch.target(setup["target"])
        arch.host(setup["host"])
    except KeyError as err:
        raise VectorError(f"{where}.setup: {err.args[0]}") from None
    if program.get("layer") == "recovery" and "sender" not in setup:
        raise VectorError(f"{where}.setup: a recovery program needs setup.sender")
    bits = setup["target_page_bits"]
    # a coarse cap before the model's own rule (_check_world): the smallest page bits any
    # target of the arch table has had (avr: 8 before v10.1) up to 30
    lowest = min(min(t.page_bits_choices()) for t in arch.TARGETS)
    if not lowest <= bits <= 30:
        raise VectorError(f"{where}.setup.target_page_bits: {bits} is not {lowest}..30")
    blocks = setup["blocks"]
    if len(blocks) > limits.blocks:
        raise VectorError(f"{where}.setup: more than {limits.blocks} blocks")
    for i, b in enumerate(blocks):
        for key in ("used_length", "max_length", "postcopy_length"):
            if key in b and b[key] >> bits > limits.words * 64:
                raise VectorError(
                    f"{where}.setup.blocks[{i}].{key}: a map of more than "
                    f"{limits.words * 64} pages (the cap)"
                )
        for key in ("used_length", "max_length", "postcopy_length", "page_size", "host"):
            if key in b and b[key] >= 1 << 64:
                raise VectorError(f"{where}.setup.blocks[{i}].{key}: not a 64-bit value")
    return len(blocks)


def _check_world(where: str, obj: dict[str, Any]) -> None:
    """The model builds the program's RAM blocks: a setup outside QEMU's domain is refused."""
    program = Program.from_json(obj)
    try:
        RamWorld(program, RamSetup.of(program), model_factories())
    except PreconditionError as err:
        raise VectorError(f"{where}.setup: the model refuses it: {err}") from None


def check_release(value: Any, where: str, parse: Callable[[str], Any]) -> None:
    """A release tag, rule set or range that the model knows (``parse``: parse_rules or
    release_range); anything else is a VectorError naming its place."""
    try:
        parse(value)
    except PreconditionError as err:
        raise VectorError(f"{where}: {err}") from None


def _check_alloc(where: str, obj: dict[str, Any], a: dict[str, Any]) -> None:
    """An array the implementation allocates (``program.decode_alloc``): its size is
    BITS_TO_LONGS(nbits), its old words fit its old array, and its words are the model's
    result of the allocation."""
    bpl = obj["bits_per_long"]
    if obj.get("layer", "bitmap") != "bitmap":
        raise VectorError(f"{where}.alloc: arrays are allocated in the bitmap layer only")
    al = a["alloc"]
    nbits, old_nbits = al["nbits"], al.get("old_nbits")
    if BITS_TO_LONGS(nbits, bpl) != a["nwords"]:
        raise VectorError(f"{where}.alloc.nbits: {nbits} bits are not {a['nwords']} words")
    if old_nbits is None and "old" in al:
        raise VectorError(f"{where}.alloc.old: old words without old_nbits")
    if old_nbits is not None and old_nbits > nbits:
        raise VectorError(f"{where}.alloc.old_nbits: more than nbits (zero_extend grows)")
    old_words = BITS_TO_LONGS(old_nbits or 0, bpl)
    for key, value in al.get("old", {}).items():
        if not _INDEX.fullmatch(key) or int(key) >= old_words:
            raise VectorError(f"{where}.alloc.old: no word {key!r} in {old_words} old words")
        if int(value, 16) >> bpl:
            raise VectorError(f"{where}.alloc.old[{key}]: wider than {bpl} bits")
    alloc = Alloc.from_json(al)
    words = alloc_words(Layout(bpl, bool(obj.get("big_endian", False))), alloc)
    given = {int(k): int(v, 16) for k, v in a.get("words", {}).items()}
    if any(words.word(k) != given.get(k, 0) for k in range(words.nwords)):
        raise VectorError(f"{where}.words: not what its allocation gives (the model's result)")


def check_program(obj: Any, limits: Limits = DEFAULT_LIMITS, where: str = "program") -> None:
    """A program's JSON, checked against the schema and for meaning (see the module doc)."""
    root = schema()
    problems = validate(obj, root["$defs"]["program"], root, where)
    if problems:
        raise VectorError(problems[0])
    if obj.get("release") is not None:
        check_release(obj["release"], f"{where}.release", parse_rules)
    layer = obj.get("layer", "bitmap")
    bpl = obj["bits_per_long"]
    if len(obj["ops"]) > limits.ops:
        raise VectorError(f"{where}.ops: more than {limits.ops} operations (the cap)")
    total = 0
    for i, a in enumerate(obj.get("arrays", [])):
        total += a["nwords"]
        if total > limits.words:
            raise VectorError(f"{where}.arrays[{i}]: more than {limits.words} words (the cap)")
        for key, value in a.get("words", {}).items():
            if not _INDEX.fullmatch(key) or int(key) >= a["nwords"]:
                raise VectorError(f"{where}.arrays[{i}].words: no word {key!r}")
            if int(value, 16) >> bpl:
                raise VectorError(f"{where}.arrays[{i}].words[{key}]: wider than {bpl} bits")
        if "alloc" in a:
            _check_alloc(f"{where}.arrays[{i}]", obj, a)
    if layer == "bitmap":
        nrefs = len(obj.get("arrays", []))
    else:
        nrefs = _check_setup(where, obj, limits)
    appended = 0
    for i, op in enumerate(obj["ops"]):
        _check_op(f"{where}.ops[{i}]", layer, op, nrefs, limits)
        if op[0] == "stream_append":
            appended += op[1][0]
            if appended > limits.stream_bytes:
                raise VectorError(
                    f"{where}.ops[{i}]: the stream_append operations add more than "
                    f"{limits.stream_bytes} bytes (the cap)"
                )
    if layer != "bitmap":
        _check_world(where, obj)


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
    additionalProperties, items, minimum, maximum, minItems, pattern, anyOf, $ref to $defs)."""
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
    if isinstance(obj, int | float) and not isinstance(obj, bool) and obj > sch.get("maximum", obj):
        problems.append(f"{where}: above {sch['maximum']} (a newer format than this reader's)")
    if isinstance(obj, str) and "pattern" in sch and not re.search(sch["pattern"], obj):
        problems.append(f"{where}: does not match {sch['pattern']}")
    return problems
