# SPDX-License-Identifier: GPL-2.0-or-later
"""The boundary classes of every function of the ABI, as data, and the vectors that hold them.

A *class* is an input region where an implementation can go wrong on its own: a range that
starts inside a word and ends exactly on the next word boundary, ``find_next_bit`` asked
at ``offset == size`` on a word boundary, a received-page offset at 13 target page bits.
The ``classes(...)`` calls below write them down, function by function (the functions of
qemu_ref/qemu_ref.h and the operations of qemu_ref_ram.h), each with the rule of QEMU's
that makes it a class of its own and a predicate on one call; one class per target page
bits value of the arch table for each received-bitmap offset function. ``release_sides``
adds the two sides of every release delta of ``pymodel/releases.py``: two rule sets that
differ by that change alone (``side_rules``); a vector holds a side when the model agrees
with it there and not on the other side.

``covered(case)`` analyses a vector: it runs the vector's program on the model step by
step and hands every call, with its arguments, the words of its arrays before and after
and its result, to the predicates; nothing is read from the vector's comment or flags. A
class is wanted once per word layout of its layer (``LAYOUTS``; allocations in
``ALLOCATION_LAYOUTS``), so the big-endian and 32-bit groups are held to the same table.
``tests/test_vector_classes.py`` fails when a class has no vector.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from recvmap.fuzz.engine import initial_image
from recvmap.fuzz.engine.ram import RamWorld, model_factories, outcome_value
from recvmap.fuzz.program import Program, Ref
from recvmap.fuzz.program.decode_alloc import ALLOCATORS, alloc_words, old_words
from recvmap.fuzz.program.ram_setup import RAM_FUNCTIONS, STREAM_OPS, RamSetup
from recvmap.fuzz.subjects.impls import ModelImpl
from recvmap.fuzz.vectors.files import Case, check_model
from recvmap.pymodel import arch
from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import (
    CHANGES,
    DEFAULT_RELEASE,
    Change,
    Rules,
    at_release,
    boundaries,
    parse_rules,
)
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout

# The word layouts each layer's classes are wanted in. The recovery stream is the same
# bytes on every host (the map travels little-endian); its classes are wanted for both
# word widths of the little-endian groups, sender and receiver.
LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "bitmap": (LP64_LE, ILP32_LE, LP64_BE, ILP32_BE),
    "ram": (LP64_LE, ILP32_LE, LP64_BE, ILP32_BE),
    "recovery": (LP64_LE, ILP32_LE),
}


# Allocations are compared where an implementation can allocate here: our C and a tree's
# library through ctypes (this 64-bit little-endian machine). The replay drivers of the
# emulated hosts have no allocation command, so a vector of another layout that allocates
# could not run on a tree's code there.
ALLOCATION_LAYOUTS: tuple[Layout, ...] = (LP64_LE,)


def tag(layout: Layout) -> str:
    return f"{layout.bits_per_long}{'be' if layout.big_endian else 'le'}"


# --- one call, as the model ran it -------------------------------------------------------


@dataclass
class Call:
    """One operation of a vector's program (or an allocation of one of its arrays)."""

    name: str
    args: tuple[Any, ...]  # ints and strings; Ref for an array or block
    layout: Layout
    before: dict[int, list[int]] = field(default_factory=dict)  # array -> words
    after: dict[int, list[int]] = field(default_factory=dict)
    result: Any = None
    rejected: bool = False  # outside QEMU's domain: the model rejects it
    setup: dict[str, Any] = field(default_factory=dict)  # ram: target, blocks, side
    error: str | None = None  # the error_report line the call printed (ram)

    @property
    def bpl(self) -> int:
        return self.layout.bits_per_long

    def words(self, k: int, when: str = "before") -> list[int]:
        """The words of the array argument ``k`` (before or after the call)."""
        ref = self.args[k]
        assert isinstance(ref, Ref)
        return (self.before if when == "before" else self.after)[ref.index]

    def bit(self, k: int, n: int, when: str = "before") -> int:
        w = self.words(k, when)
        return w[n // self.bpl] >> (n % self.bpl) & 1

    def block(self, k: int = 0) -> dict[str, Any]:
        """The RAM block of argument ``k`` (a Ref) or named by it (a string)."""
        a = self.args[k]
        blocks = self.setup["blocks"]
        if isinstance(a, Ref):
            return dict(blocks[a.index])
        return dict(next((b for b in blocks if b["idstr"] == a), {}))

    @property
    def page_bits(self) -> int:
        return int(self.setup["target_page_bits"])


# --- the range helpers the predicates share --------------------------------------------


def rng(c: Call, i: int = 1, j: int = 2) -> tuple[int, int, int]:
    """(start, nr, end) of a (start, nr) pair of arguments."""
    start, nr = int(c.args[i]), int(c.args[j])
    return start, nr, start + nr


def one_word(c: Call, start: int, nr: int) -> bool:
    return nr > 0 and start // c.bpl == (start + nr - 1) // c.bpl


def spans(c: Call, start: int, nr: int) -> bool:
    return nr > 0 and start // c.bpl != (start + nr - 1) // c.bpl


def aligned(c: Call, n: int) -> bool:
    return n % c.bpl == 0


def whole_inside(c: Call, start: int, end: int) -> bool:
    """At least one whole word lies strictly inside [start, end) after a partial first."""
    return start % c.bpl != 0 and (end // c.bpl) - (start // c.bpl) >= 2


def tail(c: Call, k: int, nbits: int) -> int:
    """The bits of array ``k`` past ``nbits`` in its last word (before the call)."""
    w = c.words(k)
    if nbits <= 0 or nbits % c.bpl == 0 or nbits // c.bpl >= len(w):
        return 0
    return w[nbits // c.bpl] >> (nbits % c.bpl)


def partial(c: Call, nbits: int) -> bool:
    return nbits > 0 and nbits % c.bpl != 0


def small(c: Call, nbits: int) -> bool:
    return 0 < nbits <= c.bpl


def large(c: Call, nbits: int) -> bool:
    return nbits > c.bpl


def ones(c: Call) -> int:
    return (1 << c.bpl) - 1


# --- the classes ------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundaryClass:
    """A boundary class of ``function``: ``rule`` says why it is one (QEMU's code)."""

    function: str
    name: str
    rule: str
    holds: Callable[[Call], bool]

    @property
    def key(self) -> str:
        return f"{self.function}: {self.name}"


Pred = Callable[[Call], bool]
_TABLE: list[BoundaryClass] = []


def classes(functions: str, *entries: tuple[str, str, Pred]) -> None:
    """Add (name, rule, predicate) classes to each of ``functions`` (space-separated)."""
    for f in functions.split():
        _TABLE.extend(BoundaryClass(f, n, r, p) for n, r, p in entries)


def _range_classes(first: int = 1) -> tuple[tuple[str, str, Pred], ...]:
    """The classes of a (start, nr) range: util/bitmap.c walks it as a first word masked by
    BITMAP_FIRST_WORD_MASK(start), whole words, and a last word masked by
    BITMAP_LAST_WORD_MASK(start + nr); each edge can be off by one on its own."""
    i, j = first, first + 1
    return (
        ("nr == 0", "nothing is touched (the loop and the tail test both see nr == 0)",
         lambda c: rng(c, i, j)[1] == 0),
        ("one word, unaligned start, unaligned end",
         "first and last word are the same word: both masks apply to it at once",
         lambda c: one_word(c, *rng(c, i, j)[:2]) and not aligned(c, rng(c, i, j)[0])
         and not aligned(c, rng(c, i, j)[2])),
        ("one word, unaligned start, end on the word boundary",
         "nr - bits_to_set == 0: the first-word step is the last one",
         lambda c: one_word(c, *rng(c, i, j)[:2]) and not aligned(c, rng(c, i, j)[0])
         and aligned(c, rng(c, i, j)[2])),
        ("one word, aligned start, unaligned end",
         "the first-word mask is all ones: only the last-word mask applies",
         lambda c: one_word(c, *rng(c, i, j)[:2]) and aligned(c, rng(c, i, j)[0])
         and not aligned(c, rng(c, i, j)[2])),
        ("one whole word", "start aligned and nr == BITS_PER_LONG: no partial word",
         lambda c: aligned(c, rng(c, i, j)[0]) and rng(c, i, j)[1] == c.bpl),
        ("spanning, unaligned start, unaligned end",
         "a partial first word and a partial last word",
         lambda c: spans(c, *rng(c, i, j)[:2]) and not aligned(c, rng(c, i, j)[0])
         and not aligned(c, rng(c, i, j)[2])),
        ("spanning, unaligned start, end on a word boundary",
         "the last word is whole: the loop ends with nr == 0 and no tail step",
         lambda c: spans(c, *rng(c, i, j)[:2]) and not aligned(c, rng(c, i, j)[0])
         and aligned(c, rng(c, i, j)[2])),
        ("spanning, aligned start, unaligned end",
         "whole words first, then a partial last word",
         lambda c: spans(c, *rng(c, i, j)[:2]) and aligned(c, rng(c, i, j)[0])
         and not aligned(c, rng(c, i, j)[2])),
        ("whole words only, two or more",
         "aligned start and end: every word is stored whole",
         lambda c: aligned(c, rng(c, i, j)[0]) and aligned(c, rng(c, i, j)[2])
         and rng(c, i, j)[1] >= 2 * c.bpl),
        ("a whole word between two partial ones", "the middle loop runs at least once",
         lambda c: whole_inside(c, rng(c, i, j)[0], rng(c, i, j)[2])
         and not aligned(c, rng(c, i, j)[2])),
    )  # fmt: skip


def _edges_kept(value: int) -> Pred:
    """The bits next to the range (start - 1 and end) hold ``value`` on entry and after:
    a mask one bit too wide shows (set: they must stay clear; clear: stay set)."""

    def holds(c: Call) -> bool:
        start, nr, end = rng(c)
        nbits = len(c.words(0)) * c.bpl
        edges = [n for n in (start - 1, end) if 0 <= n < nbits]
        return (
            nr > 0
            and len(edges) == 2
            and all(c.bit(0, n) == value and c.bit(0, n, "after") == value for n in edges)
        )

    return holds


classes(
    "bitmap_set bitmap_set_atomic",
    *_range_classes(),
    ("clear neighbours stay clear", "the bits at start - 1 and at end are clear before and "
     "after: no mask is one bit too wide", _edges_kept(0)),
)  # fmt: skip
classes(
    "bitmap_clear",
    *_range_classes(),
    ("set neighbours stay set", "the bits at start - 1 and at end are set before and after: "
     "no mask is one bit too wide", _edges_kept(1)),
)  # fmt: skip
classes(
    "bitmap_test_and_clear bitmap_test_and_clear_atomic",
    *_range_classes(),
    ("returns true", "some bit of the range was set", lambda c: bool(c.result)),
    ("returns false", "no bit of the range was set", lambda c: c.result is False),
    ("only a bit of the last word set", "the answer comes from the last-word step",
     lambda c: spans(c, *rng(c)[:2]) and bool(c.result) and not any(
         c.bit(0, n) for n in range(rng(c)[0], (rng(c)[2] - 1) // c.bpl * c.bpl))),
    ("set neighbours stay set", "the bits at start - 1 and at end are set before and after",
     _edges_kept(1)),
)  # fmt: skip


def _below_head(c: Call) -> int:
    """Bit numbers of the last word of a (start, nr) range below start % BPL, when start
    is unaligned, the range leaves its first word and ends inside a later one."""
    start, _, end = rng(c)
    head, last = start % c.bpl, end - end % c.bpl
    if not head or end % c.bpl == 0 or end <= start - head + c.bpl:
        return 0
    return sum(1 << n for n in range(last, min(end, last + head)) if c.bit(0, n))


classes(
    "bitmap_test_and_clear",
    (
        "last-word bits below start % BPL left alone",
        "QEMU's quirk: mask_to_clear keeps BITMAP_FIRST_WORD_MASK(start) for the last word",
        lambda c: (
            _below_head(c) != 0
            and all(
                c.bit(0, n, "after")
                for n in range(rng(c)[2] - rng(c)[2] % c.bpl, rng(c)[2])
                if _below_head(c) >> n & 1
            )
        ),
    ),
)
classes(
    "bitmap_test_and_clear_atomic",
    ("last-word bits below start % BPL cleared", "the _atomic variant resets the mask",
     lambda c: _below_head(c) != 0 and not any(c.bit(0, n, "after") for n in range(
         rng(c)[2] - rng(c)[2] % c.bpl, rng(c)[2]) if _below_head(c) >> n & 1)),
)  # fmt: skip


def _bit_classes(result: bool) -> tuple[tuple[str, str, Pred], ...]:
    """bitops.h: BIT_WORD(nr) picks the word, BIT_MASK(nr) the bit in it."""
    out: list[tuple[str, str, Pred]] = [
        ("bit in word 0", "BIT_WORD(nr) == 0", lambda c: 0 <= int(c.args[0]) < c.bpl),
        ("bit in a later word", "BIT_WORD(nr) > 0", lambda c: int(c.args[0]) >= c.bpl),
        ("top bit of a word", "nr % BITS_PER_LONG == BITS_PER_LONG - 1: the sign bit",
         lambda c: int(c.args[0]) % c.bpl == c.bpl - 1),
    ]  # fmt: skip
    out += [
        ("the bit set on entry", "the old value is 1", lambda c: c.bit(1, int(c.args[0])) == 1),
        ("the bit clear on entry", "the old value is 0", lambda c: c.bit(1, int(c.args[0])) == 0),
    ]
    if result:
        out.append(
            ("other bits of the word set", "only BIT_MASK(nr) changes (and is tested)",
             lambda c: (c.words(1)[int(c.args[0]) // c.bpl]
                        & ~(1 << int(c.args[0]) % c.bpl) & ones(c)) != 0)
        )  # fmt: skip
    return tuple(out)


classes("set_bit set_bit_atomic clear_bit clear_bit_atomic change_bit", *_bit_classes(False))
classes("test_and_set_bit test_and_clear_bit test_and_change_bit test_bit", *_bit_classes(True))


def _found(c: Call, size: int) -> bool:
    return int(c.result) < size


def _next_classes(zero: bool) -> tuple[tuple[str, str, Pred], ...]:
    """util/bitops.c find_next_bit / find_next_zero_bit: offset >= size answers size; the
    first word is masked below offset, whole words follow (four at a time in QEMU), and a
    partial last word is masked from size on."""
    want = 0 if zero else 1

    def size(c: Call) -> int:
        return int(c.args[1])

    def off(c: Call) -> int:
        return int(c.args[2])

    def tail_has(c: Call) -> bool:  # the bits past size in the last word hold the target
        t = tail(c, 0, size(c))
        n = c.bpl - size(c) % c.bpl
        return partial(c, size(c)) and (t != 0 if not zero else t != (1 << n) - 1)

    def below(c: Call) -> bool:  # a target bit below offset in offset's word
        o = off(c)
        return o % c.bpl != 0 and any(
            c.bit(0, n) == want for n in range(o - o % c.bpl, o) if n < len(c.words(0)) * c.bpl
        )

    return (
        ("offset == size on a word boundary", "the early return; nothing may be read",
         lambda c: off(c) == size(c) and aligned(c, size(c)) and size(c) > 0),
        ("offset == size inside a word", "the early return, size not a word multiple",
         lambda c: off(c) == size(c) and partial(c, size(c))),
        ("offset > size", "the early return answers size, not offset",
         lambda c: off(c) > size(c)),
        ("offset > size, in a later word than size's", "nothing may be read from there",
         lambda c: off(c) > size(c) and off(c) // c.bpl > size(c) // c.bpl),
        ("offset 0, found in word 0", "the plain first-word path",
         lambda c: off(c) == 0 and _found(c, size(c)) and int(c.result) < c.bpl),
        ("unaligned offset, found in its word", "the first word is masked below offset",
         lambda c: not aligned(c, off(c)) and off(c) < size(c) and _found(c, size(c))
         and int(c.result) // c.bpl == off(c) // c.bpl),
        ("unaligned offset, found in a later word", "the first word's step falls through",
         lambda c: not aligned(c, off(c)) and off(c) < size(c) and _found(c, size(c))
         and int(c.result) // c.bpl > off(c) // c.bpl),
        ("a target bit below offset in its word", "it must be masked out", below),
        ("found at size - 1", "the last bit of the range",
         lambda c: size(c) > 0 and int(c.result) == size(c) - 1 and off(c) < size(c)),
        ("not found, size on a word boundary", "the search ends after a whole word",
         lambda c: off(c) < size(c) and not _found(c, size(c)) and aligned(c, size(c))),
        ("not found, target bits past size in the last word", "the tail must be masked",
         lambda c: off(c) < size(c) and not _found(c, size(c)) and tail_has(c)),
        ("four or more whole words searched", "QEMU's unrolled loop (4 words at a time)",
         lambda c: off(c) < size(c) and (size(c) - off(c)) >= 5 * c.bpl),
    )  # fmt: skip


classes("find_next_bit", *_next_classes(False))
classes("find_next_zero_bit", *_next_classes(True))


def _first_classes(zero: bool) -> tuple[tuple[str, str, Pred], ...]:
    """bitops.h find_first_bit / find_first_zero_bit: whole words, then the last word
    masked to size."""

    def size(c: Call) -> int:
        return int(c.args[1])

    def tail_has(c: Call) -> bool:
        t = tail(c, 0, size(c))
        n = c.bpl - size(c) % c.bpl
        return partial(c, size(c)) and (t != 0 if not zero else t != (1 << n) - 1)

    return (
        ("size 0", "answers 0 without a read", lambda c: size(c) == 0),
        ("found in word 0", "the first word", lambda c: _found(c, size(c))
         and int(c.result) < c.bpl),
        ("found in a later word", "the loop goes on", lambda c: _found(c, size(c))
         and int(c.result) >= c.bpl),
        ("not found, size on a word boundary", "answers size",
         lambda c: size(c) > 0 and not _found(c, size(c)) and aligned(c, size(c))),
        ("not found, target bits past size", "the tail is masked",
         lambda c: size(c) > 0 and not _found(c, size(c)) and tail_has(c)),
    )  # fmt: skip


classes("find_first_bit", *_first_classes(False))
classes("find_first_zero_bit", *_first_classes(True))
classes(
    "find_last_bit",
    ("size 0", "answers size (0)", lambda c: int(c.args[1]) == 0),
    ("found in the partial last word", "the last word is masked to size",
     lambda c: partial(c, int(c.args[1])) and int(c.result) < int(c.args[1])
     and int(c.result) // c.bpl == int(c.args[1]) // c.bpl),
    ("only tail bits set in the last word, found earlier", "the tail is masked",
     lambda c: partial(c, int(c.args[1])) and tail(c, 0, int(c.args[1])) != 0
     and int(c.result) < int(c.args[1]) // c.bpl * c.bpl),
    ("found in word 0 of several", "the loop walks down to word 0",
     lambda c: int(c.args[1]) > c.bpl and int(c.result) < c.bpl),
    ("not found", "answers size", lambda c: int(c.args[1]) > 0
     and int(c.result) == int(c.args[1])),
)  # fmt: skip


def _nbits(k: int) -> Callable[[Call], int]:
    return lambda c: int(c.args[k])


def _whole_classes(k: int, tails: tuple[int, ...]) -> tuple[tuple[str, str, Pred], ...]:
    """bitmap.h's whole-bitmap helpers: small_nbits(nbits) takes a one-word path, else
    util/bitmap.c's slow_ function; BITS_TO_LONGS rounds up; a negative long nbits is
    ULONG_MAX-ish as a size_t (small_nbits false, BITS_TO_LONGS 0)."""
    n = _nbits(k)
    out: list[tuple[str, str, Pred]] = [
        ("one word, partial", "small_nbits: one word, masked", lambda c: small(c, n(c))
         and partial(c, n(c))),
        ("exactly one word", "nbits == BITS_PER_LONG: small_nbits, mask all ones",
         lambda c: n(c) == c.bpl),
        ("several words, partial last", "the slow path with a partial last word",
         lambda c: large(c, n(c)) and partial(c, n(c))),
        ("several whole words", "the slow path, no partial word",
         lambda c: large(c, n(c)) and aligned(c, n(c))),
    ]  # fmt: skip
    for t in tails:
        out.append(
            (f"tail bits set in array {t}", "bits past nbits in the last word on entry",
             lambda c, t=t: partial(c, n(c)) and tail(c, t, n(c)) != 0)
        )  # fmt: skip
    return tuple(out)


NEGATIVE = ("nbits < 0", "BITS_TO_LONGS of a negative long is 0: nothing is touched",
            lambda c: int(c.args[-1]) < 0)  # fmt: skip
classes("bitmap_zero", *_whole_classes(1, (0,)), NEGATIVE)
classes("bitmap_fill", *_whole_classes(1, (0,)))
classes("bitmap_copy", *_whole_classes(2, (1,)), NEGATIVE)
classes("bitmap_complement", *_whole_classes(2, (0, 1)))
classes("bitmap_or bitmap_xor", *_whole_classes(3, (1,)))
classes(
    "bitmap_and bitmap_andnot",
    *_whole_classes(3, (1,)),
    ("returns 0", "no bit in the result", lambda c: c.result == 0),
    ("returns 1", "some bit in the result (whole words, tail included)", lambda c: c.result == 1),
)


def _differ_in_tail(c: Call) -> bool:
    n = int(c.args[2])
    return partial(c, n) and tail(c, 0, n) != tail(c, 1, n)


classes(
    "bitmap_equal bitmap_intersects",
    *_whole_classes(2, ()),
    ("true", "answers 1", lambda c: bool(c.result)),
    ("false", "answers 0", lambda c: not c.result),
)
classes(
    "bitmap_equal",
    (
        "the arrays differ in tail bits only",
        "the last word is masked: equal",
        lambda c: _differ_in_tail(c) and bool(c.result),
    ),
)
classes(
    "bitmap_intersects",
    (
        "bits in common past nbits only",
        "the last word is masked: no intersection",
        lambda c: (
            partial(c, int(c.args[2]))
            and tail(c, 0, int(c.args[2])) & tail(c, 1, int(c.args[2])) != 0
            and not c.result
        ),
    ),
)
classes(
    "bitmap_empty bitmap_full",
    *_whole_classes(1, (0,)),
    ("true", "answers 1", lambda c: bool(c.result)),
    ("false", "answers 0", lambda c: not c.result),
)


def _deciding(c: Call) -> int:
    """The bits that decide a whole-bitmap test, over the arrays' words: where the
    arrays differ (equal), are both set (intersects), are set (empty) or clear (full)."""
    words = len(c.words(0)) * c.bpl
    a = sum(w << (k * c.bpl) for k, w in enumerate(c.words(0)))
    if c.name in ("bitmap_equal", "bitmap_intersects"):
        b = sum(w << (k * c.bpl) for k, w in enumerate(c.words(1)))
        return a ^ b if c.name == "bitmap_equal" else a & b
    return a if c.name == "bitmap_empty" else ~a & ((1 << words) - 1)


def _where(lo: Callable[[Call], int], hi: Callable[[Call], int], only: bool) -> Pred:
    """Some deciding bit lies in [lo, hi) (``only``: and none outside it)."""

    def holds(c: Call) -> bool:
        d = _deciding(c)
        inside = d >> lo(c) & ((1 << max(0, hi(c) - lo(c))) - 1)
        return inside != 0 and (not only or d == inside << lo(c))

    return holds


def _n2(c: Call) -> int:
    return int(c.args[-1])


# bitmap.h / util/bitmap.c: whole words first (lim = nbits / BPL), then the last partial
# word masked with BITMAP_LAST_WORD_MASK(nbits); nothing past nbits is looked at.
classes(
    "bitmap_equal bitmap_intersects bitmap_empty bitmap_full",
    ("decided in a whole word of several", "the word loop answers",
     lambda c: large(c, _n2(c)) and _where(lambda c: 0, lambda c: _n2(c) // c.bpl * c.bpl,
                                           False)(c)),
    ("decided in the last partial word only", "the masked last word answers",
     lambda c: large(c, _n2(c)) and partial(c, _n2(c)) and _where(
         lambda c: _n2(c) // c.bpl * c.bpl, _n2, True)(c)),
    ("decided only in the word after whole words", "past nbits: nothing may read it",
     lambda c: _n2(c) > 0 and aligned(c, _n2(c)) and _where(
         _n2, lambda c: _n2(c) + c.bpl, True)(c)),
    ("one word: decided below nbits and past it", "the one-word mask",
     lambda c: small(c, _n2(c)) and partial(c, _n2(c)) and _where(
         lambda c: 0, _n2, False)(c) and _where(_n2, lambda c: c.bpl, False)(c)),
)  # fmt: skip
classes(
    "bitmap_intersects",
    ("bits below nbits in both, none in common", "the AND of the words, not each alone",
     lambda c: not c.result and c.words(0)[0] & BITS_BELOW(c) != 0
     and c.words(1)[0] & BITS_BELOW(c) != 0),
)  # fmt: skip


def BITS_BELOW(c: Call) -> int:
    """The bits of word 0 below nbits (all of it for nbits >= BPL)."""
    return (1 << min(c.bpl, max(0, _n2(c)))) - 1


classes(
    "bitmap_count_one",
    ("nbits 0", "answers 0 (counted word 0 before v4.0.0)", lambda c: int(c.args[1]) == 0),
    *_whole_classes(1, (0,)),
)
classes(
    "bitmap_count_one_with_offset",
    ("aligned offset", "the count starts at a word", lambda c: aligned(c, int(c.args[1]))),
    ("unaligned offset, inside one word", "first and last word the same",
     lambda c: one_word(c, int(c.args[1]), int(c.args[2])) and not aligned(c, int(c.args[1]))),
    ("unaligned offset, spanning words", "the first word is masked below offset",
     lambda c: spans(c, int(c.args[1]), int(c.args[2])) and not aligned(c, int(c.args[1]))),
    ("unaligned offset past word 0", "the bits below offset % BPL of offset's own word are "
     "not counted (not word 0's)",
     lambda c: int(c.args[1]) > c.bpl and not aligned(c, int(c.args[1]))),
    ("bits set outside the range", "they are not counted",
     lambda c: int(c.args[2]) > 0 and any(c.words(0))
     and int(c.result) < sum(bin(w).count("1") for w in c.words(0))),
)  # fmt: skip
classes(
    "bitmap_copy_and_clear_atomic",
    ("one word, partial", "whole words are exchanged: the tail moves too",
     lambda c: small(c, int(c.args[2])) and partial(c, int(c.args[2]))),
    ("several words, partial last", "BITS_TO_LONGS words moved",
     lambda c: large(c, int(c.args[2])) and partial(c, int(c.args[2]))),
    ("several whole words", "no partial word", lambda c: large(c, int(c.args[2]))
     and aligned(c, int(c.args[2]))),
    ("tail bits set in the source", "moved and cleared with their word",
     lambda c: partial(c, int(c.args[2])) and tail(c, 1, int(c.args[2])) != 0),
)  # fmt: skip


def _area(c: Call) -> tuple[int, int, int, int, int]:
    size, start, nr, mask = (int(x) for x in c.args[1:5])
    return size, start, nr, mask, int(c.result)


classes(
    "bitmap_find_next_zero_area",
    ("found at start", "the first candidate fits",
     lambda c: _area(c)[4] == _area(c)[1] and _area(c)[4] + _area(c)[2] <= _area(c)[0]),
    ("a set bit in the first candidate", "the search restarts after it",
     lambda c: _area(c)[4] > _area(c)[1] and _area(c)[4] + _area(c)[2] <= _area(c)[0]),
    ("align_mask moves the start", "index = ALIGN_MASK(index, align_mask)",
     lambda c: _area(c)[3] != 0 and _area(c)[4] + _area(c)[2] <= _area(c)[0]
     and _area(c)[4] & _area(c)[3] == 0 and _area(c)[1] & _area(c)[3] != 0),
    ("an exact fit ending at size", "index + nr == size is a fit",
     lambda c: _area(c)[4] + _area(c)[2] == _area(c)[0]),
    ("no fit: answers index + nr > size", "the caller tests > size",
     lambda c: _area(c)[4] + _area(c)[2] > _area(c)[0]),
)  # fmt: skip
classes(
    "bitmap_to_le bitmap_from_le",
    *_whole_classes(2, (1,)),
    ("distinct bytes in a word", "the byte order shows (big-endian hosts swap each word)",
     lambda c: any(len(set(w.to_bytes(c.bpl // 8, "little"))) == c.bpl // 8
                   for w in c.words(1))),
)  # fmt: skip


def _src(c: Call) -> tuple[int, int, int]:
    """(offset % BPL, nbits, BPL - shift) of bitmap_copy_with_src_offset."""
    off, nbits = int(c.args[2]), int(c.args[3])
    return off % c.bpl, nbits, c.bpl - off % c.bpl


classes(
    "bitmap_copy_with_src_offset",
    ("aligned offset", "shift == 0: bitmap_copy of the words from offset / BPL",
     lambda c: _src(c)[0] == 0 and 0 < _src(c)[1] < 1 << 40),
    ("offset past word 0", "src += BIT_WORD(offset)",
     lambda c: int(c.args[2]) >= c.bpl and _src(c)[0] != 0),
    ("unaligned, nbits inside the first source word", "the else-if tail: one source word",
     lambda c: _src(c)[0] != 0 and 0 < _src(c)[1] < _src(c)[2]),
    ("unaligned, nbits == BPL - shift", "the boundary of the two tail branches",
     lambda c: _src(c)[0] != 0 and _src(c)[1] == _src(c)[2]),
    ("unaligned, BPL - shift < nbits < BPL", "the tail reads a second source word",
     lambda c: _src(c)[0] != 0 and _src(c)[2] < _src(c)[1] < c.bpl),
    ("unaligned, nbits a multiple of BPL", "the word loop only, no tail",
     lambda c: _src(c)[0] != 0 and _src(c)[1] >= c.bpl and aligned(c, _src(c)[1])),
    ("unaligned, words and a tail", "the word loop, then the tail",
     lambda c: _src(c)[0] != 0 and _src(c)[1] > c.bpl and partial(c, _src(c)[1])),
    ("destination bits past nbits", "the last destination word is written whole",
     lambda c: partial(c, _src(c)[1]) and tail(c, 0, _src(c)[1]) != 0),
)  # fmt: skip
classes(
    "bitmap_copy_with_dst_offset",
    ("aligned shift", "shift == 0 after dst += BIT_WORD(shift): bitmap_copy",
     lambda c: aligned(c, int(c.args[2]))),
    ("unaligned shift, one destination word", "the short tail",
     lambda c: not aligned(c, int(c.args[2]))
     and int(c.args[3]) <= c.bpl - int(c.args[2]) % c.bpl),
    ("unaligned shift, the long tail", "nbits % BPL > BPL - shift % BPL: the tail fills "
     "the rest of a word and starts the next",
     lambda c: not aligned(c, int(c.args[2])) and int(c.args[3]) < 1 << 40
     and int(c.args[3]) % c.bpl > c.bpl - int(c.args[2]) % c.bpl),
    ("unaligned shift, spanning destination words", "the word loop",
     lambda c: not aligned(c, int(c.args[2]))
     and c.bpl - int(c.args[2]) % c.bpl < int(c.args[3]) < 1 << 40),
    ("destination bits below shift kept", "the first word is merged, not stored",
     lambda c: not aligned(c, int(c.args[2])) and int(c.args[3]) < 1 << 40
     and any(c.bit(0, n) for n in range(int(c.args[2]) // c.bpl * c.bpl, int(c.args[2])))),
)  # fmt: skip
classes(
    "bitmap_new",
    ("partial last word", "BITS_TO_LONGS rounds up; the whole last word is zero",
     lambda c: partial(c, int(c.args[0]))),
    ("whole words", "nbits a multiple of BPL", lambda c: int(c.args[0]) > 0
     and aligned(c, int(c.args[0]))),
)  # fmt: skip
classes(
    "bitmap_zero_extend",
    ("inside the last old word", "no word added: only bits old_nbits..new_nbits cleared",
     lambda c: int(c.args[1]) // c.bpl == (int(c.args[2]) - 1) // c.bpl
     and partial(c, int(c.args[1]))),
    ("old tail bits set, words added", "bitmap_clear(old_nbits, ...) clears them",
     lambda c: partial(c, int(c.args[1])) and int(c.args[2]) >= (int(c.args[1]) // c.bpl + 2)
     * c.bpl and tail(c, 0, int(c.args[1])) != 0),
    ("from NULL (old_nbits 0)", "QEMU's callers pass NULL for an empty map",
     lambda c: int(c.args[1]) == 0),
)  # fmt: skip


# --- the received-page bitmap ------------------------------------------------------------


def _page(c: Call, addr_arg: int = 1) -> tuple[int, int]:
    """(page index, byte offset inside the page) of a host address argument."""
    off = int(c.args[addr_arg]) - int(c.block(0 if addr_arg == 1 else 1)["host"])
    return off >> c.page_bits, off & ((1 << c.page_bits) - 1)


def _offset_of(c: Call) -> tuple[int, int]:
    """(page, byte offset inside the page) of the call's address or byte offset."""
    if c.name == "ramblock_recv_bitmap_offset":
        off = int(c.args[0]) - int(c.block(1)["host"])
    elif c.name in ("ramblock_recv_bitmap_test_byte_offset", "ramblock_recv_bitmap_set_offset"):
        off = int(c.args[1])
    else:
        off = int(c.args[1]) - int(c.block(0)["host"])
    off &= (1 << c.bpl) - 1
    return off >> c.page_bits, off & ((1 << c.page_bits) - 1)


PAGE_FUNCTIONS = (
    "ramblock_recv_bitmap_offset",
    "ramblock_recv_bitmap_test",
    "ramblock_recv_bitmap_test_byte_offset",
    "ramblock_recv_bitmap_set",
    "ramblock_recv_bitmap_set_offset",
)


def page_bits_values() -> tuple[int, ...]:
    """Every target page bits value of the arch table (pymodel/arch.py)."""
    return tuple(sorted({b for t in arch.TARGETS for b in t.page_bits_choices()}))


for _bits in page_bits_values():
    classes(
        " ".join(PAGE_FUNCTIONS),
        (f"target page bits {_bits}, inside a later page",
         "the offset is (addr - host) >> qemu_target_page_bits(): not host pages, not 12",
         lambda c, b=_bits: c.page_bits == b and _offset_of(c)[0] > 0
         and _offset_of(c)[1] != 0 and not c.rejected),
    )  # fmt: skip
classes(
    "ramblock_recv_bitmap_offset",
    (
        "an address below the block",
        "no range check: the subtraction wraps",
        lambda c: int(c.args[0]) < int(c.block(1)["host"]) and not c.rejected,
    ),
)
classes(
    "ramblock_recv_bitmap_test ramblock_recv_bitmap_test_byte_offset",
    ("received", "answers 1 / true", lambda c: bool(c.result)),
    ("not received", "answers 0 / false", lambda c: not c.result and not c.rejected),
)


def _set_range(c: Call) -> tuple[int, int, int]:
    page, _ = _offset_of(c)
    return page, int(c.args[2]), page + int(c.args[2])


classes(
    "ramblock_recv_bitmap_set_range",
    ("one word, unaligned start", "bitmap_set_atomic inside one word",
     lambda c: one_word(c, *_set_range(c)[:2]) and not aligned(c, _set_range(c)[0])),
    ("unaligned start, end on a word boundary", "bitmap_set_atomic's loop ends the range",
     lambda c: _set_range(c)[1] > 0 and not aligned(c, _set_range(c)[0])
     and aligned(c, _set_range(c)[2])),
    ("spanning, unaligned end", "a partial last word",
     lambda c: spans(c, *_set_range(c)[:2]) and not aligned(c, _set_range(c)[2])),
    ("target page bits other than 12", "nr counts target pages",
     lambda c: c.page_bits != 12 and int(c.args[2]) > 1),
)  # fmt: skip
classes(
    "ramblock_recv_map_init",
    ("max_length > used_length", "the map has max_length >> bits bits",
     lambda c: any(b["max_length"] > b["used_length"] for b in c.setup["blocks"])),
    ("a partial last word", "BITS_TO_LONGS rounds the map up",
     lambda c: any(partial(c, b["max_length"] >> c.page_bits) for b in c.setup["blocks"])),
    ("a non-migratable block", "no map for it (from v3.0.0)",
     lambda c: any(not b.get("migratable", True) for b in c.setup["blocks"])),
)  # fmt: skip


def _discard(c: Call) -> tuple[dict[str, Any], int, int]:
    """(block, start, length) of ram_discard_range(name, ...) or
    ram_block_discard_range(rb, ...)."""
    return c.block(0), int(c.args[1]), int(c.args[2])


def _aligned_to(n: int, size: int) -> bool:
    return n % size == 0


classes(
    "ram_discard_range ram_block_discard_range",
    ("aligned, inside used_length: succeeds", "the bits are cleared and 0 returned",
     lambda c: c.result == 0 and _discard(c)[2] > 0),
    ("unaligned start: refused", "host + start must be aligned to rb->page_size",
     lambda c: bool(_discard(c)[0]) and not _aligned_to(_discard(c)[1],
     int(_discard(c)[0]["page_size"])) and c.result == -1),
    ("aligned start, unaligned length", "the length (end address before v5.0.0) check",
     lambda c: bool(_discard(c)[0]) and _aligned_to(_discard(c)[1], int(_discard(c)[0]
     ["page_size"])) and not _aligned_to(_discard(c)[2], int(_discard(c)[0]["page_size"]))),
    ("past used_length, inside max_length", "dcdc460767 (v6.1.0) moved the bound",
     lambda c: bool(_discard(c)[0]) and _discard(c)[0]["used_length"] < _discard(c)[1]
     + _discard(c)[2] <= _discard(c)[0]["max_length"]),
    ("past max_length", "refused at every release",
     lambda c: bool(_discard(c)[0]) and _discard(c)[1] + _discard(c)[2]
     > _discard(c)[0]["max_length"]),
    ("past max_length with an unaligned length", "the Overrun check comes first: its "
     "message, not the length's",
     lambda c: bool(_discard(c)[0]) and _discard(c)[1] + _discard(c)[2]
     > _discard(c)[0]["max_length"] and not _aligned_to(_discard(c)[2],
     int(_discard(c)[0]["page_size"]))),
    ("on the source: no receivedmap", "nothing to clear (814bb08f17)",
     lambda c: c.setup.get("side") == "source"),
    ("a hugepage block", "alignment to rb->page_size, not the target page",
     lambda c: bool(_discard(c)[0]) and int(_discard(c)[0]["page_size"]) > 1 << c.page_bits),
)  # fmt: skip
classes(
    "ram_discard_range",
    ("an unknown block", "qemu_ram_block_by_name fails: -1", lambda c: not c.block(0)),
)
classes(
    "postcopy_place_page",
    ("host page == target page", "one bit", lambda c: int(c.block(1)["page_size"])
     == 1 << c.page_bits),
    ("a hugepage", "page_size >> target page bits bits at once",
     lambda c: int(c.block(1)["page_size"]) > 1 << c.page_bits and c.page_bits >= 12),
    ("target pages smaller than the host page", "several bits per host page",
     lambda c: c.page_bits < 12 and not c.rejected),
)  # fmt: skip
classes(
    "postcopy_ram_supported_by_host",
    ("supported", "target page <= host page", lambda c: c.result is True),
    ("refused", "a target page larger than the host page", lambda c: c.result is False),
)
classes(
    "ram_load_cleanup",
    ("twice", "the second call finds no map", lambda c: c.result == 0),
)
classes(
    "ram_list_init_bitmaps",
    ("no RAM", "ram_bytes_total() == 0 allocates nothing",
     lambda c: sum(b["used_length"] for b in c.setup["blocks"]) == 0),
    ("a partial last word", "bitmap_set(bmap, 0, pages) leaves the tail clear",
     lambda c: any(partial(c, b["max_length"] >> c.page_bits) for b in c.setup["blocks"])),
)  # fmt: skip
classes(
    "ram_save_cleanup",
    ("frees the source maps", "bmap is NULL after it", lambda c: True),
)


def _sent(c: Call) -> int:
    """nbits of the block a send names."""
    b = c.block(0)
    return int(b.get("postcopy_length", b["used_length"])) >> c.page_bits


classes(
    "ramblock_recv_bitmap_send",
    ("no pages", "an empty map: size 0, the end mark only", lambda c: bool(c.block(0))
     and _sent(c) == 0),
    ("a partial byte", "DIV_ROUND_UP(nbits, 8) bytes", lambda c: _sent(c) % 8 != 0),
    ("a partial 64-bit unit", "the size is rounded up to 8 bytes", lambda c: _sent(c) % 64 != 0
     and _sent(c) > 8),
    ("whole 64-bit units", "no padding", lambda c: _sent(c) > 0 and _sent(c) % 64 == 0),
    ("postcopy_length != used_length", "nbits from postcopy_length (v6.1.0)",
     lambda c: bool(c.block(0)) and c.block(0).get("postcopy_length", c.block(0)
     ["used_length"]) != c.block(0)["used_length"]),
)  # fmt: skip


def _reload_error(c: Call, text: str) -> bool:
    return isinstance(c.result, tuple) and text in str(c.result[2])


classes(
    "ram_dirty_bitmap_reload",
    ("accepted", "the complement of the map, tail cleared", lambda c: c.result == 0),
    ("a size mismatch", "size read first", lambda c: _reload_error(c, "size mismatch")),
    ("a short read", "qemu_get_buffer fails", lambda c: _reload_error(c, "read bitmap failed")),
    ("a wrong end mark", "the be64 after the map", lambda c: _reload_error(c, "end mark")),
)


# --- the sides of every release delta ----------------------------------------------------

# A change's two sides are two rule sets that differ by that change alone: ``new`` has
# every change released before it and those of its release up to it, ``old`` the same
# without it. Up to it: in table order, except where QEMU's history has another order
# (7aa6070d09 gave ram_dirty_bitmap_reload its Error one commit before 88577f3242 made it
# bool); changes of its release that came later are left out (bmap_dirty_again undid
# bmap_blank within v4.1.0: each has its sides only without the other's later state).
LATER: dict[str, tuple[str, ...]] = {
    "reload_bool_error": (),
    "reload_error_setg": ("reload_bool_error",),
}

# Sides no vector can hold, and why: an allocation outside the model's domain (an
# invalid vector must end with the operation the model rejects; an allocation is none).
# The old side of a change that added functions is their absence: not a class (the
# export and the tree inventory check it).
SIDE_EXEMPT: dict[tuple[str, str], str] = {
    ("bitmap_new_zero", "old"): "bitmap_new(0) aborted: an allocation, not an operation, "
    "so no invalid vector can end with it (tests/test_releases.py checks it)",
    ("bitmap_new_zero", "new"): "bitmap_new(0) is NULL, an empty allocation: the "
    "engine's allocation step needs words (tests/test_releases.py checks it)",
}


def _added(change: Change) -> bool:
    """A change that added functions (its old side is their absence)."""
    return change.old.startswith(("absent", "no recovery"))


def release_sides() -> list[tuple[Change, str]]:
    """(change, "old" | "new") for every side a vector can hold."""
    out = []
    for c in CHANGES:
        for side in ("old", "new"):
            if side == "old" and _added(c):
                continue
            if (c.key, side) in SIDE_EXEMPT:
                continue
            out.append((c, side))
    return out


def release_class(change: Change, side: str) -> str:
    return f"release {change.release} {change.commit} ({change.key}): {side} side"


def side_rules(change: Change) -> tuple[Rules, Rules]:
    """(old, new): the rule sets on either side of ``change`` alone."""
    same = [c.key for c in CHANGES if c.release == change.release]
    later = LATER.get(change.key, tuple(same[same.index(change.key) + 1 :]))
    new = frozenset(change.release.rules.applied - set(later))
    return Rules(new - {change.key}), Rules(new)


def _release_classes(case: Case) -> set[str]:
    """The release-delta sides ``case`` holds: its expectations hold under the rules of
    one side of the change and not under the other side's, which differ by the change
    alone."""
    program = case.program
    out: set[str] = set()
    for change, side in release_sides():
        if not any(op.name in _FUNCTIONS_OF_LAYER[change.layer] for op in program.ops):
            continue
        old, new = side_rules(change)
        here, there = (new, old) if side == "new" else (old, new)
        if _agrees(case, here) and not _agrees(case, there):
            out.add(release_class(change, side))
    return out


@functools.cache
def _agrees_cached(path: str, tc: int, rules: frozenset[str]) -> bool:
    case = _CASES[(path, tc)]
    r = Rules(rules)
    return case.covers(r) and check_model(case, r) is None


_CASES: dict[tuple[str, int], Case] = {}


def _agrees(case: Case, rules: Rules) -> bool:
    """Whether the vector holds under ``rules`` (its range, and the model's outcome)."""
    _CASES[(str(case.path), case.test["tcId"])] = case
    return _agrees_cached(str(case.path), case.test["tcId"], rules.applied)


# --- running a vector on the model, call by call ------------------------------------------


def _release_of(case: Case) -> Any:
    """A release the vector holds at (the newest if it does)."""
    if case.covers(DEFAULT_RELEASE):
        return DEFAULT_RELEASE
    held = [r for r in boundaries() if case.covers(r)]
    return held[0] if held else parse_rules(case.group["release"])  # a rule set by name


def calls(case: Case) -> list[Call]:
    """Every call of the vector's program as the model runs it."""
    program = case.program
    release = _release_of(case)
    if program.layer == "bitmap":
        return _bitmap_calls(program, release)
    return _ram_calls(program, release)


def _words(handle: Any, layout: Layout) -> list[int]:
    return [handle.word(i) for i in range(handle.nwords)]


def _bitmap_calls(program: Program, release: Any) -> list[Call]:
    layout = program.layout
    model = ModelImpl(layout, release.name)
    arrays = []
    out = []
    for k, spec in enumerate(program.arrays):
        h = model.alloc(spec.nwords)
        model.load(h, initial_image(program, k))
        arrays.append(h)
        a = spec.alloc
        if a is not None:
            made = _words(alloc_words(layout, a), layout)
            if a.old_nbits is None:
                out.append(Call("bitmap_new", (a.nbits,), layout, after={0: made}))
            else:
                old = _words(old_words(layout, a), layout)
                args = (Ref(0), a.old_nbits, a.nbits)
                out.append(Call("bitmap_zero_extend", args, layout, {0: old}, {0: made}))
    for op in program.ops:
        refs = {a.index for a in op.args if isinstance(a, Ref)}
        before = {i: _words(arrays[i], layout) for i in refs}
        args = [arrays[a.index] if isinstance(a, Ref) else a for a in op.args]
        call = Call(op.name, op.args, layout, before)
        try:
            call.result = model.call(op.name, *args)
        except PreconditionError:
            call.rejected = True
            out.append(call)
            break
        call.after = {i: _words(arrays[i], layout) for i in refs}
        out.append(call)
    return out


def _ram_calls(program: Program, release: Any) -> list[Call]:
    setup = RamSetup.of(program)
    world = RamWorld(program, setup, model_factories(release.name))
    out = []
    for op in program.ops:
        if op.name in STREAM_OPS:  # damage the stream register, not a call
            outcome_value(world, op)
            continue
        role = world.role_of(op.name)
        layout = dict(setup.roles(program))[role][1]
        s = dict(program.setup, side=role if program.layer == "recovery" else setup.side)
        call = Call(op.name, op.args, layout, setup=s)
        errors = world.errors()
        try:
            call.result = outcome_value(world, op)
        except PreconditionError:
            call.rejected = True
            out.append(call)
            break
        if world.errors() > errors:
            call.error = world.last_error()
        out.append(call)
    return out


# --- what a vector covers, and what the files leave uncovered ---------------------------


_FUNCTIONS_OF_LAYER: dict[str, frozenset[str]] = {
    "bitmap": frozenset(at_release().functions()) | {"bitmap_new", "bitmap_zero_extend"},
    "ram": frozenset(RAM_FUNCTIONS),
    "recovery": frozenset(RAM_FUNCTIONS),
}


def functions() -> list[str]:
    """Every function the table must have classes for: the ABI's operations."""
    return sorted({*at_release().functions(), *ALLOCATORS, *RAM_FUNCTIONS})


def table() -> list[BoundaryClass]:
    return list(_TABLE)


RECOVERY_FUNCTIONS = ("ramblock_recv_bitmap_send", "ram_dirty_bitmap_reload")


def layer_of(function: str) -> str:
    if function in RECOVERY_FUNCTIONS:
        return "recovery"
    if function in RAM_FUNCTIONS:
        return "ram"
    return "bitmap"


def layouts_of(function: str) -> tuple[Layout, ...]:
    """The word layouts a class of ``function`` is wanted in."""
    return ALLOCATION_LAYOUTS if function in ALLOCATORS else LAYOUTS[layer_of(function)]


def wanted() -> set[str]:
    """Every (class, layout) the vector files must hold."""
    out = set()
    for bc in _TABLE:
        for layout in layouts_of(bc.function):
            out.add(f"{bc.key} [{tag(layout)}]")
    for change, side in release_sides():
        layer = change.layer if change.layer in LAYOUTS else "bitmap"
        for layout in LAYOUTS[layer]:
            out.add(f"{release_class(change, side)} [{tag(layout)}]")
    return out


_BY_FUNCTION: dict[str, list[BoundaryClass]] = {}


def covered(case: Case) -> set[str]:
    """The (class, layout) keys ``case`` holds, from its program run on the model."""
    if not _BY_FUNCTION:
        for bc in _TABLE:
            _BY_FUNCTION.setdefault(bc.function, []).append(bc)
    out: set[str] = set()
    for call in calls(case):
        for bc in _BY_FUNCTION.get(call.name, []):
            if call.rejected and not bc.name.startswith("outside"):
                continue
            try:
                hit = bc.holds(call)
            except (IndexError, KeyError, TypeError, ValueError):
                hit = False
            if hit:
                out.add(f"{bc.key} [{tag(call.layout)}]")
    program = case.program
    for name in _release_classes(case):
        out.add(f"{name} [{tag(program.layout)}]")
    return out


def coverage(cases: Iterable[Case]) -> dict[str, list[str]]:
    """Each wanted (class, layout) key -> the vectors that hold it."""
    out: dict[str, list[str]] = {k: [] for k in wanted()}
    for case in cases:
        for key in covered(case):
            if key in out:
                out[key].append(case.name)
    return out


def summary() -> list[str]:
    """One line per function: its classes, and how many (class, layout) pairs it wants."""
    out = []
    for f in functions():
        names = [bc.name for bc in _TABLE if bc.function == f]
        out.append(f"{f}: {len(names)} classes x {len(layouts_of(f))} layouts")
    sides = release_sides()
    out.append(f"release deltas: {len(sides)} sides of {len({c.key for c, _ in sides})} changes")
    return out
