# SPDX-License-Identifier: GPL-2.0-or-later
"""Hand-written mutants: plausible patch mistakes in the C reference, and known equivalents.

Each entry is a mistake a person porting or patching QEMU's receivedmap or bitmap code
could make: the wrong page-size unit, host page bits where target page bits belong, the
wrong rounding of the recovery stream size, clearing the received bits after the discard
checks instead of before, masks off by one, an atomic helper replaced by a plain one...
Edits are exact texts of the current sources (``fuzz/subjects/build.py`` requires each to match
exactly once), so an entry that no longer applies is reported as stale, never skipped.

``equivalent`` states why a mutant cannot be told apart from the reference by any program
of QEMU's domain; ``SEQUENTIAL`` marks those only a concurrent oracle (qref-stress) can
tell. ``EQUIVALENT`` gives the same for systematic mutants, by key (``recvmap mutants
--list`` prints keys); docs/mutants.md has the reasoning in full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .mutant import Mutant

SEQUENTIAL = "sequential"  # equivalent for one thread; a concurrent oracle may tell


@dataclass(frozen=True)
class Hand:
    name: str
    edits: tuple[tuple[str, str, str], ...]  # (file, exact old text, new text)
    note: str
    equivalent: str = ""  # why no program of QEMU's domain tells it apart ("" = it should die)
    kind: str = ""  # SEQUENTIAL: only concurrent runs can tell


def _h(
    name: str, file: str, old: str, new: str, note: str, equivalent: str = "", kind: str = ""
) -> Hand:
    return Hand(name, ((file, old, new),), note, equivalent, kind)


RAM = "ram.c"
BITMAP = "bitmap.c"
BITOPS = "bitops.c"
HEADER = "qemu_ref.h"

HAND: tuple[Hand, ...] = (
    # --- the receivedmap layer: units and page bits ---------------------------------------
    _h(
        "recv-offset-host-page-bits",
        RAM,
        "    return (qref_ulong)(off >> qemu_target_page_bits());",
        "    return (qref_ulong)(off >> __builtin_ctzll(rb->page_size));",
        "host page bits where target page bits belong (ramblock_recv_bitmap_offset)",
    ),
    _h(
        "test-byte-offset-host-page-bits",
        RAM,
        "    return test_bit((qref_long)(byte_offset >> qemu_target_page_bits()),",
        "    return test_bit((qref_long)(byte_offset >> __builtin_ctzll(rb->page_size)),",
        "host page bits in ramblock_recv_bitmap_test_byte_offset",
    ),
    _h(
        "set-offset-page-size-unit",
        RAM,
        "    set_bit_atomic((qref_long)(byte_offset >> qemu_target_page_bits()),",
        "    set_bit_atomic((qref_long)(byte_offset / rb->page_size),",
        "ramblock_recv_bitmap_set_offset counts host pages (the block's page size)",
    ),
    _h(
        "set-range-counts-host-pages",
        RAM,
        "                      (qref_long)nr);",
        "                      (qref_long)(nr / (rb->page_size >> qemu_target_page_bits())));",
        "ramblock_recv_bitmap_set_range takes nr as host pages, not target pages",
    ),
    _h(
        "recv-map-init-used-length",
        RAM,
        "        rb->receivedmap = ram_bitmap_new(rb->max_length >> qemu_target_page_bits());",
        "        rb->receivedmap = ram_bitmap_new(rb->used_length >> qemu_target_page_bits());",
        "receivedmap sized by used_length, not max_length (resizeable blocks)",
    ),
    _h(
        "recv-map-init-ignored-blocks",
        RAM,
        "        if (ramblock_is_ignored(rb)) {\n            continue;\n        }\n"
        "        assert(!rb->receivedmap);",
        "        assert(!rb->receivedmap);",
        "ramblock_recv_map_init also maps blocks that are not migrated",
    ),
    _h(
        "load-cleanup-keeps-pointer",
        RAM,
        "        qref_map_free(rb->receivedmap);\n        rb->receivedmap = NULL;",
        "        qref_map_free(rb->receivedmap);",
        "ram_load_cleanup leaves a dangling receivedmap (a second init asserts, or worse)",
    ),
    _h(
        "offset-no-32bit-wrap",
        RAM,
        "    uint64_t off = (qref_uptr)((uintptr_t)host_addr - (uintptr_t)rb->host);",
        "    uint64_t off = (uint64_t)(uintptr_t)host_addr - (uint64_t)(uintptr_t)rb->host;",
        "the address difference is not wrapped to the host pointer width (32-bit hosts)",
    ),
    # --- discard ----------------------------------------------------------------------
    Hand(
        "discard-clear-after-checks",
        (
            (
                RAM,
                "    if (rb->receivedmap) {\n        bitmap_clear(rb->receivedmap,\n",
                "    if (ram_block_discard_range(rb, start, length)) {\n        return -1;\n    }\n"
                "    if (rb->receivedmap) {\n        bitmap_clear(rb->receivedmap,\n",
            ),
        ),
        "the received bits are cleared after the discard checks, only when they pass",
    ),
    _h(
        "discard-clear-rounds-length-up",
        RAM,
        "                     (qref_long)(length >> qemu_target_page_bits()));",
        "                     (qref_long)DIV_ROUND_UP(length, qemu_target_page_size()));",
        "ram_discard_range rounds a partial last target page up (clears one page more)",
    ),
    _h(
        "discard-clear-host-page-count",
        RAM,
        "                     (qref_long)(length >> qemu_target_page_bits()));",
        "                     (qref_long)(length / rb->page_size));",
        "ram_discard_range clears length / host page size bits (wrong unit)",
    ),
    _h(
        "discard-clear-start-rounded-up",
        RAM,
        "                     (qref_long)(start >> qemu_target_page_bits()),",
        "                     (qref_long)DIV_ROUND_UP(start, qemu_target_page_size()),",
        "ram_discard_range rounds an unaligned start up instead of down",
    ),
    Hand(
        "discard-check-order",
        (
            (
                RAM,
                "    if (start + length > rb->max_length) {\n"
                "        error_report(\"ram_block_discard_range: Overrun block '%s' (%\" PRIu64\n"
                '                     "/%zx/%" PRIx64 ")", rb->idstr, start, length, '
                "rb->max_length);\n"
                "        return -1;\n    }\n",
                "",
            ),
            (
                RAM,
                '        error_report("ram_block_discard_range: Unaligned length: %zx", length);\n'
                "        return -1;\n    }\n",
                '        error_report("ram_block_discard_range: Unaligned length: %zx", length);\n'
                "        return -1;\n    }\n"
                "    if (start + length > rb->max_length) {\n"
                "        error_report(\"ram_block_discard_range: Overrun block '%s' (%\" PRIu64\n"
                '                     "/%zx/%" PRIx64 ")", rb->idstr, start, length, '
                "rb->max_length);\n"
                "        return -1;\n    }\n",
            ),
        ),
        "the unaligned-length check comes before the overrun check (another error_report)",
    ),
    _h(
        "discard-overrun-off-by-one",
        RAM,
        "    if (start + length > rb->max_length) {",
        "    if (start + length >= rb->max_length) {",
        "a discard reaching exactly the end of the block is refused",
    ),
    _h(
        "discard-overrun-used-length",
        RAM,
        "    if (start + length > rb->max_length) {",
        "    if (start + length > rb->used_length) {",
        "the overrun check uses used_length instead of max_length",
    ),
    _h(
        "discard-align-target-page",
        RAM,
        "    if (host_startaddr & (rb->page_size - 1)) {",
        "    if (host_startaddr & (qemu_target_page_size() - 1)) {",
        "start alignment checked against the target page, not the block's host page",
    ),
    _h(
        "discard-length-align-mask-off-by-one",
        RAM,
        "    if (length & (rb->page_size - 1)) {",
        "    if (length & (rb->page_size - 2)) {",
        "off-by-one alignment mask for the length",
    ),
    # --- postcopy placement -----------------------------------------------------------
    _h(
        "place-one-target-page",
        RAM,
        "    ramblock_recv_bitmap_set_range(rb, host, rb->page_size / qemu_target_page_size());",
        "    ramblock_recv_bitmap_set(rb, host);",
        "a placed host page marks only its first target page received",
    ),
    _h(
        "place-pages-by-shift",
        RAM,
        "    ramblock_recv_bitmap_set_range(rb, host, rb->page_size / qemu_target_page_size());",
        "    ramblock_recv_bitmap_set_range(rb, host, rb->page_size >> qemu_target_page_bits());",
        "target pages per host page by shift instead of division",
        equivalent="both sizes are powers of two: page_size / (1 << bits) == page_size >> bits",
    ),
    _h(
        "supported-by-host-ge",
        RAM,
        "    if (qemu_target_page_size() > host_page_size) {",
        "    if (qemu_target_page_size() >= host_page_size) {",
        "postcopy refused when the target page equals the host page",
    ),
    # --- recovery stream --------------------------------------------------------------
    _h(
        "recovery-size-unpadded",
        RAM,
        "    return ROUND_UP((uint64_t)DIV_ROUND_UP((uint64_t)nbits, 8), 8);",
        "    return (uint64_t)DIV_ROUND_UP((uint64_t)nbits, 8);",
        "the stream size is not padded to 8 bytes",
    ),
    _h(
        "recovery-size-padded-to-long",
        RAM,
        "    return ROUND_UP((uint64_t)DIV_ROUND_UP((uint64_t)nbits, 8), 8);",
        "    return ROUND_UP((uint64_t)DIV_ROUND_UP((uint64_t)nbits, 8), sizeof(qref_ulong));",
        "padded to the host's long (4 bytes on 32-bit hosts) instead of 8",
    ),
    _h(
        "recovery-size-rounds-down",
        RAM,
        "    return ROUND_UP((uint64_t)DIV_ROUND_UP((uint64_t)nbits, 8), 8);",
        "    return ROUND_UP((uint64_t)nbits / 8, 8);",
        "bits to bytes rounded down",
    ),
    _h(
        "send-used-length",
        RAM,
        "    nbits = (qref_ulong)(block->postcopy_length >> qemu_target_page_bits());",
        "    nbits = (qref_ulong)(block->used_length >> qemu_target_page_bits());",
        "the sender sizes the stream by used_length, not postcopy_length",
    ),
    _h(
        "reload-max-length",
        RAM,
        "    qref_ulong nbits = (qref_ulong)(block->used_length >> qemu_target_page_bits());",
        "    qref_ulong nbits = (qref_ulong)(block->max_length >> qemu_target_page_bits());",
        "the receiver expects max_length bits",
    ),
    _h(
        "reload-no-complement",
        RAM,
        "    bitmap_complement(block->bmap, block->bmap, (qref_long)nbits);",
        "",
        "received pages reloaded as dirty (complement forgotten)",
    ),
    _h(
        "reload-ignores-file-error",
        RAM,
        "    if (f.error || got != local_size) {",
        "    if (got != local_size) {",
        "a stream cut inside the end mark is taken as a wrong end mark, not a failed read",
    ),
    _h(
        "init-bitmaps-no-ram-guard",
        RAM,
        "    if (!ram_bytes_total(list)) {",
        "    if (!ram_bytes_total(list) && 0) {",
        "a source with no RAM at all allocates its bitmaps anyway",
    ),
    _h(
        "reload-size-check-lenient",
        RAM,
        "    if (size != local_size) {",
        "    if (size > local_size) {",
        "a smaller announced size is accepted",
    ),
    _h(
        "send-end-mark-offset",
        RAM,
        "    put_be64(buf + 8 + size, RAMBLOCK_RECV_BITMAP_ENDING);",
        "    put_be64(buf + size, RAMBLOCK_RECV_BITMAP_ENDING);",
        "the end mark is written over the last bitmap bytes",
    ),
    _h(
        "send-returns-with-end-mark",
        RAM,
        "    return (int64_t)(size + sizeof(size));",
        "    return (int64_t)(size + 2 * sizeof(size));",
        "the returned length counts the end mark",
    ),
    _h(
        "init-bitmaps-clean",
        RAM,
        "        bitmap_set(rb->bmap, 0, (qref_long)pages);",
        "",
        "the source's dirty bitmap starts clean instead of all dirty",
    ),
    _h(
        "init-bitmaps-used-length",
        RAM,
        "        qref_ulong pages = rb->max_length >> qemu_target_page_bits();",
        "        qref_ulong pages = rb->used_length >> qemu_target_page_bits();",
        "the source marks used_length pages dirty, not max_length",
    ),
    # --- non-atomic replacements (sequentially equivalent) -----------------------------
    _h(
        "recv-set-plain",
        RAM,
        "    set_bit_atomic((qref_long)ramblock_recv_bitmap_offset(host_addr, rb),",
        "    set_bit((qref_long)ramblock_recv_bitmap_offset(host_addr, rb),",
        "ramblock_recv_bitmap_set uses the non-atomic set_bit",
        equivalent="set_bit and set_bit_atomic set the same bit; only concurrent writers lose it",
        kind=SEQUENTIAL,
    ),
    _h(
        "recv-set-range-plain",
        RAM,
        "    bitmap_set_atomic(rb->receivedmap,",
        "    bitmap_set(rb->receivedmap,",
        "ramblock_recv_bitmap_set_range uses the non-atomic bitmap_set",
        equivalent="bitmap_set and bitmap_set_atomic write the same bits in one thread",
        kind=SEQUENTIAL,
    ),
    # --- the bitmap layer -------------------------------------------------------------
    _h(
        "last-word-mask-off-by-one",
        HEADER,
        "(QREF_ULONG_MAX >> (-(nbits) & (QREF_BITS_PER_LONG - 1)))",
        "(QREF_ULONG_MAX >> (-((nbits) + 1) & (QREF_BITS_PER_LONG - 1)))",
        "BITMAP_LAST_WORD_MASK one bit short",
    ),
    _h(
        "first-word-mask-wrong-shift",
        HEADER,
        "(QREF_ULONG_MAX << ((start) & (QREF_BITS_PER_LONG - 1)))",
        "(QREF_ULONG_MAX << ((start + 1) & (QREF_BITS_PER_LONG - 1)))",
        "BITMAP_FIRST_WORD_MASK shifted one too far (and unparenthesized)",
    ),
    _h(
        "bit-mask-hardcoded-64",
        HEADER,
        "#define BIT_MASK(nr)            ((qref_ulong)1 << ((nr) % QREF_BITS_PER_LONG))",
        "#define BIT_MASK(nr)            ((qref_ulong)(1ULL << ((nr) % 64)))",
        "the word width hard-coded as 64 (wrong on 32-bit hosts)",
    ),
    _h(
        "small-nbits-strict",
        HEADER,
        "#define small_nbits(nbits)      ((qref_ulong)(nbits) <= QREF_BITS_PER_LONG)",
        "#define small_nbits(nbits)      ((qref_ulong)(nbits) < QREF_BITS_PER_LONG)",
        "nbits == BPL takes the slow path",
        equivalent="for nbits == BPL the slow path touches the one word the fast path touches, "
        "with a full last-word mask: same results and memory",
    ),
    _h(
        "set-loop-strict",
        BITMAP,
        "    while (nr - room >= 0) {\n        *p++ |= mask;",
        "    while (nr - room > 0) {\n        *p++ |= mask;",
        "bitmap_set stops the word loop one word early when the range ends on a word boundary",
        equivalent="the last word is then OR-ed with mask & BITMAP_LAST_WORD_MASK(end), and end "
        "is a multiple of BPL, so the mask is all ones: the same word is written",
    ),
    _h(
        "set-atomic-first-word-ge",
        BITMAP,
        "    if (nr - room > 0) {\n        __atomic_fetch_or(p++, mask, __ATOMIC_SEQ_CST);",
        "    if (nr - room >= 0) {\n        __atomic_fetch_or(p++, mask, __ATOMIC_SEQ_CST);",
        "bitmap_set_atomic takes the first-word step when the range ends at its end",
        equivalent="the first word gets the same mask either way (end is a word boundary), "
        "and nothing else is written",
    ),
    _h(
        "test-and-clear-resets-mask",
        BITMAP,
        "        /* mask deliberately kept: QEMU does not reset it here */",
        "        mask = QREF_ULONG_MAX;",
        "bitmap_test_and_clear 'fixed': QEMU's missing mask reset added",
    ),
    _h(
        "find-first-bit-unclamped",
        BITOPS,
        "            return base < size ? base : size;",
        "            return base;",
        "find_first_bit returns a hit in the tail past size",
    ),
    _h(
        "find-last-bit-unmasked",
        BITOPS,
        "        w = addr[words] & BITMAP_LAST_WORD_MASK(size);",
        "        w = addr[words];",
        "find_last_bit sees the tail bits of the last word",
    ),
    _h(
        "find-next-offset-unmasked",
        BITOPS,
        "    w = (addr[BIT_WORD(offset)] ^ invert) & BITMAP_FIRST_WORD_MASK(offset);",
        "    w = addr[BIT_WORD(offset)] ^ invert;",
        "find_next_bit sees the bits below offset in the first word",
    ),
    _h(
        "count-with-offset-subtracts-word-0",
        BITMAP,
        "    return count_one(first, nbits + below) - count_one(first, below);",
        "    return count_one(first, nbits + below) - count_one(bitmap, below);",
        "bitmap_count_one_with_offset subtracts the bits below offset % BPL of word 0",
    ),
    _h(
        "fill-tail-set",
        BITMAP,
        "    dst[nlongs - 1] = BITMAP_LAST_WORD_MASK(nbits);",
        "    dst[nlongs - 1] = QREF_ULONG_MAX;",
        "bitmap_fill sets the tail bits",
    ),
    _h(
        "complement-small-unmasked",
        BITMAP,
        "        *dst = ~*src & BITMAP_LAST_WORD_MASK(nbits);",
        "        *dst = ~*src;",
        "bitmap_complement (one word) leaves the tail complemented",
    ),
    _h(
        "zero-area-rounds-down",
        BITMAP,
        "        index = (index + align_mask) & ~align_mask;",
        "        index = index & ~align_mask;",
        "bitmap_find_next_zero_area aligns down",
    ),
    _h(
        "zero-area-end-inclusive",
        BITMAP,
        "        if (end > size) {\n            return end;",
        "        if (end >= size) {\n            return end;",
        "an area ending exactly at size is refused",
    ),
    Hand(
        "copy-and-clear-exact-bits",
        (
            (
                BITMAP,
                "    for (; nr > 0; nr -= QREF_BITS_PER_LONG) {\n"
                "        *dst++ = __atomic_exchange_n(src++, 0, __ATOMIC_SEQ_CST);\n    }",
                "    if (nr > 0) {\n        bitmap_copy(dst, src, nr);\n"
                "        bitmap_clear(src, 0, nr);\n    }",
            ),
        ),
        "bitmap_copy_and_clear_atomic clears only nr bits (QEMU clears whole words)",
    ),
    _h(
        "to-le-exact-bytes",
        BITMAP,
        "    memmove(dst, src, (size_t)len * WORD_BYTES);",
        "    (void)len;\n    memmove(dst, src, ((size_t)nbits + 7) / 8);",
        "bitmap_to_le / from_le copy the bytes of nbits, not whole words",
    ),
    _h(
        "test-and-clear-atomic-via-plain",
        BITMAP,
        "bool bitmap_test_and_clear_atomic(qref_ulong *map, qref_long start,\n"
        "                                  qref_long nr)\n{",
        "bool bitmap_test_and_clear_atomic(qref_ulong *map, qref_long start,\n"
        "                                  qref_long nr)\n{\n"
        "    return bitmap_test_and_clear(map, start, nr);",
        "the atomic test-and-clear replaced by the plain one (which has QEMU's mask quirk)",
    ),
    _h(
        "set-atomic-via-plain",
        BITMAP,
        "void bitmap_set_atomic(qref_ulong *map, qref_long start, qref_long nr)\n{",
        "void bitmap_set_atomic(qref_ulong *map, qref_long start, qref_long nr)\n{\n"
        "    bitmap_set(map, start, nr);\n    return;",
        "bitmap_set_atomic replaced by the plain bitmap_set",
        equivalent="the same bits are set; only concurrent writers sharing a word can tell",
        kind=SEQUENTIAL,
    ),
)

# Systematic mutants argued equivalent (key -> reason); see docs/mutants.md. They are fuzzed
# anyway: a kill refutes the argument. tests/test_mutants_gate.py checks every key exists.
EQUIVALENT: dict[str, str] = {
    # bitmap.c bitmap_copy_with_src_offset: `nbits >= BPL` -> `nbits > BPL` in the word loop
    "bitmap.c:d2fe28c7b3": "with nbits == BPL left, the tail branch (nbits > BPL - shift) "
    "computes (*src & high) >> shift | (src[1] & low) << (BPL - shift), the loop's last word",
    # bitmap.c slow_bitmap_empty: `k < lim` -> `k != lim`
    "bitmap.c:033bc879fe": "lim = nbits / BPL >= 0 inside the domain (a negative nbits would "
    "make the unsigned word count exceed any allocation)",
    # bitmap.c bitmap_set: `nr - room >= 0` -> `nr - room >= 1`
    "bitmap.c:0e38143379": "as hand:set-loop-strict: the range then ends on a word boundary "
    "and the last-word step ORs the same all-ones mask",
    # bitmap.c bitmap_set_atomic: `nr >= BPL` -> `nr > BPL` in the whole-word loop
    "bitmap.c:c02c443ad9": "a last whole word left to the final step gets an atomic OR of "
    "mask & BITMAP_LAST_WORD_MASK(end) = all ones instead of a store of all ones",
    # bitmap.c bitmap_set_atomic: `nr - room > 0` -> `nr - room > (0-1)` (that is, `>= 0`)
    "bitmap.c:741b759d26": "as hand:set-atomic-first-word-ge: with nr == room the range "
    "ends at the first word's end, which gets the same mask either way, and nothing else is "
    "written",
    # bitmap.c bitmap_find_next_zero_area: `start = hit + 1` -> `start = hit / 1`
    "bitmap.c:e1661bfba0": "bit hit is set (find_next_bit found it), so the next "
    "find_next_zero_bit from hit or from hit + 1 returns the same index",
}


def hand_mutants(texts: Mapping[str, str]) -> list[Mutant]:
    """The table as Mutants; the line is that of the first edit (0 when it no longer applies)."""
    out = []
    for h in HAND:
        file, old, new = h.edits[0]
        text = texts.get(file, "")
        pos = text.find(old)
        line = text.count("\n", 0, pos) + 1 if pos >= 0 else 0
        out.append(
            Mutant(
                key=f"hand:{h.name}",
                operator="hand" if h.kind != SEQUENTIAL else "hand-atomic",
                file=file,
                line=line,
                edits=h.edits,
                before=old.strip().splitlines()[0] if old.strip() else "",
                after=(new.strip().splitlines() or ["(dropped)"])[0],
                origin="hand",
                note=h.note,
            )
        )
    return out


def equivalence(m: Mutant) -> tuple[str, str]:
    """(reason, kind) when ``m`` is known equivalent, else ("", "")."""
    if m.origin == "hand":
        for h in HAND:
            if f"hand:{h.name}" == m.key:
                return h.equivalent, h.kind
        return "", ""
    return EQUIVALENT.get(m.key, ""), ""
