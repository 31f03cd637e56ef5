#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A fuzz harness for the replay parser itself: vector files, reproducers, bare programs.

Whatever bytes come in, ``recvmap replay`` must either run the file or refuse it with a
VectorError (one line, the place in the file); any other exception is a bug of recvmap.
``check_text`` is that contract for one input (model only: the C side only ever sees
programs the model accepted).

Two drivers: atheris with libFuzzer's flags (``fuzz/vectors/harness_parser.py -max_total_time=60
corpus/``; seed it with ``tests/vectors``), and ``random_run`` -- random mutations of the
packaged vectors' tests at the JSON level (wrong types, huge and negative integers,
misspelled names, dangling references, deep nesting, missing keys) -- which needs nothing
but the standard library and is what CI runs for a bounded time with a fixed seed.
"""

from __future__ import annotations

import copy
import json
import random
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recvmap.fuzz.vectors.files import SCHEMA, iter_files, load_obj, replay, vectors_dir
from recvmap.fuzz.vectors.intake import (
    DEFAULT_LIMITS,
    Limits,
    NotVectorsError,
    VectorError,
    parse_json,
)

try:  # optional (the fuzz extra): the random mode needs nothing but the standard library
    import atheris  # type: ignore[import-not-found]
except ImportError:
    atheris = None

# Small caps: a fuzzer input may ask for the largest legal program; keep each run short.
HARNESS_LIMITS = Limits(
    file_bytes=1 << 20, words=1 << 14, ops=2000, tests=200, stream_bytes=1 << 20
)


def check_text(text: str | bytes, limits: Limits = HARNESS_LIMITS) -> str:
    """'ok', 'rejected' or 'skipped'; any exception that escapes is a bug."""
    try:
        obj = parse_json(text, limits)
        cases = load_obj(obj, Path("<input>"), limits)
    except NotVectorsError:
        return "skipped"
    except VectorError:
        return "rejected"
    for case in cases:
        replay(case, None)
    return "ok"


def one_input(data: bytes) -> None:
    """atheris' entry point."""
    check_text(data)


# --- random mode --------------------------------------------------------------------------


def seeds() -> list[dict[str, Any]]:
    """One-test vector files and bare programs cut from the packaged vector files."""
    out: list[dict[str, Any]] = []
    for path in iter_files([vectors_dir()]):
        obj = json.loads(path.read_text())
        for group in obj["testGroups"]:
            for test in group["tests"][:25]:
                one = {**group, "tests": [test]}
                out.append({**obj, "numberOfTests": 1, "testGroups": [one]})
                out.append(copy.deepcopy(test["program"]))
    out.append({"schema": "some/other/v1", "data": []})
    out.append({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"})
    assert out and all(isinstance(o, dict) for o in out), SCHEMA
    return out


_NAMES = ("bitmap_set", "find_next_bit", "bitmap_sett", "ram_discard_range", "stream_load", "")


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice([0, 1, -1, 63, 64, 65, 2**31, 2**32, 2**34, 2**62, 2**63, 2**64, 2**100])
    if kind == 1:
        return rng.randrange(-(2**70), 2**70)
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice(["@0", "@1", "@7", "@999999999999", "@-1", "@", "0x10", "pc.ram"])
    if kind == 4:
        return rng.choice(_NAMES)
    if kind == 5:
        return rng.random() * rng.choice([1, 1e300, -1])
    if kind == 6:
        return []
    if kind == 7:
        return {}
    if kind == 8:
        deep: Any = 0
        for _ in range(rng.choice([5, 40, 100])):
            deep = [deep]
        return deep
    if kind == 9:
        return "".join(chr(rng.randrange(32, 0x250)) for _ in range(rng.randrange(8)))
    if kind == 10:
        return [rng.choice(_NAMES), [rng.choice(["@0", 1, 2**40, -5]) for _ in range(3)]]
    return {"nwords": rng.choice([0, 1, 2**20, 2**34, 2**62]), "words": {"0": "0xff"}}


def _nodes(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, (*path, i))


def mutate(obj: Any, rng: random.Random) -> Any:
    """A copy of obj with a few random changes at random places."""
    obj = copy.deepcopy(obj)
    for _ in range(rng.choice([1, 1, 2, 3, 6])):
        paths = list(_nodes(obj))
        path = rng.choice(paths)
        if not path:
            continue
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        action = rng.randrange(5)
        if action == 0 and isinstance(parent, dict):
            del parent[last]
        elif action == 1 and isinstance(parent, list):
            parent.insert(last, copy.deepcopy(parent[last]))
        elif action == 2 and isinstance(parent[last], str):
            s = parent[last]
            i = rng.randrange(len(s) + 1)
            parent[last] = s[:i] + rng.choice("x@0_9 ") + s[i + 1 :]
        elif action == 3 and isinstance(parent[last], int) and not isinstance(parent[last], bool):
            parent[last] = parent[last] * rng.choice([-1, 2, 2**30]) + rng.randrange(-2, 3)
        else:
            parent[last] = _value(rng)
    return obj


def as_text(obj: Any, rng: random.Random) -> str:
    text = json.dumps(obj)
    if rng.randrange(40) == 0:  # nesting deeper than Python's recursion limit
        depth = rng.choice([1000, 100_000])
        return "[" * depth + text + "]" * depth
    if rng.randrange(20) == 0:  # damage the text itself
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(["", "}", "[[[", '"', "\\u0000", "1e999"]) + text[i + 2 :]
    return text


@dataclass
class Stats:
    runs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    unexpected: list[tuple[str, str]] = field(default_factory=list)  # (input, traceback)


def random_run(seed: int, seconds: float, max_runs: int | None = None) -> Stats:
    """Mutated seeds through ``check_text`` for ``seconds``; the unexpected exceptions."""
    rng = random.Random(seed)
    corpus = seeds()
    stats = Stats()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (max_runs is None or stats.runs < max_runs):
        text = as_text(mutate(rng.choice(corpus), rng), rng)
        stats.runs += 1
        try:
            outcome = check_text(text)
        except Exception:  # noqa: BLE001 - this harness exists to count them
            outcome = "unexpected"
            stats.unexpected.append((text[:4000], traceback.format_exc()))
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1
    return stats


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--random"]:
        seed = int(argv[2]) if len(argv) > 2 else 0
        seconds = float(argv[3]) if len(argv) > 3 else 60.0
        stats = random_run(seed, seconds)
        sites: dict[str, str] = {}
        for text, tb in stats.unexpected:
            lines = tb.rstrip().splitlines()
            sites.setdefault(lines[-3].strip() + " | " + lines[-1][:100], text[:300])
        for site, text in sites.items():
            print(site, "<-", text)
        print(f"{stats.runs} inputs: {stats.outcomes}")
        return 1 if stats.unexpected else 0
    if atheris is None:
        print("atheris is not installed: --random SEED SECONDS runs without it", file=sys.stderr)
        return 2
    atheris.instrument_all()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    _ = DEFAULT_LIMITS
    sys.exit(main(sys.argv))
