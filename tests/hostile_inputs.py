# SPDX-License-Identifier: GPL-2.0-or-later
"""A seeded generator of malformed inputs for the hostile-input suite (issue 22, part 4).

``vector_files(seed, n)``: n files a user could hand ``recvmap replay`` or the pytest
plugin's ``--recvmap-vectors``: real vector files and bare programs (tests/vectors, cut to a
few tests) with one or more values changed to a wrong type, a huge or negative number, NaN,
a missing or duplicated member, another schema or version, absurd sizes and word counts,
unicode junk; and texts broken as text: truncated, bytes flipped, deeply nested, not UTF-8.
``raw_inputs(seed, n)``: fuzzer inputs of every length and shape (a harness decodes any
bytes). Each generated input has a name saying how it was made, so a failure names its
recipe; the same seed gives the same inputs.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from test_hostile import _GOOD

LAYERS = ("bitmap", "ram", "recovery")
VECTORS = Path(__file__).resolve().parent / "vectors"
SOURCES = (
    "bitmap-rules.json",
    "bitmap-divergences.json",
    "ram-rules.json",
    "ram-final-state.json",
    "recovery_stream_v1.json",
    "release-deltas.json",
)
PROGRAM = _GOOD  # a bare program (what a reproducer's "program" holds)

Input = tuple[str, bytes]  # (how it was made, its bytes)


def _small(obj: Any, tests: int = 3) -> Any:
    """A vector file cut to its first group and first ``tests`` tests (still real)."""
    obj = copy.deepcopy(obj)
    if isinstance(obj, dict) and isinstance(obj.get("testGroups"), list) and obj["testGroups"]:
        group = obj["testGroups"][0]
        if isinstance(group, dict) and isinstance(group.get("tests"), list):
            group["tests"] = group["tests"][:tests]
        obj["testGroups"] = [group]
        obj["numberOfTests"] = len(group.get("tests", []))
    return obj


def seeds() -> list[tuple[str, Any, str]]:
    """(name, parsed JSON cut small, the whole file's text) of each real input."""
    out = []
    for name in SOURCES:
        text = (VECTORS / name).read_text()
        out.append((name, _small(json.loads(text)), text))
    out.append(("program", PROGRAM, json.dumps(PROGRAM)))
    return out


def _places(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the JSON (key paths), the root included."""
    found = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _places(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += _places(v, (*path, i))
    return found


HUGE = [2**31, 2**32 + 5, 2**63, 2**64 + 5, -(2**63) - 1, 10**30, -1, 2**40, 2**62]
JUNK_TEXT = ["", "\u0000", "\ud800x", "\u202e", "@", "@99999999", "@-1", "0x", "0xZZ", "é" * 50]


def _value(rng: random.Random) -> Any:
    """A value of the wrong kind or an absurd size."""
    pick = rng.randrange(9)
    if pick == 0:
        return rng.choice(HUGE)
    if pick == 1:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, 0.5, -0.0])
    if pick == 2:
        return rng.choice(JUNK_TEXT)
    if pick == 3:
        return rng.choice([None, True, False])
    if pick == 4:
        return rng.choice([[], {}, [[]], {"": {}}, [None] * 5])
    if pick == 5:
        return "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(1, 20)))
    if pick == 6:
        return hex(rng.choice(HUGE) & (2**128 - 1))
    if pick == 7:
        return {"nwords": rng.choice(HUGE), "words": {str(rng.choice(HUGE)): "0x1"}}
    return rng.randrange(-5, 300)


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    return obj


def _delete(obj: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return {}
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    del parent[path[-1]]
    return obj


def _tree_mutation(rng: random.Random, obj: Any, grow: bool) -> tuple[str, Any]:
    """One change of the parsed JSON (``grow``: a list may be repeated); what it did."""
    obj = copy.deepcopy(obj)
    places = _places(obj)
    path = rng.choice(places)
    pick = rng.randrange(6)
    if pick <= 2:
        value = _value(rng)
        return f"set {list(path)} to {str(value)[:40]!r}", _set(obj, path, value)
    if pick == 3:
        return f"delete {list(path)}", _delete(obj, path)
    if pick == 4:
        key = rng.choice(["schema", "version", "layer", "bits_per_long", "numberOfTests"])
        value = rng.choice(["recvmap-vectors-v2", 99, "bitmap", 48, -1, None, 2**64])
        if isinstance(obj, dict):
            obj[key] = value
        return f"{key} = {value!r}", obj
    # a list grown to many copies of one element (absurd counts)
    lists = [p for p in places if isinstance(_get(obj, p), list) and _get(obj, p)]
    if not lists or not grow:
        return "unchanged", obj
    p = rng.choice(lists)
    target = _get(obj, p)
    small = len(json.dumps(target[0], allow_nan=True)) < 200  # a long list, not a big file
    target.extend([target[0]] * (rng.choice([500, 5000]) if small else 20))
    return f"{list(p)} repeated", obj


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def _text_mutation(rng: random.Random, text: str, whole: str) -> tuple[str, bytes]:
    """One change of the text (or of the whole real file's); what it did."""
    data = text.encode()
    pick = rng.randrange(8)
    if pick == 0:
        cut = rng.randrange(len(whole.encode()))
        return f"whole file truncated at {cut}", whole.encode()[:cut]
    if pick == 1:
        cut = rng.randrange(len(data))
        return f"truncated at {cut}", data[:cut]
    if pick == 2:
        out = bytearray(data)
        for _ in range(rng.randrange(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return "bytes flipped", bytes(out)
    if pick == 3:
        depth = rng.choice([33, 100, 1000, 100_000])
        at = data.index(b"{") + 1 if b"{" in data else 0
        nest = b'"deep": ' + b"[" * depth + b"]" * depth + b","
        return f"{depth}-deep nesting", data[:at] + nest + data[at:]
    if pick == 4:
        at = data.index(b"{") + 1 if b"{" in data else 0
        key = rng.choice([b'"layer"', b'"schema"', b'"ops"', b'"testGroups"', b'"version"'])
        value = rng.choice([b"1", b'"x"', b"null", b"[]", b"{}"])
        return f"duplicate {key.decode()}", data[:at] + key + b": " + value + b", " + data[at:]
    if pick == 5:
        junk = rng.choice([b"\xff\xfe", b"\xef\xbb\xbf", b"\xc3\x28", b"\xed\xa0\x80", b"\x00"])
        at = rng.randrange(len(data) + 1)
        return f"bytes {junk!r} at {at}", data[:at] + junk + data[at:]
    if pick == 6:
        number = rng.choice([b"1e999999", b"-1e400", b"9" * 5000, b"NaN", b"Infinity", b"-0"])
        spots = [i for i in range(len(data)) if data[i : i + 1].isdigit()]
        if not spots:
            return "number appended", data + number
        at = rng.choice(spots)
        return f"number {number[:12]!r} at {at}", data[:at] + number + data[at + 1 :]
    many = rng.choice([10_000, 200_000])
    return f"{many} values", b'{"ops": [' + b"0," * many + b"0]}"


def vector_files(seed: int, n: int) -> list[Input]:
    """``n`` malformed vector files (and bare programs), from ``seed``."""
    rng = random.Random(seed)
    sources = seeds()
    out: list[Input] = []
    while len(out) < n:
        name, obj, whole = rng.choice(sources)
        if rng.random() < 0.55:
            steps = []
            for _ in range(rng.choice([1, 1, 2, 3])):
                grow = not any(step.endswith("repeated") for step in steps)  # once: 1 GB
                what, obj = _tree_mutation(rng, obj, grow)
                steps.append(what)
            text = json.dumps(obj, allow_nan=True)
            out.append((f"{name}: {'; '.join(steps)}", text.encode(errors="surrogatepass")))
        else:
            what, data = _text_mutation(rng, json.dumps(obj), whole)
            out.append((f"{name}: {what}", data))
    return out


RAW_SHAPES: list[Callable[[random.Random], bytes]] = [
    lambda r: b"",
    lambda r: r.randbytes(r.randrange(1, 64)),
    lambda r: r.randbytes(r.randrange(64, 4096)),
    lambda r: bytes([r.randrange(256)]) * r.randrange(1, 5000),
    lambda r: b"\xff" * r.randrange(1, 2000),
    lambda r: b"{" + r.randbytes(r.randrange(0, 200)),
    lambda r: b"[" * r.randrange(1, 5000),
    lambda r: json.dumps(PROGRAM).encode()[: r.randrange(1, 200)],
    lambda r: r.randbytes(r.randrange(100_000, 1_000_000)),
]


def raw_inputs(seed: int, n: int) -> list[Input]:
    """``n`` raw fuzzer inputs of every length and shape, from ``seed``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shape = i % len(RAW_SHAPES)
        out.append((f"raw shape {shape}", RAW_SHAPES[shape](rng)))
    return out
