#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the vectors that give every byte of the recovery stream and every ram rule teeth.

Two files, kept apart from generate.py's so that neither generator rewrites the other's:

- ``stream-bytes.json``: the recovery stream (be64 size | map | be64 end mark) byte by byte.
  A flipped bit in EACH of the 8 bytes of the size field and in EACH of the 8 bytes of the
  end mark must be rejected with -EINVAL and leave the source's bitmap untouched; a map whose
  16 bytes are all different is sent (the whole stream compared) and reloaded (the bitmap
  compared), so an implementation that compares, converts or copies only one half of a field
  (the low 32 bits of the end mark, one half of a 64-bit word) fails a fixed vector rather
  than a lucky random campaign.
- ``ram-final-state.json``: rules that ram-rules.json states but whose programs end with
  ram_load_cleanup (maps freed, digests null): the same programs stopped before the cleanup,
  and the cleanup followed by a new map, so each rule has a final memory that can differ.

Every expectation is written out by hand below (stream bytes, bitmap words) from the wire
format and QEMU's rules in migration/ram.c; ``generate.case`` checks the model against each
before writing.

    python tests/vectors/generate_teeth.py [DIR]     (default: this folder)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from generate import ENDMARK, HOST32, HOST64, block, case, ram_program, recovery_program

from recvmap.fuzz.program import Op, Ref
from recvmap.fuzz.vectors.files import vector_file, write_vector_file
from recvmap.pymodel.words import ILP32_BE, ILP32_LE, LP64_BE, LP64_LE, Layout

HERE = Path(__file__).resolve().parent
EINVAL = -22
PREFIX = "ram_dirty_bitmap_reload: "  # error_report("%s: ...", __func__) before v8.2.0
NBITS = 128  # 16 map bytes: two 64-bit words, four 32-bit words, no padding
# Every map byte different, none 0x00 or 0xff, and both halves of every word different.
MAP = bytes((0x5A + 37 * k) % 251 + 1 for k in range(NBITS // 8))
assert len(set(MAP)) == len(MAP) and not {0, 0xFF} & set(MAP)
PAGES = [8 * k + j for k, byte in enumerate(MAP) for j in range(8) if byte >> j & 1]
STREAM = (NBITS // 8).to_bytes(8, "big") + MAP + bytes.fromhex(ENDMARK)
SIZE_AT, MAP_AT, END_AT = 0, 8, 8 + len(MAP)


def base_of(*layouts: Layout) -> int:
    return HOST32 if any(lay.bits_per_long == 32 for lay in layouts) else HOST64


def bmap_words(layout: Layout, image: bytes, nbits: int) -> dict[int, int]:
    """The source's bitmap after a reload of ``image``: the complement of its bits."""
    bpl = layout.bits_per_long
    words = {}
    for w in range(nbits // bpl):
        value = int.from_bytes(image[w * bpl // 8 : (w + 1) * bpl // 8], "little")
        words[w] = ~value & ((1 << bpl) - 1)
    return words


def stream_cases(receiver: Layout, sender: Layout) -> list[dict[str, Any]]:
    """Send a map whose bytes all differ, then reload it (one vector per layout pair)."""
    base = base_of(receiver, sender)
    blocks = [block("pc.ram", base, NBITS * 4096)]
    ops = [Op("ramblock_recv_map_init", ()), Op("ram_list_init_bitmaps", ())]
    ops += [Op("ramblock_recv_bitmap_set", (Ref(0), base + p * 4096)) for p in PAGES]
    ops += [Op("ramblock_recv_bitmap_send", ("pc.ram",)), Op("ram_dirty_bitmap_reload", (Ref(0),))]
    results: list[Any] = [None, None, *[None] * len(PAGES), (STREAM, len(MAP) + 8), 0]
    nwords = NBITS // receiver.bits_per_long
    return [
        case(
            recovery_program(receiver, sender, blocks, ops),
            f"every map byte different ({MAP.hex()}): the stream carries each byte in its "
            f"place (size {len(MAP)}, end mark), and the reload complements each byte "
            "(a half-word conversion fails here)",
            ["RecoveryStream", "StreamBytes"],
            results,
            {"source:pc.ram.bmap": (nwords, bmap_words(receiver, MAP, NBITS))},
        )
    ]


def damaged_cases(receiver: Layout) -> list[dict[str, Any]]:
    """One flipped bit in each byte of the size field and of the end mark: rejected, per
    release (migration/ram.c ram_dirty_bitmap_reload: false with an Error from v8.2.0, -EINVAL
    and an error_report prefixed with the function name before; before v5.2.0 the wrong end
    mark is printed in decimal after "0x")."""
    base = base_of(receiver)
    blocks = [block("pc.ram", base, NBITS * 4096)]
    nwords = NBITS // receiver.bits_per_long
    untouched = {w: (1 << receiver.bits_per_long) - 1 for w in range(nwords)}
    out = []
    fields = [("size", SIZE_AT, i) for i in range(8)] + [("end mark", END_AT, i) for i in range(8)]
    for name, at, i in fields:
        mask = 1 << (i % 8)  # another bit in each byte, still one bit
        bad = int.from_bytes(STREAM[at : at + 8], "big") ^ (mask << 8 * (7 - i))
        if name == "size":
            text = f"ramblock 'pc.ram' bitmap size mismatch (0x{bad:x} != 0x{len(MAP):x})"
            variants = [(None, -1, text), ("v8.1.0", EINVAL, f"{PREFIX}{text}")]
        else:
            text = "ramblock 'pc.ram' end mark incorrect: 0x{}"
            variants = [
                (None, -1, text.format(f"{bad:x}")),
                ("v8.1.0", EINVAL, PREFIX + text.format(f"{bad:x}")),
                ("v5.1.0", EINVAL, PREFIX + text.format(f"{bad}")),
            ]
        ops = [
            Op("ramblock_recv_map_init", ()),
            Op("ram_list_init_bitmaps", ()),
            Op("stream_load", (STREAM.hex(),)),
            Op("stream_xor", (at + i, mask)),
            Op("ram_dirty_bitmap_reload", (Ref(0),)),
        ]
        for release, ret, error in variants:
            kind = "false (-1)" if ret == -1 else f"{ret}"
            out.append(
                case(
                    recovery_program(receiver, receiver, blocks, ops),
                    f"the {name} with byte {i} of 8 (big-endian: 0 most significant) xor "
                    f"0x{mask:02x} is rejected ({kind}; int returns before v8.2.0) and the "
                    "source bitmap stays all ones",
                    ["MalformedStream", "StreamBytes", "Release"],
                    [None, None, None, None, ("RecoveryError", ret, error)],
                    {"source:pc.ram.bmap": (nwords, untouched)},
                    release=release,
                )
            )
    return out


def final_state_cases(layout: Layout) -> list[dict[str, Any]]:
    """ram-rules.json's max_length rule and cleanup rule, each ending on a live map."""
    base = base_of(layout)
    blocks = [block("pc.ram", base, 2 * 4096, 4 * 4096)]
    sets = [
        Op("ramblock_recv_map_init", ()),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 3 * 4096)),
        Op("ramblock_recv_bitmap_set_range", (Ref(0), base, 2)),
        Op("ramblock_recv_bitmap_set_offset", (Ref(0), 2 * 4096 + 17)),
    ]
    out = [
        case(
            ram_program(layout, blocks, sets),
            "the map has max_length >> bits bits (not used_length): in a 2-page block with 4 "
            "pages of max_length, page 3 (set), pages 0-1 (range) and page 2 (offset 8209) are "
            "all settable: map word 0 = 0xf",
            ["WordBoundary", "FinalState"],
            [None, None, None, None],
            {"destination:pc.ram.receivedmap": (1, {0: 0xF})},
        )
    ]
    # used_length and max_length in different words: only the size of the map tells them
    # apart (with 2 and 4 pages above, both fit in word 0).
    bpl = layout.bits_per_long
    wide = [block("pc.ram", base, 2 * 4096, (bpl + 6) * 4096)]
    out.append(
        case(
            ram_program(
                layout,
                wide,
                [
                    Op("ramblock_recv_map_init", ()),
                    Op("ramblock_recv_bitmap_set", (Ref(0), base + (bpl + 5) * 4096)),
                    Op("ramblock_recv_bitmap_set", (Ref(0), base + 1 * 4096)),
                ],
            ),
            f"the map has max_length >> bits = {bpl + 6} bits, two words, though used_length "
            f"is 2 pages: page {bpl + 5} (second word, bit 5) and page 1 are received",
            ["WordBoundary", "FinalState"],
            [None, None, None],
            {"destination:pc.ram.receivedmap": (2, {0: 0x2, 1: 1 << 5})},
        )
    )
    again = [
        *sets,
        Op("ram_load_cleanup", ()),
        Op("ram_load_cleanup", ()),
        Op("ramblock_recv_map_init", ()),
        Op("ramblock_recv_bitmap_set", (Ref(0), base + 4096)),
    ]
    out.append(
        case(
            ram_program(layout, blocks, again),
            "ram_load_cleanup frees the map and a second call is harmless (0, 0); a new map "
            "starts empty: only page 1, set afterwards, is received (word 0 = 0x2)",
            ["FinalState"],
            [None, None, None, None, 0, 0, None, None],
            {"destination:pc.ram.receivedmap": (1, {0: 0x2})},
        )
    )
    return out


NOTES = {
    "StreamBytes": "each byte of the stream's size, map and end mark is checked by a fixed vector",
    "FinalState": "a ram rule whose program ends on a live map, so its digest can differ",
}


def main(argv: list[str]) -> int:
    dest = Path(argv[1]) if len(argv) > 1 else HERE
    layouts = (LP64_LE, ILP32_LE)
    every = (*layouts, LP64_BE, ILP32_BE)  # big-endian groups after the others
    files = {
        "stream-bytes.json": [
            *(t for r in layouts for s in layouts for t in stream_cases(r, s)),
            *(t for r in layouts for t in damaged_cases(r)),
            # a big-endian sender or receiver: bitmap_to_le / bitmap_from_le swap each word
            *(t for r in every for s in every if {r, s} - set(layouts) for t in stream_cases(r, s)),
        ],
        "ram-final-state.json": [t for lay in every for t in final_state_cases(lay)],
    }
    for name, tests in files.items():
        path = write_vector_file(dest / name, vector_file(tests, NOTES))
        print(f"{path}: {len(tests)} tests")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
