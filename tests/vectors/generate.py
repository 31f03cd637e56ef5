#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the hand-computed seed vectors (bitmap-rules.json, ram-rules.json, recovery-stream.json).

Every case below states its expected return values -- and, where it matters, the words of
the memory after the program -- worked out by hand from QEMU's own sources (the files named
at each section below, QEMU commit f9494614898f), not from the model. The script checks the
model against each hand value before writing a vector, so a file written here is both a
hand-checked expectation and the model's output (the vector's ``results`` and ``memory``
digests come from the model).

    python tests/vectors/generate.py [DIR]     (default: this folder)

Vectors of divergences found by fuzzing are added with ``add_divergence`` (see the bottom).

Releases: a case is made at one QEMU release (default the newest) and gets the range of
releases around it where the model's outcome is the same (``make_test``); a case whose
expectation differs per release is written once per release, each with its own hand
values, and lands in a group of its own range. A case whose memory is not given by hand
for every array is flagged "ModelSnapshot": its digests are the model's output.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from recvmap.fuzz.engine import initial_image, model_run
from recvmap.fuzz.program import ArraySpec, Op, Program, Ref
from recvmap.fuzz.vectors.files import (
    make_test,
    result_json,
    vector_file,
    write_vector_file,
)
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout

HERE = Path(__file__).resolve().parent
ONES = {64: (1 << 64) - 1, 32: (1 << 32) - 1}
ENDMARK = "0123456789abcdef"


def words_digest(layout: Layout, nwords: int, words: dict[int, int]) -> str:
    image = initial_image(Program(layout, [ArraySpec(nwords, words)]), 0)
    return hashlib.sha256(image).hexdigest()


def case(
    program: Program,
    comment: str,
    flags: list[str],
    results: list[Any],
    memory: dict[str, tuple[int, dict[int, int]] | None] | None = None,
    invalid: bool = False,
    release: str | None = None,
    errors: dict[int, str] | None = None,
) -> dict[str, Any]:
    """A vector whose model results (at ``release``) equal the hand ``results`` (and hand
    memory words; None: the map is not allocated; and the hand ``errors``: the
    error_report line of each operation that prints one, by index)."""
    test = make_test(program, comment, flags, release=release)
    want = [result_json(r) for r in results]
    if test["results"] != want:
        raise SystemExit(f"{program.layout}: {comment}: model {test['results']} != hand {want}")
    if (test["result"] == "invalid") != invalid:
        raise SystemExit(f"{comment}: model says {test['result']}")
    for key, hand in (memory or {}).items():
        layout = program.layout
        if program.layer == "recovery" and key.startswith("destination:"):
            s = program.setup["sender"]
            layout = Layout(s["bits_per_long"], s["big_endian"])
        want = None if hand is None else words_digest(layout, hand[0], hand[1])
        if test["memory"][key] != want:
            have = model_run(program, release).images[key]
            raise SystemExit(f"{comment}: memory {key}: model {have!r} != hand {hand}")
    if errors is not None and test.get("errors", {}) != {str(i): e for i, e in errors.items()}:
        raise SystemExit(f"{comment}: error_report lines: model {test.get('errors')} != {errors}")
    stated = {r[2] for r in results if isinstance(r, tuple) and r[:1] == ("RecoveryError",)}
    printed = set(test.get("errors", {}).values()) if errors is None else set()
    unchecked = set(test["memory"]) - set(memory or {}) or printed - stated
    if unchecked and "ModelSnapshot" not in test["flags"]:
        test["flags"].append("ModelSnapshot")
    return test


# --- the bitmap layer (include/qemu/bitops.h, include/qemu/bitmap.h, util/bitmap.c) ------


def bitmap_cases(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    full = ONES[bpl]
    top = 1 << (bpl - 1)
    n = bpl + 6  # a bitmap ending 6 bits into its second word
    tail = (1 << 6) - 1  # BITMAP_LAST_WORD_MASK(n)
    out = []

    def p(arrays: list[dict[int, int]], ops: list[Op], nwords: int = 2) -> Program:
        return Program(layout, [ArraySpec(nwords, a) for a in arrays], ops)

    out.append(
        case(
            p([{1: full}], [Op("bitmap_fill", (Ref(0), n))]),
            "bitmap_fill: whole words of ones, then the last word is exactly the last-word mask "
            "(its tail bits are cleared, unlike Linux)",
            ["TailBits"],
            [None],
            {"@0": (2, {0: full, 1: tail})},
        )
    )
    out.append(
        case(
            p([{}, {1: full}], [Op("bitmap_complement", (Ref(1), Ref(0), n))]),
            "bitmap_complement: the last partial word is masked, tail cleared",
            ["TailBits"],
            [None],
            {"@1": (2, {0: full, 1: tail})},
        )
    )
    out.append(
        case(
            p([{1: full}, {1: 2}, {}], [Op("bitmap_or", (Ref(2), Ref(0), Ref(1), n))]),
            "bitmap_or works on whole words: tail bits propagate",
            ["TailBits"],
            [None],
            {"@2": (2, {1: full})},
        )
    )
    out.append(
        case(
            p([{1: top}, {1: top}, {}], [Op("bitmap_and", (Ref(2), Ref(0), Ref(1), n))]),
            "bitmap_and: only a tail bit in common, yet it returns 1 (computed over whole words)",
            ["TailBits", "ReturnValue"],
            [1],
            {"@2": (2, {1: top})},
        )
    )
    out.append(
        case(
            p([{1: top}, {}, {}], [Op("bitmap_andnot", (Ref(2), Ref(0), Ref(1), n))]),
            "bitmap_andnot: a tail bit alone makes it return 1",
            ["TailBits", "ReturnValue"],
            [1],
            {"@2": (2, {1: top})},
        )
    )
    out.append(
        case(
            p(
                [{1: top}, {}],
                [
                    Op("bitmap_equal", (Ref(0), Ref(1), n)),
                    Op("bitmap_empty", (Ref(0), n)),
                    Op("bitmap_intersects", (Ref(0), Ref(0), n)),
                    Op("bitmap_full", (Ref(1), n)),
                ],
            ),
            "equal, empty, intersects, full mask the last word: tail bits never change them",
            ["TailBits"],
            [1, 1, 0, 0],
        )
    )
    out.append(
        case(
            p([{0: full, 1: tail}], [Op("bitmap_full", (Ref(0), n))]),
            "bitmap_full: the first nbits set, tail clear",
            ["TailBits"],
            [1],
        )
    )
    out.append(
        case(
            p(
                [{0: full, 1: full}],
                [
                    Op("bitmap_find_next_zero_area", (Ref(0), n, 0, 8, 0)),
                ],
            ),
            "bitmap_find_next_zero_area on a full map returns index + nr = size + 8, not size",
            ["ReturnValue"],
            [n + 8],
        )
    )
    out.append(
        case(
            p(
                [{0: full & ~(0xFF << 8)}],
                [
                    Op("bitmap_find_next_zero_area", (Ref(0), bpl, 0, 8, 0)),
                    Op("bitmap_find_next_zero_area", (Ref(0), bpl, 0, 8, 15)),
                ],
                nwords=1,
            ),
            "bitmap_find_next_zero_area: the zero run 8..15 fits; aligned to 16 nothing fits, so "
            "it returns the aligned index bpl plus nr",
            ["ReturnValue"],
            [8, bpl + 8],
        )
    )
    out.append(
        case(
            p(
                [{0: full, 1: full}, {0: 5, 1: 7}],
                [
                    Op("bitmap_copy_and_clear_atomic", (Ref(1), Ref(0), n)),
                ],
            ),
            "bitmap_copy_and_clear_atomic exchanges whole words: bits after nr in the last source "
            "word are moved and cleared too",
            ["TailBits"],
            [None],
            {"@0": (2, {}), "@1": (2, {0: full, 1: full})},
        )
    )
    out.append(
        case(
            p(
                [{}, {0: full, 1: full}],
                [
                    Op("find_next_bit", (Ref(0), n, 0)),
                    Op("find_next_bit", (Ref(1), 50, 60)),
                    Op("find_last_bit", (Ref(0), n)),
                    Op("find_first_zero_bit", (Ref(1), n)),
                    Op("find_first_bit", (Ref(1), 0)),
                ],
            ),
            "find functions return size when nothing is found, and at once when offset >= size",
            ["ReturnValue", "TailBits"],
            [n, 50, n, n, 0],
        )
    )
    out.append(
        case(
            p(
                [{0: 1, 1: full}],
                [
                    Op("bitmap_count_one", (Ref(0), 0)),
                    Op("bitmap_count_one", (Ref(0), n)),
                    Op("bitmap_count_one_with_offset", (Ref(0), bpl - 1, 3)),
                ],
            ),
            "bitmap_count_one: 0 for nbits 0 (allowed); tail bits not counted; with an offset",
            ["TailBits", "WordBoundary"],
            [0, 7, 2],
            {"@0": (2, {0: 1, 1: full})},
        )
    )
    out.append(
        case(
            p(
                [{0: 1, 1: full}],
                [
                    Op("bitmap_count_one", (Ref(0), 0)),
                    Op("bitmap_count_one", (Ref(0), n)),
                ],
            ),
            "before v4.0.0 (e7c91368d246 added the nbits == 0 guard) bitmap_count_one(map, 0) "
            "took the small_nbits path with BITMAP_LAST_WORD_MASK(0) = ~0UL and counted word 0 "
            "(include/qemu/bitmap.h of v2.12.0/v3.0.0, bitmap_count_one)",
            ["Release", "HandDerived"],
            [1, 7],
            {"@0": (2, {0: 1, 1: full})},
            release="v3.0.0",
        )
    )
    out.append(
        case(
            p(
                [{}],
                [
                    Op("bitmap_set", (Ref(0), bpl - 1, 2)),
                    Op("test_bit", (bpl - 1, Ref(0))),
                    Op("test_bit", (bpl, Ref(0))),
                    Op("bitmap_test_and_clear", (Ref(0), bpl, 1)),
                    Op("bitmap_test_and_clear", (Ref(0), bpl, 1)),
                    Op("test_and_set_bit", (0, Ref(0))),
                    Op("test_and_change_bit", (0, Ref(0))),
                ],
            ),
            "a range across the word boundary BPL-1..BPL; test_and_clear returns whether any bit "
            "was set; test_and_* return the old bit",
            ["WordBoundary"],
            [None, 1, 1, True, False, 0, 1],
            {"@0": (2, {0: top})},
        )
    )
    out.append(
        case(
            p([{}], [Op("bitmap_set", (Ref(0), 3, 0)), Op("bitmap_clear", (Ref(0), 2 * bpl, 0))]),
            "nr == 0 is a no-op, even at the end of the allocation",
            ["WordBoundary"],
            [None, None],
            {"@0": (2, {})},
        )
    )
    # Out of QEMU's domain: the model rejects the last operation, C never sees it.
    out.append(
        case(
            p([{}], [Op("bitmap_set", (Ref(0), 0, 1)), Op("bitmap_set", (Ref(0), -1, 1))]),
            "bitmap_set with start < 0: QEMU's assert aborts",
            ["Domain"],
            [None],
            invalid=True,
        )
    )
    out.append(
        case(
            p([{}], [Op("bitmap_fill", (Ref(0), 0))]),
            "bitmap_fill(dst, 0) writes the word before dst in QEMU",
            ["Domain"],
            [],
            invalid=True,
        )
    )
    out.append(
        case(
            p([{}], [Op("set_bit", (2 * bpl, Ref(0)))]),
            "set_bit past the allocation",
            ["Domain"],
            [],
            invalid=True,
        )
    )
    return out


def divergence_cases(layout: Layout) -> list[dict[str, Any]]:
    """Programs on which our own C reference once diverged (found by `recvmap fuzz`)."""
    bpl = layout.bits_per_long
    full = ONES[bpl]
    out = [
        case(
            Program(
                layout,
                [ArraySpec(2, {0: 0x0F}), ArraySpec(2, {0: full, 1: full})],
                [
                    Op("bitmap_copy", (Ref(0), Ref(1), -1)),
                    Op("bitmap_and", (Ref(0), Ref(1), Ref(1), -1)),
                    Op("bitmap_zero", (Ref(0), -1)),
                    Op("bitmap_or", (Ref(0), Ref(1), Ref(1), -1)),
                    Op("bitmap_xor", (Ref(0), Ref(1), Ref(1), -1)),
                    Op("bitmap_andnot", (Ref(0), Ref(1), Ref(1), -1)),
                    Op("bitmap_to_le", (Ref(0), Ref(1), -1)),
                ],
            ),
            "nbits < 0 in an inline helper: BITS_PER_LONG is a size_t in QEMU, so small_nbits(-1) "
            "is false and BITS_TO_LONGS(-1) is 0: nothing is copied, zeroed or combined, and "
            "bitmap_and / bitmap_andnot return 0. Found by recvmap fuzz: qemu_ref compared "
            "signed and took the one-word path",
            ["Divergence"],
            [None, 0, None, None, None, 0, None],
            {"@0": (2, {0: 0x0F})},
        )
    ]
    shift = 1 << (bpl - 1)
    out.append(
        case(
            Program(
                layout,
                [ArraySpec(3, {}), ArraySpec(3, {0: full})],
                [Op("bitmap_copy_with_dst_offset", (Ref(0), Ref(1), shift, full))],
            ),
            "bitmap_copy_with_dst_offset with a word-aligned shift calls bitmap_copy with nbits "
            "ULONG_MAX, i.e. -1 as a long: no word is touched, however far the shift. Found by "
            "recvmap fuzz: qemu_ref wrote one word at dst + shift / BPL (a crash)",
            ["Divergence"],
            [None],
            {"@0": (3, {})},
        )
    )
    return out


# --- the received-page bitmap (migration/ram.c, include/exec/ram_addr.h, arch tables) ----

HOST64 = 0x7F0000000000
HOST32 = 0x40000000


def ram_program(
    layout: Layout,
    blocks: list[dict[str, Any]],
    ops: list[Op],
    side: str = "destination",
    strict: bool = False,
    *,
    target: str = "x86_64",
    bits: int = 12,
    host: str = "x86_64",
    host_page: int = 4096,
) -> Program:
    """A ram program, by default with 4K target pages (x86_64) on a 4K-page x86_64 host."""
    setup = {
        "target": target,
        "target_page_bits": bits,
        "host": host,
        "host_page_size": host_page,
        "side": side,
        "strict": strict,
        "blocks": blocks,
    }
    return Program(layout, [], ops, "ram", setup)


def received_case(
    layout: Layout,
    blocks: list[dict[str, Any]],
    ops: list[Op],
    comment: str,
    flags: list[str],
    results: list[Any],
    memory: dict[str, tuple[int, dict[int, int]] | None] | None = None,
    invalid: bool = False,
    strict: bool = False,
) -> dict[str, Any]:
    """A destination case on 4K pages (``ram_program``) that starts with
    ramblock_recv_map_init: ``ops`` and hand ``results`` are what follows it (the init
    itself returns nothing)."""
    init = Op("ramblock_recv_map_init", ())
    program = ram_program(layout, blocks, [init, *ops], strict=strict)
    return case(program, comment, flags, [None, *results], memory, invalid)


def block(
    idstr: str,
    host: int,
    used: int,
    max_length: int | None = None,
    page_size: int = 4096,
    postcopy: int | None = None,
) -> dict[str, Any]:
    return {
        "idstr": idstr,
        "host": host,
        "used_length": used,
        "max_length": used if max_length is None else max_length,
        "page_size": page_size,
        "postcopy_length": used if postcopy is None else postcopy,
        "migratable": True,
        "ignored": False,
    }


def ram_cases(layout: Layout) -> list[dict[str, Any]]:
    bpl = layout.bits_per_long
    full = ONES[bpl]
    base = HOST64 if bpl == 64 else HOST32
    mib2 = 2 << 20
    out = []
    # 2M hugepage block, 4K target pages: one placement sets 512 bits.
    hp = [block("pc.ram", base, mib2, page_size=mib2)]
    nwords = 512 // bpl
    out.append(
        received_case(
            layout,
            hp,
            [
                Op("postcopy_place_page", (base, Ref(0))),
                Op("ram_discard_range", ("pc.ram", 4096, 8192)),
                Op("ramblock_recv_bitmap_test_byte_offset", (Ref(0), 4096)),
                Op("ramblock_recv_bitmap_test", (Ref(0), base)),
                Op("ramblock_recv_bitmap_test_byte_offset", (Ref(0), 12288)),
            ],
            "placing a 2M hugepage sets 512 target-page bits; ram_discard_range clears bits 1-2 "
            "FIRST and only then fails its check (start not aligned to the 2M page: -1)",
            ["Placement", "Discard"],
            [0, -1, False, 1, True],
            {
                "destination:pc.ram.receivedmap": (
                    nwords,
                    {0: full & ~0b110, **{i: full for i in range(1, nwords)}},
                )
            },
        )
    )
    out.append(
        received_case(
            layout,
            hp,
            [
                Op("ram_discard_range", ("no-such-block", 0, mib2)),
                Op("ram_discard_range", ("pc.ram", 0, mib2)),
            ],
            "ram_discard_range: an unknown block is an error (-1); an aligned discard of the "
            "whole block succeeds (0)",
            ["Discard"],
            [-1, 0],
        )
    )
    # 1K target pages (arm legacy) on a 4K host: a 12K block is 12 bits in one word.
    small = [block("ram1", base, 3 * 4096)]
    out.append(
        case(
            ram_program(
                layout,
                small,
                [
                    Op("ramblock_recv_map_init", ()),
                    Op("postcopy_place_page", (base + 4096, Ref(0))),
                    Op("postcopy_place_page", (base + 8192, Ref(0))),
                    Op("ram_discard_range", ("ram1", 8192, 8192)),
                ],
                target="arm",
                bits=10,
            ),
            "arm with 1K target pages: a 4K host page places 4 bits; a discard that overruns the "
            "block clears bits 8..15 (8 of them past the 12 bits, inside the word) and fails",
            ["Placement", "Discard", "TailBits"],
            [None, 0, 0, -1],
            {"destination:ram1.receivedmap": (1, {0: 0xF0})},
        )
    )
    big_target = [block("pc.ram", base, 16384 * 4)]
    out.append(
        case(
            ram_program(
                layout,
                big_target,
                [
                    Op("ramblock_recv_map_init", ()),
                    Op("postcopy_ram_supported_by_host", ()),
                    Op("postcopy_place_page", (base, Ref(0))),
                ],
                target="tricore",
                bits=14,
            ),
            "a 16K target page on a 4K host: postcopy is refused; placing a page is outside "
            "QEMU's domain",
            ["Placement", "Domain"],
            [None, False],
            invalid=True,
        )
    )
    wrap = (1 << bpl) - 1 >> 12  # (host_addr - rb->host) wraps below the block
    out.append(
        received_case(
            layout,
            [block("pc.ram", base, 4 * 4096)],
            [
                Op("ramblock_recv_bitmap_offset", (base - 4096, Ref(0))),
                Op("ramblock_recv_bitmap_offset", (base + 3 * 4096 + 4095, Ref(0))),
            ],
            "ramblock_recv_bitmap_offset has no range check: an address below the block wraps "
            "to a huge index",
            ["WrapAround"],
            [wrap, 3],
        )
    )
    out.append(
        received_case(
            layout,
            [block("pc.ram", base, 4 * 4096)],
            [
                Op("ramblock_recv_bitmap_offset", (base - 4096, Ref(0))),
            ],
            "strict mode flags the wrap-around instead of modelling it",
            ["WrapAround", "Domain"],
            [],
            invalid=True,
            strict=True,
        )
    )
    out.append(
        received_case(
            layout,
            [block("pc.ram", base, 2 * 4096, 4 * 4096)],
            [
                Op("ramblock_recv_bitmap_set", (Ref(0), base + 3 * 4096)),
                Op("ramblock_recv_bitmap_set_range", (Ref(0), base, 2)),
                Op("ramblock_recv_bitmap_set_offset", (Ref(0), 2 * 4096 + 17)),
                Op("ram_load_cleanup", ()),
                Op("ram_load_cleanup", ()),
            ],
            "the map has max_length >> bits bits (not used_length): page 3 of a 2-page block with "
            "4 pages of max_length is settable; ram_load_cleanup frees, a second call is harmless",
            ["WordBoundary"],
            [None, None, None, 0, 0],
        )
    )
    out.append(
        case(
            ram_program(
                layout,
                [block("pc.ram", base, 4 * 4096)],
                [
                    Op("ram_list_init_bitmaps", ()),
                    Op("ram_discard_range", ("pc.ram", 0, 4096)),
                ],
                side="source",
            ),
            "on the source there is no receivedmap: a discard touches no map (its dirty bitmap "
            "stays all ones)",
            ["Discard"],
            [None, 0],
            {"source:pc.ram.bmap": (1, {0: 0xF})},
        )
    )
    out += no_ram_cases(layout, base)
    out += migratable_cases(layout, base)
    return out


def no_ram_cases(layout: Layout, base: int) -> list[dict[str, Any]]:
    """The no-RAM guard, by hand from migration/ram.c: ram_list_init_bitmaps allocates
    inside ``if (ram_bytes_total())`` ("Skip setting bitmap if there is no RAM"), and
    ram_bytes_total sums used_length over RAMBLOCK_FOREACH_NOT_IGNORED (every release
    from v2.12.0 to v10.1.x has the guard; only the blocks walked change)."""
    empty = block("pc.ram", base, 0, 4096)
    return [
        case(
            ram_program(layout, [empty], [Op("ram_list_init_bitmaps", ())], side="source"),
            "no RAM: one migratable block of used_length 0 (max_length 4096): "
            "ram_bytes_total() is 0, so ram_list_init_bitmaps allocates nothing and bmap "
            "stays NULL (migration/ram.c ram_list_init_bitmaps: if (ram_bytes_total()))",
            ["HandDerived"],
            [None],
            {"source:pc.ram.receivedmap": None, "source:pc.ram.bmap": None},
        ),
        case(
            ram_program(
                layout,
                [empty, block("ram1", base + 0x100000, 4096)],
                [Op("ram_list_init_bitmaps", ())],
                side="source",
            ),
            "with other RAM the guard passes: the block of used_length 0 gets its bmap of "
            "max_length >> 12 = 1 bit, set (migration/ram.c ram_list_init_bitmaps: "
            "bitmap_new(pages); bitmap_set(bmap, 0, pages) for every block walked)",
            ["HandDerived"],
            [None],
            {
                "source:pc.ram.receivedmap": None,
                "source:pc.ram.bmap": (1, {0: 1}),
                "source:ram1.receivedmap": None,
                "source:ram1.bmap": (1, {0: 1}),
            },
        ),
    ]


def migratable_cases(layout: Layout, base: int) -> list[dict[str, Any]]:
    """Which blocks get a receivedmap, per release (migration/ram.c ramblock_recv_map_init:
    RAMBLOCK_FOREACH in v2.12.0, RAMBLOCK_FOREACH_MIGRATABLE from v3.0.0 (b895de5027),
    RAMBLOCK_FOREACH_NOT_IGNORED from v4.0.0 (fbd162e629))."""
    blocks = [
        block("pc.ram", base, 4096),
        {**block("ram1", base + 0x100000, 4096), "migratable": False},
    ]
    ops = [Op("ramblock_recv_map_init", ())]
    out = []
    for release, ram1 in (("v2.12.0", (1, {})), (None, None)):
        out.append(
            case(
                ram_program(layout, blocks, ops),
                "a non-migratable block gets a receivedmap in v2.12.0 (every block is "
                "walked) and none from v3.0.0 on (b895de5027 skips it)",
                ["Release", "HandDerived"],
                [None],
                {
                    "destination:pc.ram.receivedmap": (1, {}),
                    "destination:pc.ram.bmap": None,
                    "destination:ram1.receivedmap": ram1,
                    "destination:ram1.bmap": None,
                },
                release=release,
            )
        )
    return out


def host_page_cases(layout: Layout) -> list[dict[str, Any]]:
    """A discard when the target page is bigger than the host's, per release, by hand from
    ram_block_discard_range (exec.c, softmmu/ and system/physmem.c): an alpha guest (8K
    target pages) on an x86_64 host (4K base page) has anonymous blocks on 4K pages. Before
    v9.0.0 madvise ran only when rb->page_size == qemu_host_page_size, which page_size_init
    made max(4K, 8K) = 8K, and fallocate only for a file (rb->fd != -1): neither ran and
    the call returned its initial -1, reporting nothing. 80c3aeef7f (v9.0.0) compares with
    qemu_real_host_page_size(), 4K: madvise, 0. Before db144f700032 (v2.12.0) a block not
    madvised was fallocate()d on rb->fd, -1: EBADF, -9 ("Failed to discard range"). The
    bits of the range are cleared first in every release (start >> 13 = 0, length >> 13 =
    1: bit 0)."""
    base = HOST64 if layout.bits_per_long == 64 else HOST32
    blocks = [block("pc.ram", base, 4 * 8192)]
    ops = [
        Op("ramblock_recv_map_init", ()),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base, 4)),
        Op("ram_discard_range", ("pc.ram", 0, 8192)),
    ]
    program = ram_program(layout, blocks, ops, target="alpha", bits=13)
    return [
        case(
            program,
            "alpha's 8K target pages on a 4K-page x86_64 host: the discard of an anonymous "
            "4K-page block clears bit 0 and then " + outcome,
            ["Release", "Discard", "HandDerived"],
            [None, None, ret],
            {"destination:pc.ram.receivedmap": (1, {0: 0b1110}), "destination:pc.ram.bmap": None},
            release=release,
        )
        for release, ret, outcome in (
            ("v2.11.0", -9, "fallocates fd -1: EBADF (-9)"),
            ("v8.2.0", -1, "fails: neither madvise nor fallocate (-1)"),
            (None, 0, "madvises (0)"),
        )
    ]


# --- the recovery stream (migration/ram.c: ramblock_recv_bitmap_send, reload) -----------

GOLDEN = {  # nbits: (received pages, stream hex), written out by hand from the rules
    0: ((), "0000000000000000" + ENDMARK),
    1: ((0,), "0000000000000008" + "0100000000000000" + ENDMARK),
    7: ((0, 6), "0000000000000008" + "4100000000000000" + ENDMARK),
    8: ((0, 7), "0000000000000008" + "8100000000000000" + ENDMARK),
    9: ((0, 8), "0000000000000008" + "0101000000000000" + ENDMARK),
    63: ((0, 62), "0000000000000008" + "0100000000000040" + ENDMARK),
    64: ((0, 63), "0000000000000008" + "0100000000000080" + ENDMARK),
    65: ((0, 64), "0000000000000010" + "0100000000000000" + "0100000000000000" + ENDMARK),
    127: ((0, 126), "0000000000000010" + "01" + "00" * 14 + "40" + ENDMARK),
    128: ((0, 127), "0000000000000010" + "01" + "00" * 14 + "80" + ENDMARK),
    200: ((0, 199), "0000000000000020" + "01" + "00" * 23 + "80" + "00" * 7 + ENDMARK),
}


def recovery_program(
    receiver: Layout, sender: Layout, blocks: list[dict[str, Any]], ops: list[Op]
) -> Program:
    setup = {
        "target": "x86_64",
        "target_page_bits": 12,
        "host": "x86_64",
        "host_page_size": 4096,
        "side": "destination",
        "strict": False,
        "blocks": blocks,
        "sender": {"bits_per_long": sender.bits_per_long, "big_endian": sender.big_endian},
    }
    return Program(receiver, [], ops, "recovery", setup)


def recovery_cases(receiver: Layout, sender: Layout) -> list[dict[str, Any]]:
    base = HOST32 if 32 in (receiver.bits_per_long, sender.bits_per_long) else HOST64
    out = []
    for nbits, (pages, stream) in GOLDEN.items():
        length = nbits * 4096
        blocks = [block("pc.ram", base, length, max(length, 4096))]
        ops = [Op("ramblock_recv_map_init", ()), Op("ram_list_init_bitmaps", ())]
        ops += [Op("ramblock_recv_bitmap_set", (Ref(0), base + p * 4096)) for p in pages]
        ops.append(Op("ramblock_recv_bitmap_send", ("pc.ram",)))
        size = len(stream) // 2 - 16
        results: list[Any] = [None, None, *[None] * len(pages), (bytes.fromhex(stream), size + 8)]
        memory: dict[str, Any] = {}
        if nbits:
            ops.append(Op("ram_dirty_bitmap_reload", (Ref(0),)))
            results.append(0)
        else:  # no RAM on the source: ram_list_init_bitmaps leaves bmap NULL
            memory["source:pc.ram.bmap"] = None
        out.append(
            case(
                recovery_program(receiver, sender, blocks, ops),
                f"recovery stream of a {nbits}-page block, pages {list(pages)} received: be64 size "
                f"{size}, the map little-endian and zero padded to 8 bytes, be64 end mark; "
                f"returns size + 8"
                + (
                    "; the source has no RAM, so no bmap (ram_bytes_total() == 0)"
                    if not nbits
                    else ""
                ),
                ["RecoveryStream"],
                results,
                memory,
            )
        )
    # Reload: the pages not received become dirty; bits past nbits are cleared (9 used pages).
    blocks = [block("pc.ram", base, 9 * 4096, 16 * 4096)]
    prefix = [
        Op("ramblock_recv_map_init", ()),
        Op("ram_list_init_bitmaps", ()),
        Op("ramblock_recv_bitmap_set", (Ref(0), base)),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 3 * 4096)),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 8 * 4096)),
        Op("ramblock_recv_bitmap_send", ("pc.ram",)),
    ]
    good = bytes.fromhex("0000000000000008" + "0901000000000000" + ENDMARK)
    head = [None] * 5 + [(good, 16)]

    def reload(*stream_ops: Op) -> Program:
        """The prefix, ``stream_ops`` on the stream it sent, then the source's reload."""
        ops = [*prefix, *stream_ops, Op("ram_dirty_bitmap_reload", (Ref(0),))]
        return recovery_program(receiver, sender, blocks, ops)

    out.append(
        case(
            reload(),
            "reload on the source: the complement of the first 9 bits (pages 0, 3, 8 received), "
            "tail masked: bmap word 0 = 0xf6",
            ["RecoveryStream"],
            [*head, 0],
            {"source:pc.ram.bmap": (1, {0: 0xF6})},
        )
    )
    # (damage, int return before v8.2.0, the Error message, what QEMU does): migration/ram.c
    # ram_dirty_bitmap_reload reads size = qemu_get_be64 and compares it first; then
    # qemu_get_buffer(local_size) and qemu_get_be64 (end mark); then checks the file error.
    # Before v8.2.0 the message is error_report("%s: ...", __func__) and a failed read also
    # prints the file error (-5); before v5.2.0 the end mark is printed with PRIu64.
    mismatch = "ramblock 'pc.ram' bitmap size mismatch (0x{:x} != 0x8)"
    read = "read bitmap failed for ramblock 'pc.ram':{} (size 0x8, got: 0x8)"
    mark = 0x0123456789ABCDEE
    bad = [
        (
            [Op("stream_xor", (23, 1))],
            -22,
            "ramblock 'pc.ram' end mark incorrect: 0x{}",
            "a wrong end mark is rejected",
        ),
        (
            [Op("stream_truncate", (20,))],
            -5,
            read,
            "a stream short after a matching size is a failed read",
        ),
        (
            [Op("stream_truncate", (0,))],
            -22,
            mismatch.format(0),
            "an empty stream reads size 0: a size mismatch",
        ),
        (
            [Op("stream_truncate", (7,))],
            -22,
            mismatch.format(0),
            "a 7-byte stream reads size 0: a size mismatch",
        ),
        (
            [Op("stream_set_size", (16,))],
            -22,
            mismatch.format(16),
            "a size other than the source's is rejected",
        ),
    ]
    for damage, ret_int, message, text in bad:
        variants = [
            (
                None,
                -1,
                message.format("" if "{}" in message and "read" in message else f"{mark:x}"),
            ),
            (
                "v8.1.0",
                ret_int,
                "ram_dirty_bitmap_reload: "
                + message.format(" -5" if "read" in message else f"{mark:x}"),
            ),
        ]
        if "end mark" in message:
            variants.append(
                ("v5.1.0", ret_int, "ram_dirty_bitmap_reload: " + message.format(f"{mark}"))
            )
        for release, ret, error in variants:
            kind = "false (-1)" if ret == -1 else f"{ret}"
            out.append(
                case(
                    reload(*damage),
                    f"{text} ({kind}; int returns before v8.2.0), and the source bitmap is "
                    "left untouched (all ones)",
                    ["MalformedStream", "Release"],
                    [*head, None, ("RecoveryError", ret, error)],
                    {"source:pc.ram.bmap": (1, {0: 0xFFFF})},
                    release=release,
                )
            )
    out.append(
        case(
            reload(Op("stream_append", (1, 0))),
            "a byte after the end mark is not read (QEMU stops after qemu_get_be64 of the end "
            "mark; the byte belongs to the next message): the reload succeeds, bmap = 0xf6",
            ["RecoveryStream"],
            [*head, None, 0],
            {"source:pc.ram.bmap": (1, {0: 0xF6})},
        )
    )
    return out


def ones(nbits: int, bpl: int) -> tuple[int, dict[int, int]]:
    """The words of a map of nbits bits, all set (bitmap_set(map, 0, nbits))."""
    nwords = -(-nbits // bpl)
    words = {i: ONES[bpl] for i in range(nbits // bpl)}
    if nbits % bpl:
        words[nbits // bpl] = (1 << (nbits % bpl)) - 1
    return nwords, words


def issue3_cases(receiver: Layout, sender: Layout) -> list[dict[str, Any]]:
    """The hand-written golden streams of recovery_stream_v1.json (issue 3), as programs."""
    src = HERE / "recovery_stream_v1.json"
    if not src.exists():
        return []
    golden = json.loads(src.read_text())
    base = HOST32 if 32 in (receiver.bits_per_long, sender.bits_per_long) else HOST64
    out = []
    for v in golden["vectors"]:
        nbits, pages = v["nbits"], v["max_pages"]
        every = v["set_bits"] == "all"
        received = ([] if every else list(v["set_bits"])) + v["tail_bits"]
        stream = v.get("stream") or v["stream_by_bpl"][str(sender.bits_per_long)]
        blocks = [block("pc.ram", base, nbits * 4096, pages * 4096)]
        ops = [Op("ramblock_recv_map_init", ()), Op("ram_list_init_bitmaps", ())]
        if every:  # all nbits pages: one range
            ops.append(Op("ramblock_recv_bitmap_set_range", (Ref(0), base, nbits)))
        ops += [Op("ramblock_recv_bitmap_set", (Ref(0), base + p * 4096)) for p in received]
        ops.append(Op("ramblock_recv_bitmap_send", ("pc.ram",)))
        sent = (bytes.fromhex(stream), v["ret"])
        results: list[Any] = [None] * (len(ops) - 1) + [sent]
        if nbits:
            ops.append(Op("ram_dirty_bitmap_reload", (Ref(0),)))
            results.append(0)
        out.append(
            case(
                recovery_program(receiver, sender, blocks, ops),
                f"issue 3 golden stream: {v['name']}",
                ["RecoveryStream"],
                results,
            )
        )
    for m in golden["malformed"]:
        nbits = m["nbits"]
        blocks = [block("pc.ram", base, nbits * 4096)]
        ops = [
            Op("ramblock_recv_map_init", ()),
            Op("ram_list_init_bitmaps", ()),
            Op("stream_load", (m["stream"],)),
            Op("ram_dirty_bitmap_reload", (Ref(0),)),
        ]
        bmap = ones(nbits, receiver.bits_per_long)
        if m["ret"] == 0:  # accepted: received bits 0 and 8 of 9 -> dirty 1..7
            bmap = (1, {0: 0xFE})
        memory = {
            "destination:pc.ram.receivedmap": (-(-nbits // sender.bits_per_long), {}),
            "destination:pc.ram.bmap": None,
            "source:pc.ram.receivedmap": None,
            "source:pc.ram.bmap": bmap,
        }
        variants = [(None, m["ret"], m["error"]), ("v8.1.0", m["ret_int"], m["error_int"])]
        if "error_before_v5_2" in m:
            variants.append(("v5.1.0", m["ret_int"], m["error_before_v5_2"]))
        for release, ret, error in variants:
            if release and ret == m["ret"]:
                continue  # the same at every release
            outcome: Any = ret if ret == 0 else ("RecoveryError", ret, error)
            out.append(
                case(
                    recovery_program(receiver, sender, blocks, ops),
                    f"issue 3 malformed stream: {m['name']} "
                    f"({m['reason'] or m.get('note', '')}); hand-written from migration/ram.c "
                    "ram_dirty_bitmap_reload and migration/qemu-file.c (recovery_stream_v1.json)",
                    ["MalformedStream", "HandDerived"] + (["Release"] if ret else []),
                    [None, None, None, outcome],
                    memory,
                    release=release,
                )
            )
    return out


def main(argv: list[str]) -> int:
    dest = Path(argv[1]) if len(argv) > 1 else HERE
    layouts = (LP64_LE, ILP32_LE, LP64_BE, ILP32_BE)  # big-endian groups after the others
    files = {
        "bitmap-rules.json": [t for lay in layouts for t in bitmap_cases(lay)],
        "bitmap-divergences.json": [t for lay in layouts for t in divergence_cases(lay)],
        "ram-rules.json": [t for lay in layouts for t in ram_cases(lay) + host_page_cases(lay)],
        "recovery-stream.json": [
            t
            for r in (LP64_LE, ILP32_LE)
            for s in (LP64_LE, ILP32_LE)
            for t in recovery_cases(r, s) + issue3_cases(r, s)
        ],
    }
    for name, tests in files.items():
        path = write_vector_file(dest / name, vector_file(tests))
        print(f"{path}: {len(tests)} tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
