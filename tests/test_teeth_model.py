# SPDX-License-Identifier: GPL-2.0-or-later
"""Teeth for the model's deterministic checks: three bugs planted in a copy of the model.

Each bug is planted by editing the SOURCE of one model function (a copy of its text, an
exact edit that must match once), compiling the copy and swapping its code into the live
function for the duration of one test (monkeypatch restores it). The regression vectors,
checked against the model (fixed programs, no seed, no clock), must then fail; with the
model untouched (the control) every vector passes.

- complement tail: bitmap_complement forgets to clear the tail bits of its last word;
- discard order: ram_discard_range runs its checks first and clears the received bits only
  when the discard succeeds (QEMU clears them first, then refuses);
- end mark low half: ram_dirty_bitmap_reload compares only the low 32 bits of the end mark
  (the bug class only the stream-bytes vectors catch deterministically).
"""

from __future__ import annotations
import __future__

import inspect
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recvmap.fuzz.subjects.build import build_library
from recvmap.fuzz.subjects.impls import Subject
from recvmap.fuzz.vectors.files import Case, check_model, iter_files, load_file, replay
from recvmap.pymodel import bitmap, recovery
from recvmap.pymodel.ramblock import RamContext
from recvmap.pymodel.releases import DEFAULT_RELEASE
from recvmap.qemu_ref import load

VECTORS = Path(__file__).parent / "vectors"
CASES = [c for f in iter_files([VECTORS]) for c in load_file(f)]

Plant = tuple[Callable[..., Any], list[tuple[str, str]]]
PLANTS: dict[str, Plant] = {
    "complement tail": (
        bitmap.bitmap_complement,
        [("    dst.clear_range(bits, _roundup(bits, dst.layout.bits_per_long))\n", "")],
    ),
    "discard order": (
        RamContext.ram_discard_range,
        [
            (
                "    if rb.receivedmap is not None:\n",
                "    ret = self.ram_block_discard_range(rb, start, length)\n"
                "    if rb.receivedmap is not None and ret == 0:\n",
            ),
            ("    return self.ram_block_discard_range(rb, start, length)\n", "    return ret\n"),
        ],
    ),
    "end mark low half": (
        recovery._read_stream,
        [
            (
                "if end_mark != RAMBLOCK_RECV_BITMAP_ENDING:",
                "if end_mark & 0xFFFFFFFF != RAMBLOCK_RECV_BITMAP_ENDING & 0xFFFFFFFF:",
            )
        ],
    ),
}


# Each ram-layer rule the vectors name (their flags), with a model bug that breaks only it:
# (rule flag, function, edits). The vectors carrying the flag must catch it.
RAM_RULES: dict[str, tuple[str, Callable[..., Any], list[tuple[str, str]]]] = {
    "placement sets page_size / target page bits": (
        "Placement",
        RamContext.postcopy_place_page,
        [
            (
                "rb.page_size // self.qemu_target_page_size())",
                "rb.page_size // self.qemu_target_page_size() - 1)",
            )
        ],
    ),
    "discard clears before its checks": ("Discard", *PLANTS["discard order"]),
    "an address below the block wraps around": (
        "WrapAround",
        RamContext.ramblock_recv_bitmap_offset,
        [
            (
                "diff = (host_addr - rb.host) % (1 << self.pointer_bits)",
                "diff = abs(host_addr - rb.host)",
            )
        ],
    ),
    "the map has max_length >> bits bits": (
        "WordBoundary",
        RamContext.ramblock_recv_map_init,
        [("bitmap_new(rb.max_length >> bits", "bitmap_new(rb.used_length >> bits")],
    ),
    "ram_load_cleanup frees the map": (
        "FinalState",
        RamContext.ram_load_cleanup,
        [("rb.receivedmap = None", "rb.receivedmap.clear_range(0, rb.receivedmap.nbits)")],
    ),
}


def planted_code(func: Callable[..., Any], edits: list[tuple[str, str]]) -> Any:
    """The code of ``func`` compiled from an edited copy of its (dedented) source text.

    ``func`` must be the function itself, not a checking wrapper: see ``plant``."""
    text = textwrap.dedent(inspect.getsource(func))
    for old, new in edits:
        assert text.count(old) == 1, f"edit no longer applies to {func.__name__}: {old!r}"
        text = text.replace(old, new)
    namespace = dict(func.__globals__)
    # the model's modules postpone annotations; so must the copy (names only typing knows)
    flags = __future__.annotations.compiler_flag
    code = compile(text, f"<planted {func.__name__}>", "exec", flags=flags, dont_inherit=True)
    exec(code, namespace)  # noqa: S102
    code = inspect.unwrap(namespace[func.__name__]).__code__
    old = func.__code__
    parts = ("co_code", "co_consts", "co_names")
    assert [getattr(code, p) for p in parts] != [getattr(old, p) for p in parts], "no change"
    return code


def plant(
    monkeypatch: pytest.MonkeyPatch, func: Callable[..., Any], edits: list[tuple[str, str]]
) -> None:
    """Swap the planted code into the function the model's argument checks wrap."""
    inner = inspect.unwrap(func)
    monkeypatch.setattr(inner, "__code__", planted_code(inner, edits))


def failing_vectors() -> list[str]:
    """Names of the vectors the (possibly planted) model no longer reproduces."""
    out = []
    for case in CASES:
        # at the first release of the vector's range (each range starts ">=vX.Y.Z")
        first = case.group["release"].split(",")[0].lstrip("<>=")
        if check_model(Case(case.path, case.group, case.test), first) is not None:
            out.append(f"{case.path.name} #{case.test['tcId']}: {case.test['comment'][:70]}")
    return out


def test_the_control_model_passes_every_vector() -> None:
    assert failing_vectors() == []


@pytest.mark.parametrize("name", list(PLANTS))
def test_a_planted_model_bug_fails_fixed_vectors(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    func, edits = PLANTS[name]
    plant(monkeypatch, func, edits)
    failing = failing_vectors()
    print(f"{name}: {len(failing)} of {len(CASES)} vectors fail", *failing[:8], sep="\n  ")
    assert failing, f"no vector catches the planted bug {name!r}"


def test_the_end_mark_is_checked_in_its_high_half(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exactly the vectors flipping a byte of the end mark's high half catch the low-half
    comparison: one per high byte, per receiver word width."""
    func, edits = PLANTS["end mark low half"]
    plant(monkeypatch, func, edits)
    failing = failing_vectors()
    high = [f for f in failing if "end mark with byte" in f]
    # per high byte: two receiver word widths, each at the three releases whose texts differ
    assert len(high) == 2 * 4 * 3 and len(failing) == len(high), failing
    for i in range(4):
        assert sum(f"byte {i} of 8" in f for f in high) == 2 * 3, high


@pytest.mark.parametrize("rule", list(RAM_RULES))
def test_each_ram_rule_has_teeth(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Break one ram-layer rule in a copy of the model: a vector flagged with it fails."""
    flag, func, edits = RAM_RULES[rule]
    plant(monkeypatch, func, edits)
    flagged = [c for c in CASES if flag in c.test["flags"] and c.program.layer == "ram"]
    assert flagged, f"no ram vector carries the flag {flag}"
    failing = [
        f"{c.path.name} #{c.test['tcId']}"
        for c in flagged
        if check_model(Case(c.path, c.group, c.test)) is not None
    ]
    print(f"{rule}: {len(failing)} of {len(flagged)} {flag} vectors fail: {failing}")
    assert failing, f"no {flag} vector catches a broken rule: {rule}"


def stream_failures(subject: Subject) -> list[str]:
    """The stream-bytes vectors ``subject`` does not reproduce (model checked first)."""
    # our C implements the newest release: the vectors whose range holds it, of the
    # little-endian layouts this host runs (test_hosts runs the big-endian ones)
    cases = [
        c
        for c in CASES
        if c.path.name == "stream-bytes.json"
        and c.covers(DEFAULT_RELEASE)
        and not (c.group["big_endian"] or c.group.get("sender_big_endian"))
    ]
    assert cases, "stream-bytes.json is missing"
    return [f"#{c.test['tcId']}" for c in cases if replay(c, subject).status != "pass"]


def test_the_c_end_mark_is_checked_in_its_high_half() -> None:
    """The same low-half end-mark bug planted in a copy of the C (ram.c), built with gcc:
    the same fixed vectors fail through the C; our clean C (the control) passes them."""
    assert stream_failures(Subject()) == []
    edit = ("if (end_mark != RAMBLOCK_RECV_BITMAP_ENDING) {",
            "if ((uint32_t)end_mark != (uint32_t)RAMBLOCK_RECV_BITMAP_ENDING) {")  # fmt: skip
    libs = {b: load(build_library(b, edits={"ram.c": [edit]}), b) for b in (64, 32)}
    failing = stream_failures(Subject(libraries=libs))
    print(f"C end mark compared in its low half: stream-bytes.json {failing} fail")
    assert len(failing) == 8, failing
