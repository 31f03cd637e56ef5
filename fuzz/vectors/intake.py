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

import functools
import inspect
import json
import os
import re
import stat
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
    items: int = 1 << 17  # JSON values of one file (members and elements), counted unparsed
    work: int = 1 << 23  # words one run of a program may visit, estimated (``program_work``)


DEFAULT_LIMITS = Limits()


# --- reading a file: its kind and size first, then one read under the cap ----------------


def _pseudo_devices() -> frozenset[int]:
    """The devices of /proc and /sys: their files say size 0 or 4096 whatever they hold,
    and reading some of them blocks or fails (/proc/self/mem, /proc/kmsg)."""
    devs = set()
    for root in ("/proc", "/sys"):
        try:
            devs.add(os.stat(root).st_dev)
        except OSError:
            continue
    return frozenset(devs)


_PSEUDO: frozenset[int] | None = None

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_problem(st: os.stat_result) -> str | None:
    """Why a file of this status is not one to read (None: a regular file of a disk)."""
    global _PSEUDO
    for test, name in _KINDS:
        if test(st.st_mode):
            return f"not a regular file but {name}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if _PSEUDO is None:
        _PSEUDO = _pseudo_devices()
    if st.st_dev in _PSEUDO:
        return "a file of /proc or /sys, not a regular file"
    return None


def read_input(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of one input file, read once: its kind (a regular file, not a FIFO, a
    device, a folder or a file of /proc) and size are checked before anything is read, the
    size cap again while reading (a file that grows), and every failure is one VectorError
    line naming the file."""
    path = Path(path)
    cap = limits.file_bytes
    try:
        why = _kind_problem(os.stat(path))
        if why:
            raise VectorError(f"{path}: {why}")
        # O_NONBLOCK: a FIFO swapped in after the stat does not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as err:
        raise VectorError(f"{path}: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        why = _kind_problem(st)
        if why:
            raise VectorError(f"{path}: {why}")
        if st.st_size > cap:
            raise VectorError(f"{path}: {st.st_size} bytes, more than the cap of {cap}")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > cap:
                raise VectorError(f"{path}: more than the cap of {cap} bytes (it grew)")
    except OSError as err:
        raise VectorError(f"{path}: {err.strerror or err}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


# --- JSON: its values counted before it is parsed, its depth after ------------------------


def json_items(data: bytes) -> int:
    """At most how many values a JSON text holds, counted on its bytes before any object is
    built: each value but the first follows a ``,`` or opens with ``[`` or ``{``. Those
    bytes inside strings are counted too (the bound is then loose, never short). Three
    C-speed passes: about 0.1 s for 64 MiB."""
    return data.count(b",") + data.count(b"[") + data.count(b"{") + 1


def json_depth(obj: Any, stop: int) -> int:
    """The nesting depth of parsed JSON (a scalar is 0), level by level without recursion;
    it stops counting past ``stop``."""
    level = [obj] if type(obj) in (dict, list) else []
    depth = 0
    while level and depth <= stop:
        depth += 1
        below: list[Any] = []
        for c in level:
            below += [v for v in (c.values() if type(c) is dict else c) if type(v) in (dict, list)]
        level = below
    return depth


def parse_json(text: str | bytes, limits: Limits = DEFAULT_LIMITS, where: str = "") -> Any:
    """json.loads within the caps: size and values (``json_items``) before anything is
    parsed, so memory stays proportional to the file (about 100 bytes per value at most);
    depth after (a document deeper than Python's recursion is refused by json itself).
    Every failure is a VectorError."""
    prefix = f"{where}: " if where else ""
    data = text.encode(errors="surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > limits.file_bytes:
        raise VectorError(f"{prefix}{len(data)} bytes, more than the cap of {limits.file_bytes}")
    if json_items(data) > limits.items:
        raise VectorError(
            f"{prefix}more than {limits.items} JSON values (the cap; commas and brackets counted)"
        )
    try:
        obj = json.loads(data)
    except RecursionError:
        raise VectorError(f"{prefix}JSON nested deeper than {limits.depth} levels") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise VectorError(f"{prefix}not JSON: {_brief(err)}") from None
    if json_depth(obj, limits.depth) > limits.depth:
        raise VectorError(f"{prefix}JSON nested deeper than {limits.depth} levels")
    return obj


def _brief(err: Exception, width: int = 120) -> str:
    """An exception's message on one bounded line (it may quote the input)."""
    text = " ".join(str(err).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def read_json(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Any:
    """The JSON of a file (``read_input``), within the size, depth and value caps."""
    return parse_json(read_input(path, limits), limits, str(path))


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
    work = program_work(obj)
    if work > limits.work:
        raise VectorError(
            f"{where}.ops: may visit {work} words in one run, more than the cap of "
            f"{limits.work} (arrays or maps x operations; --max-work)"
        )
    if layer != "bitmap":
        _check_world(where, obj)


def program_work(obj: dict[str, Any]) -> int:
    """The words one run of a checked program may visit, at most: what its operations
    touch, and the maps its setup allocates. A bitmap operation touches, in each array it
    names, no more words than the array has nor than its integer arguments (bit numbers
    and counts) reach; a ram operation is counted as visiting every map and the stream.
    The model's slowest operations go at about 30 ns a word (``bitmap_copy_with_src_offset``
    on 2**22 words takes 0.13 s), so the default cap keeps one run under about 0.3 s."""
    bpl = obj["bits_per_long"]
    if obj.get("layer", "bitmap") == "bitmap":
        sizes = [a["nwords"] for a in obj.get("arrays", [])]
        total = 0
        for _name, args in obj["ops"]:
            reach = sum(a for a in args if type(a) is int and a > 0) // bpl + 1
            total += sum(min(sizes[int(a[1:])], reach) for a in args if type(a) is str) + 1
        return total
    setup = obj["setup"]
    bits = setup["target_page_bits"]
    maps = sum(
        (max(b.get("used_length", 0), b.get("max_length", 0)) >> bits) // bpl + 1
        for b in setup["blocks"]
    )
    stream = sum(max(0, a[0]) for n, a in obj["ops"] if n == "stream_append") // 8
    stream += sum(len(a[0]) for n, a in obj["ops"] if n == "stream_load") // 16
    return maps + len(obj["ops"]) * (maps + stream + 1)


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
    additionalProperties, items, minimum, maximum, minItems, pattern, anyOf, $ref to $defs).

    A place in the file is written out only for a problem: a file of a million values is
    checked in about a second (a path string per value took ten)."""
    return [f"{_place(at)}: {problem}" for at, problem in _check(obj, sch, root or sch, where)]


_At = Any  # a place: the root's name, or (parent place, key or index)


def _place(at: _At) -> str:
    steps: list[str] = []
    while isinstance(at, tuple):
        at, step = at
        steps.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return str(at) + "".join(reversed(steps))


@functools.lru_cache(maxsize=64)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _check(obj: Any, sch: dict[str, Any], root: dict[str, Any], at: _At) -> list[tuple[_At, str]]:
    if "$ref" in sch:
        name = sch["$ref"].rsplit("/", 1)[-1]
        return _check(obj, root["$defs"][name], root, at)
    if "anyOf" in sch:
        if all(_check(obj, s, root, at) for s in sch["anyOf"]):
            return [(at, "matches none of the allowed forms")]
    types = sch.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        ok = any(
            isinstance(obj, _TYPES[t])
            and not (t in ("integer", "number") and isinstance(obj, bool))
            for t in names
        )
        if not ok:
            return [(at, f"expected {'/'.join(names)}, got {type(obj).__name__}")]
    if "const" in sch and obj != sch["const"]:
        return [(at, f"must be {sch['const']!r}")]
    if "enum" in sch and obj not in sch["enum"]:
        return [(at, f"must be one of {sch['enum']}")]
    problems: list[tuple[_At, str]] = []
    if isinstance(obj, dict):
        for key in sch.get("required", []):
            if key not in obj:
                problems.append((at, f"missing {key!r}"))
        props = sch.get("properties", {})
        more = sch.get("additionalProperties")
        fast = _leaf(more) if isinstance(more, dict) and not props else None
        if fast is not None and all(map(fast, obj.values())):
            pass  # a map of many plain values (an array's words), all fine
        else:
            for key, value in obj.items():
                if key in props:
                    problems += _check(value, props[key], root, (at, key))
                elif more is False:
                    problems.append((at, f"unexpected {_brief_key(key)}"))
                elif isinstance(more, dict):
                    problems += _check(value, more, root, (at, key))
    if isinstance(obj, list):
        if len(obj) < sch.get("minItems", 0):
            problems.append((at, f"at least {sch['minItems']} items"))
        if "items" in sch:
            items = sch["items"]
            fast = _leaf(items)
            if fast is None or not all(map(fast, obj)):
                for i, item in enumerate(obj):
                    problems += _check(item, items, root, (at, i))
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        if obj < sch.get("minimum", obj):
            problems.append((at, f"below {sch['minimum']}"))
        if obj > sch.get("maximum", obj):
            problems.append((at, f"above {sch['maximum']} (a newer format than this reader's)"))
    if isinstance(obj, str) and "pattern" in sch and not _pattern(sch["pattern"]).search(obj):
        problems.append((at, f"does not match {sch['pattern']}"))
    return problems


_LEAF_KEYS = frozenset({"type", "pattern", "description"})
_LEAVES: dict[int, Any] = {}


def _leaf(sch: dict[str, Any]) -> Callable[[Any], bool] | None:
    """A quick yes for a value of a schema that is only a type (and a pattern): the many
    words of an array are checked at C speed; a no is looked at again by ``_check``, which
    says why. None: the schema is more than that."""
    key = id(sch)
    if key not in _LEAVES:
        types = sch.get("type")
        fast = None
        if set(sch) <= _LEAF_KEYS and types in ("string", "integer"):
            if types == "integer":
                fast = _is_int
            elif "pattern" in sch:
                search = _pattern(sch["pattern"]).search
                fast = lambda v: type(v) is str and search(v) is not None  # noqa: E731
            else:
                fast = lambda v: type(v) is str  # noqa: E731
        _LEAVES[key] = (sch, fast)  # the schema is kept: its id stays its own
    return _LEAVES[key][1]  # type: ignore[no-any-return]


def _is_int(v: Any) -> bool:
    return type(v) is int


def _brief_key(key: str, width: int = 40) -> str:
    """A key of the file, quoted and bounded (it is the user's text)."""
    text = repr(key)
    return text if len(text) <= width else text[: width - 4] + "...'"
