# SPDX-License-Identifier: GPL-2.0-or-later
"""RAM blocks and their received-page bitmap, as QEMU's migration code keeps them.

QEMU gives each migrated RAMBlock a ``receivedmap`` on the destination (commit
f9494614898f): one bit per *target* page, set when that page has arrived. This module
models the blocks (include/exec/ramblock.h), the run-time target page size
(page-vary-target.c), and the map's accessors (migration/ram.c, include/exec/ram_addr.h),
the discard path (migration/ram.c ram_discard_range, system/physmem.c
ram_block_discard_range) and postcopy placement (migration/postcopy-ram.c), on top of the
model's bitmap functions.

What QEMU keeps in globals (the RAM list, the target page bits, which side of the
migration this process is) is an explicit ``RamContext`` here. Its methods keep QEMU's
names and argument order, so ``ctx.ramblock_recv_bitmap_set(rb, host_addr)`` is QEMU's
``ramblock_recv_bitmap_set(rb, host_addr)``.

A context models the rules of one QEMU state (``release=``: a release, or a rule set such
as a tree between releases has; default the newest; see ``pymodel.releases``). The
release rules of this module:
- which blocks get maps and count in ram_bytes_total: every block before v3.0.0
  (b895de5027 skips non-migratable ones), ignore-shared blocks too from v4.0.0
  (fbd162e629);
- ramblock_recv_bitmap_test_byte_offset exists from v2.12.0 (1cba9f6e662d);
- ram_discard_range on a block without a receivedmap dereferences NULL before v3.0.0
  (814bb08f177a added the guard): out of the model's domain there;
- ram_list_init_bitmaps leaves the bmaps blank between 03158519384f and 40c4d4a83545
  (inside v4.1.0's development, no release);
- ram_block_discard_range checks the end address ("Unaligned end address") before v5.0.0
  (72821d93e0) and the range against used_length before v6.1.0 (dcdc460767);
- ram_block_discard_range picks madvise by qemu_host_page_size, max(host page, target
  page), before v9.0.0 (80c3aeef7f): a base-page block that is no file then gets neither
  madvise nor fallocate and the discard returns -1 when the target page is the bigger;
  before v2.12.0 (db144f7000) such a block was fallocated on fd -1: EBADF, -9;
- ramblock_recv_bitmap_set_offset exists from v9.1.0 (5ef7e26bdb).
Rules of every release: ram_list_init_bitmaps allocates nothing when ram_bytes_total()
(used_length summed over the blocks that migrate) is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, Self

from .arch import Host, Target
from .arch import target as _arch_target
from .bitmap import bitmap_clear, bitmap_new, bitmap_set, bitmap_set_atomic
from .bitops import set_bit_atomic, test_bit
from .errors import PreconditionError, check_buffer
from .ramtypes import RAMBlock as RAMBlock
from .ramtypes import Side as Side
from .ramtypes import c_long as c_long
from .recovery import (
    ram_dirty_bitmap_reload,
    ramblock_recv_bitmap_send,
)
from .releases import (
    BMAP_BLANK,
    BMAP_DIRTY_AGAIN,
    DISCARD_FALLOCATE_BY_FD,
    DISCARD_LENGTH_MSG,
    DISCARD_MAX_LENGTH,
    DISCARD_REAL_HOST_PAGE,
    DISCARD_SOURCE,
    IGNORE_SHARED,
    RECV_MIGRATABLE,
    Release,
    Rules,
    parse_rules,
    parse_version,
    require,
)
from .words import LP64_LE, Layout, Words

UINT64_BITS = 64
EBADF = 9  # Linux's errno of a system call on no file (fd -1)
IDSTR_MAX = 255  # char idstr[256] in QEMU's RAMBlock


def check_unsigned(function: str, argument: str, value: int, bits: int, ctype: str) -> None:
    """Precondition: ``value`` is representable in the unsigned C type ``ctype``."""
    if not 0 <= value < 1 << bits:
        raise PreconditionError(function, argument, f"0 <= {argument} < 2**{bits} ({ctype})")


class TargetPage:
    """Run-time target page bits: lowered before they are finalized, then frozen.

    QEMU (page-vary-target.c): with TARGET_PAGE_BITS_VARY, ``set_preferred_target_page_bits``
    asserts ``bits >= TARGET_PAGE_BITS_MIN`` and lowers the bits (never raises them); once
    ``finalize_target_page_bits`` has run, a request to lower them returns false. A target
    without VARY has fixed bits and both calls change nothing.
    """

    def __init__(self, bits: int, *, vary: bool = False) -> None:
        if not 1 <= bits <= 31:
            raise PreconditionError("TargetPage", "bits", "1 <= bits <= 31")
        self.vary = vary
        self.bits_min = bits
        self.bits = 0 if vary else bits
        self.decided = not vary

    @classmethod
    def fixed(cls, bits: int) -> TargetPage:
        """A target whose TARGET_PAGE_BITS is a compile-time constant."""
        return cls(bits)

    @classmethod
    def variable(cls, bits_min: int) -> TargetPage:
        """A TARGET_PAGE_BITS_VARY target with TARGET_PAGE_BITS_MIN ``bits_min``, undecided."""
        return cls(bits_min, vary=True)

    @classmethod
    def for_target(
        cls, t: Target | str, board: str | None = None, qemu_version: str | None = None
    ) -> TargetPage:
        """The finalized page bits of target ``t`` on ``board`` in ``qemu_version``.

        Board and historical values come from the facts table (pymodel.arch). None means
        the current QEMU and a board that asks for nothing special.
        """
        t = _arch_target(t) if isinstance(t, str) else t
        bits = t.page_bits
        ver = parse_version(qemu_version) if qemu_version else None
        for h in sorted(t.history, key=lambda h: parse_version(h.changed_in)):
            if ver is not None and ver < parse_version(h.changed_in):
                bits = h.bits
                break
        for b in t.boards:
            since_ok = b.since is None or ver is None or ver >= parse_version(b.since)
            until_ok = b.until is None or (ver is not None and ver <= parse_version(b.until))
            if board in b.boards and since_ok and until_ok:
                bits = b.bits
        return cls.finalized(bits, vary_min=t.page_bits if t.vary else None)

    @classmethod
    def finalized(cls, bits: int, *, vary_min: int | None = None) -> TargetPage:
        """Page bits ``bits`` as finalized: fixed, or with ``vary_min`` a
        TARGET_PAGE_BITS_VARY target of that minimum whose board asked for ``bits`` first."""
        if vary_min is None:
            tp = cls.fixed(bits)
        else:
            tp = cls.variable(vary_min)
            tp.set_preferred_target_page_bits(bits)
        tp.finalize_target_page_bits()
        return tp

    def set_preferred_target_page_bits(self, bits: int) -> bool:
        """Lower the page bits to ``bits``; False once finalized (page-vary-target.c)."""
        if not self.vary:
            return True
        if bits < self.bits_min:
            raise PreconditionError(
                "set_preferred_target_page_bits",
                "bits",
                f"bits >= TARGET_PAGE_BITS_MIN = {self.bits_min} (assert in page-vary-target.c)",
            )
        if self.bits == 0 or self.bits > bits:
            if self.decided:
                return False
            self.bits = bits
        return True

    def finalize_target_page_bits(self) -> None:
        """Freeze the bits; unset bits become TARGET_PAGE_BITS_MIN (page-vary-target.c)."""
        if self.vary and self.bits == 0:
            self.bits = self.bits_min
        self.decided = True

    def qemu_target_page_bits(self) -> int:
        """The page bits; must be finalized (assert in include/exec/target_page.h)."""
        if not self.decided:
            raise PreconditionError(
                "qemu_target_page_bits",
                "target_page",
                "finalize_target_page_bits() first (assert in include/exec/target_page.h "
                "with CONFIG_DEBUG_TCG)",
            )
        return self.bits

    def qemu_target_page_size(self) -> int:
        return 1 << self.qemu_target_page_bits()

    def __repr__(self) -> str:
        state = "decided" if self.decided else "undecided"
        kind = f"vary, min {self.bits_min}" if self.vary else "fixed"
        return f"TargetPage(bits={self.bits}, {kind}, {state})"


class RAMList:
    """QEMU's ram_list: the blocks in creation order."""

    def __init__(self) -> None:
        self.blocks: list[RAMBlock] = []

    def __iter__(self) -> Iterator[RAMBlock]:
        return iter(self.blocks)

    def qemu_ram_block_by_name(self, name: str) -> RAMBlock | None:
        """The block whose idstr is ``name``, or None (system/physmem.c)."""
        for rb in self.blocks:
            if rb.idstr == name:
                return rb
        return None

    def not_ignored(self) -> Iterator[RAMBlock]:
        """RAMBLOCK_FOREACH_NOT_IGNORED (migration/ram.c)."""
        return (rb for rb in self.blocks if not ramblock_is_ignored(rb))


def ramblock_is_ignored(rb: RAMBlock) -> bool:
    """Not migratable, or left out by ignore-shared (migration/ram.c)."""
    return not rb.migratable or rb.ignored


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def postcopy_host_problem(host: Host | None) -> str | None:
    """The error_report() line of a host of the arch table that cannot postcopy, or None.

    A host without userfaultfd (Windows) builds the stub of postcopy_ram_supported_by_host
    (migration/postcopy-ram.c, the branch for builds without __linux__, __NR_userfaultfd and
    CONFIG_EVENTFD), which reports "No OS support" with the function's name, in every
    release from the seed on, and checks nothing else.
    """
    if host is not None and not host.postcopy:
        return "postcopy_ram_supported_by_host: No OS support"
    return None


class RamContext:
    """The model: what QEMU keeps in globals, a RAM list, and the receivedmap functions.

    The globals: target page, host page, word layout, side, release, errors.
    ``pointer_bits`` is the width of the host's pointers (default: the layout's long
    width; 64 for an LLP64 host). ``strict`` makes host addresses outside a block an
    error instead of QEMU's wrap-around. ``error_log`` collects error_report() lines.
    The RAM list starts empty.
    """

    def __init__(
        self,
        target_page: TargetPage,
        *,
        side: Side = Side.DESTINATION,
        layout: Layout = LP64_LE,
        host_page_size: int = 4096,
        pointer_bits: int | None = None,
        strict: bool = False,
        host: Host | None = None,
        release: str | Release | Rules | None = None,
    ) -> None:
        if not _is_pow2(host_page_size):
            raise PreconditionError("RamContext", "host_page_size", "a power of two")
        self.target_page = target_page
        self.side = side
        self.layout = layout
        self.host_page_size = host_page_size
        self.pointer_bits = layout.bits_per_long if pointer_bits is None else pointer_bits
        self.strict = strict
        self.host = host
        self.release = parse_rules(release)
        self.error_log: list[str] = []
        self.ram_list = RAMList()

    @classmethod
    def for_host(
        cls, h: Host, target_page: TargetPage, side: Side = Side.DESTINATION, strict: bool = False
    ) -> Self:
        """A context for host ``h`` of the arch table (layout, page, pointer width)."""
        return cls(
            target_page,
            side=side,
            layout=h.layout,
            host_page_size=h.base_page,
            pointer_bits=h.pointer_bits,
            strict=strict,
            host=h,
        )

    @property
    def bits_per_long(self) -> int:
        return self.layout.bits_per_long

    def qemu_target_page_bits(self) -> int:
        return self.target_page.qemu_target_page_bits()

    def qemu_target_page_size(self) -> int:
        return self.target_page.qemu_target_page_size()

    def error_report(self, message: str) -> None:
        """QEMU's error_report(): the message is kept in ``error_log``."""
        self.error_log.append(message)

    # --- the RAM list ---------------------------------------------------------------

    def _next_host(self, page_size: int) -> int:
        base = 0x7F00_0000_0000 if self.pointer_bits > 32 else 0x4000_0000
        for rb in self.ram_list:
            base = max(base, rb.host + rb.max_length + self.host_page_size)
        return -(-base // page_size) * page_size

    def ram_block_add(
        self,
        idstr: str,
        used_length: int,
        max_length: int | None = None,
        *,
        page_size: int | None = None,
        host: int | None = None,
        postcopy_length: int | None = None,
        migratable: bool = True,
        ignored: bool = False,
    ) -> RAMBlock:
        """QEMU's ram_block_add (system/physmem.c): a new block at the end of the RAM list,
        placed after the others when ``host`` is None.

        Rules: idstr unique, 1..255 bytes; page_size a power of two, at least the host
        page (and one of the host's page sizes when the host is known); lengths multiples
        of max(page_size, target page) (facts 7: RAMBlock lengths are multiples of
        max(host page, target page); a hugepage block is whole hugepages);
        0 < max_length, used_length and postcopy_length <= max_length; host aligned to
        page_size; the block fits the pointer width and overlaps no other block.
        """
        fn = "ram_block_add"
        max_length = used_length if max_length is None else max_length
        page_size = self.host_page_size if page_size is None else page_size
        postcopy_length = used_length if postcopy_length is None else postcopy_length
        raw = idstr.encode()
        if not raw or len(raw) > IDSTR_MAX or b"\0" in raw:
            raise PreconditionError(fn, "idstr", "1 to 255 bytes, no NUL (char idstr[256])")
        if self.ram_list.qemu_ram_block_by_name(idstr) is not None:
            raise PreconditionError(fn, "idstr", f"unique in ram_list ({idstr!r} exists)")
        if not _is_pow2(page_size) or page_size < self.host_page_size:
            raise PreconditionError(
                fn, "page_size", f"a power of two >= the host page 0x{self.host_page_size:x}"
            )
        if self.host is not None and page_size not in self.host.page_sizes:
            sizes = ", ".join(hex(p) for p in self.host.page_sizes)
            raise PreconditionError(fn, "page_size", f"one of host {self.host.name}'s: {sizes}")
        align = max(page_size, self.qemu_target_page_size())
        for name, value in (
            ("used_length", used_length),
            ("max_length", max_length),
            ("postcopy_length", postcopy_length),
        ):
            if value < 0 or value % align:
                raise PreconditionError(
                    fn, name, f"a multiple of max(page_size, target page) = 0x{align:x}"
                )
            if value > max_length:
                raise PreconditionError(fn, name, f"{name} <= max_length")
        if max_length == 0:
            raise PreconditionError(fn, "max_length", "max_length > 0 (QEMU cannot map 0 bytes)")
        host = self._next_host(page_size) if host is None else host
        if host < 0 or host % page_size:
            raise PreconditionError(fn, "host", f"aligned to page_size 0x{page_size:x}")
        if host + max_length > 1 << self.pointer_bits:
            raise PreconditionError(fn, "host", f"block inside the {self.pointer_bits}-bit space")
        for rb in self.ram_list:
            if host < rb.host + rb.max_length and rb.host < host + max_length:
                raise PreconditionError(fn, "host", f"no overlap with block {rb.idstr!r}")
        block = RAMBlock(
            idstr,
            host,
            used_length,
            max_length,
            page_size,
            postcopy_length=postcopy_length,
            migratable=migratable,
            ignored=ignored,
        )
        self.ram_list.blocks.append(block)
        return block

    def qemu_ram_block_by_name(self, name: str) -> RAMBlock | None:
        return self.ram_list.qemu_ram_block_by_name(name)

    def ramblock_is_ignored(self, rb: RAMBlock) -> bool:
        """Whether the migration skips ``rb`` at this context's release.

        v2.12: no block is skipped; from v3.0.0 (b895de5027) non-migratable blocks; from
        v4.0.0 (fbd162e629) also blocks left out by ignore-shared.
        """
        if not self.release.has(RECV_MIGRATABLE):
            return False
        if not self.release.has(IGNORE_SHARED):
            return not rb.migratable
        return ramblock_is_ignored(rb)

    def migrated_blocks(self) -> list[RAMBlock]:
        """RAMBLOCK_FOREACH_NOT_IGNORED (RAMBLOCK_FOREACH_MIGRATABLE, RAMBLOCK_FOREACH in
        the releases before the skip rules): the blocks the migration walks."""
        return [rb for rb in self.ram_list if not self.ramblock_is_ignored(rb)]

    def ram_bytes_total(self) -> int:
        """used_length summed over the blocks the migration walks (migration/ram.c)."""
        return sum(rb.used_length for rb in self.migrated_blocks()) % (1 << UINT64_BITS)

    # --- preconditions ----------------------------------------------------------------

    def _check_pointer(self, function: str, argument: str, value: int) -> None:
        check_unsigned(function, argument, value, self.pointer_bits, "void *")

    def _check_size(self, function: str, argument: str, value: int) -> None:
        check_unsigned(function, argument, value, self.pointer_bits, "size_t")

    def _recvmap(self, function: str, rb: RAMBlock) -> Words:
        if rb.receivedmap is None:
            raise PreconditionError(
                function,
                "rb->receivedmap",
                "allocated by ramblock_recv_map_init on the destination (QEMU would "
                "dereference NULL)",
            )
        return rb.receivedmap

    def _side(self, function: str, side: Side) -> None:
        if self.side is not side:
            raise PreconditionError(function, "side", f"runs on the {side.value} only")

    # --- the received map -------------------------------------------------------------

    def ramblock_recv_map_init(self) -> None:
        """Allocate ``max_length >> target_page_bits`` bits per migrated block.

        QEMU (migration/ram.c ramblock_recv_map_init, from ram_load_setup on the
        destination): for each block not ignored, assert the map is NULL, then
        bitmap_new(rb->max_length >> qemu_target_page_bits()). Ignored and non-migratable
        blocks keep no map.
        """
        fn = "ramblock_recv_map_init"
        self._side(fn, Side.DESTINATION)
        bits = self.qemu_target_page_bits()
        blocks = self.migrated_blocks()
        for rb in blocks:
            if rb.receivedmap is not None:
                raise PreconditionError(fn, "rb->receivedmap", "NULL (assert in migration/ram.c)")
        for rb in blocks:
            rb.receivedmap = bitmap_new(rb.max_length >> bits, self.layout)

    def ramblock_recv_bitmap_offset(
        self, host_addr: int, rb: RAMBlock, strict: bool | None = None
    ) -> int:
        """Bit index of ``host_addr``: ``(host_addr - rb->host) >> target_page_bits``.

        QEMU (include/exec/ram_addr.h): the difference is taken as uintptr_t (modulo
        2**pointer_bits), widened to uint64_t, shifted, returned as unsigned long. There is
        no range check: an address below rb->host wraps to a huge index. ``strict`` (default
        the context's) raises for an address outside the block instead.
        """
        fn = "ramblock_recv_bitmap_offset"
        self._check_pointer(fn, "host_addr", host_addr)
        if self.strict if strict is None else strict:
            if not rb.host <= host_addr < rb.host + rb.max_length:
                raise PreconditionError(
                    fn,
                    "host_addr",
                    "rb->host <= host_addr < rb->host + max_length (strict mode; QEMU "
                    "does not check and wraps around)",
                )
        diff = (host_addr - rb.host) % (1 << self.pointer_bits)
        return (diff >> self.qemu_target_page_bits()) % (1 << self.bits_per_long)

    def _index(self, offset: int) -> int:
        """An unsigned long / uint64_t bit index passed as test_bit's ``long nr``."""
        return c_long(offset, self.bits_per_long)

    def ramblock_recv_bitmap_test(self, rb: RAMBlock, host_addr: int) -> int:
        """test_bit(ramblock_recv_bitmap_offset(host_addr, rb), rb->receivedmap) (ram.c)."""
        fn = "ramblock_recv_bitmap_test"
        m = self._recvmap(fn, rb)
        return test_bit(self._index(self.ramblock_recv_bitmap_offset(host_addr, rb)), m)

    def ramblock_recv_bitmap_test_byte_offset(self, rb: RAMBlock, byte_offset: int) -> bool:
        """test_bit(byte_offset >> TARGET_PAGE_BITS, rb->receivedmap) (migration/ram.c)."""
        fn = "ramblock_recv_bitmap_test_byte_offset"
        require(fn, self.release)  # from 1cba9f6e662d (v2.12.0)
        check_unsigned(fn, "byte_offset", byte_offset, UINT64_BITS, "uint64_t")
        m = self._recvmap(fn, rb)
        nr = self._index(byte_offset >> self.qemu_target_page_bits())
        return bool(test_bit(nr, m))

    def ramblock_recv_bitmap_set(self, rb: RAMBlock, host_addr: int) -> None:
        """set_bit_atomic of the page at ``host_addr`` (migration/ram.c; precopy, per page)."""
        fn = "ramblock_recv_bitmap_set"
        m = self._recvmap(fn, rb)
        set_bit_atomic(self._index(self.ramblock_recv_bitmap_offset(host_addr, rb)), m)

    def ramblock_recv_bitmap_set_range(self, rb: RAMBlock, host_addr: int, nr: int) -> None:
        """bitmap_set_atomic of ``nr`` TARGET pages from ``host_addr`` (migration/ram.c).

        ``nr`` is a size_t converted to bitmap_set_atomic's ``long nr``.
        """
        fn = "ramblock_recv_bitmap_set_range"
        self._check_size(fn, "nr", nr)
        m = self._recvmap(fn, rb)
        start = self._index(self.ramblock_recv_bitmap_offset(host_addr, rb))
        bitmap_set_atomic(m, start, c_long(nr, self.bits_per_long))

    def ramblock_recv_bitmap_set_offset(self, rb: RAMBlock, byte_offset: int) -> None:
        """set_bit_atomic(byte_offset >> TARGET_PAGE_BITS, rb->receivedmap) (ram.c, 2024)."""
        fn = "ramblock_recv_bitmap_set_offset"
        require(fn, self.release)
        check_unsigned(fn, "byte_offset", byte_offset, UINT64_BITS, "uint64_t")
        m = self._recvmap(fn, rb)
        set_bit_atomic(self._index(byte_offset >> self.qemu_target_page_bits()), m)

    def ram_load_cleanup(self) -> int:
        """Free each migrated block's map and set it to None; harmless twice (ram.c)."""
        for rb in self.migrated_blocks():
            rb.receivedmap = None
        return 0

    # --- discard ----------------------------------------------------------------------

    def ram_block_discard_range(self, rb: RAMBlock, start: int, length: int) -> int:
        """The checks of system/physmem.c ram_block_discard_range; 0, -1 (or -EBADF at v2.11).

        rb->host + start must be aligned to rb->page_size ("Unaligned start address");
        start + length (uint64_t, wrapping) must not pass max_length ("Overrun block");
        length must be a multiple of rb->page_size ("Unaligned length"). Then the discard
        itself (``_discard_call``: madvise or fallocate, which succeed on a checked range;
        before v9.0.0 possibly neither). %p is printed as 0x%x.
        Before v6.1.0 (dcdc460767) the range had to fit used_length, and the message
        printed it; before v5.0.0 (72821d93e0) the end address host + start + length was
        checked instead of the length ("Unaligned end address: %p"): the same verdict,
        since the start is aligned by then.
        """
        fn = "ram_block_discard_range"
        check_unsigned(fn, "start", start, UINT64_BITS, "uint64_t")
        self._check_size(fn, "length", length)
        host_startaddr = (rb.host + start) % (1 << self.pointer_bits)
        if host_startaddr % rb.page_size:
            self.error_report(f"{fn}: Unaligned start address: 0x{host_startaddr:x}")
            return -1
        limit = rb.max_length if self.release.has(DISCARD_MAX_LENGTH) else rb.used_length
        if (start + length) % (1 << UINT64_BITS) > limit:
            self.error_report(f"{fn}: Overrun block '{rb.idstr}' ({start}/{length:x}/{limit:x})")
            return -1
        if length % rb.page_size:
            if self.release.has(DISCARD_LENGTH_MSG):
                self.error_report(f"{fn}: Unaligned length: {length:x}")
            else:
                host_endaddr = (host_startaddr + length) % (1 << self.pointer_bits)
                self.error_report(f"{fn}: Unaligned end address: 0x{host_endaddr:x}")
            return -1
        return self._discard_call(rb, start, length)

    def backed_by_file(self, rb: RAMBlock) -> bool:
        """Whether a file backs ``rb`` (QEMU's rb->fd != -1): hugetlbfs when its page is not
        the host's base page, and the shared named file of a block ignore-shared leaves out
        (``ignored``); any other block is anonymous memory on the host's base pages."""
        return rb.page_size != self.host_page_size or rb.ignored

    def _discard_call(self, rb: RAMBlock, start: int, length: int) -> int:
        """The system call of a checked discard: 0, or QEMU's failure when it has none.

        QEMU (ram_block_discard_range): fallocate(PUNCH_HOLE) when a file backs the block,
        madvise(DONTNEED) when rb->page_size equals the host page; both succeed on a range
        that passed the checks, and a call that makes neither keeps its initial -1 without
        a message. From v9.0.0 (80c3aeef7f, "softmmu/physmem: Remove qemu_host_page_size")
        the host page is qemu_real_host_page_size(), so every block takes one of them.
        Before, it was qemu_host_page_size, which page_size_init set to max(real host page,
        TARGET_PAGE_SIZE): with a target page bigger than the host's, an anonymous block on
        base pages took neither. Before v2.12.0 (db144f7000, "migrate: Update
        ram_block_discard_range for shared") a block that was not madvised was fallocated
        on its fd even without a file: -1 fails with EBADF, -9 and "Failed to discard range".
        """
        if self.release.has(DISCARD_REAL_HOST_PAGE):
            return 0
        qemu_host_page_size = max(self.host_page_size, self.qemu_target_page_size())
        if rb.page_size == qemu_host_page_size or self.backed_by_file(rb):
            return 0
        if self.release.has(DISCARD_FALLOCATE_BY_FD):
            return -1
        ret = -EBADF
        self.error_report(
            f"ram_block_discard_range: Failed to discard range {rb.idstr}:{start:x} "
            f"+{length:x} ({ret})"
        )
        return ret

    def ram_discard_range(self, rbname: str, start: int, length: int) -> int:
        """Clear the received bits FIRST, then run ram_block_discard_range's checks.

        QEMU (migration/ram.c): unknown block -> error, -1. If the block has a map,
        bitmap_clear(map, start >> bits, length >> bits) (both shifts truncate), then
        return ram_block_discard_range(rb, start, length): a discard that fails its checks
        has already cleared the bits. The source has no map and clears nothing.

        Before 814bb08f177a (v3.0.0) the clear was unconditional: on a block without a map
        (the source's; from b895de5027 a non-migratable block's too) a discard of at least
        one target page dereferences NULL, outside the model's domain; with a shorter one
        bitmap_clear touches nothing and the discard goes on.
        """
        fn = "ram_discard_range"
        check_unsigned(fn, "start", start, UINT64_BITS, "uint64_t")
        self._check_size(fn, "length", length)
        rb = self.qemu_ram_block_by_name(rbname)
        if rb is None:
            self.error_report(f"{fn}: Failed to find block '{rbname}'")
            return -1
        bits = self.qemu_target_page_bits()
        unguarded = not self.release.has(DISCARD_SOURCE)  # before 814bb08f177a
        if rb.receivedmap is None and unguarded and c_long(length >> bits, self.bits_per_long):
            raise PreconditionError(
                fn,
                "rb->receivedmap",
                f"allocated: QEMU {self.release} clears the received bits unconditionally "
                "and dereferences NULL on a block without a map, the source's (fixed in "
                "v3.0.0 by 814bb08f177a; less than one target page touches nothing)",
            )
        if rb.receivedmap is not None:
            bitmap_clear(
                rb.receivedmap,
                c_long(start >> bits, self.bits_per_long),
                c_long(length >> bits, self.bits_per_long),
            )
        return self.ram_block_discard_range(rb, start, length)

    # --- postcopy ---------------------------------------------------------------------

    def postcopy_ram_supported_by_host(self) -> bool:
        """False, with QEMU's message, when the target page is bigger than the host page.

        QEMU (migration/postcopy-ram.c postcopy_ram_supported_by_host) first compares the
        target page size with the real host page (getpagesize(), later
        qemu_real_host_page_size()). A host of the arch table without userfaultfd (Windows)
        has the stub instead, which says only that it has no OS support
        (``postcopy_host_problem``), whatever the page sizes.
        """
        problem = postcopy_host_problem(self.host)
        if problem is not None:
            self.error_report(problem)
            return False
        if self.qemu_target_page_size() > self.host_page_size:
            self.error_report("Target page size bigger than host page size")
            return False
        return True

    def postcopy_place_page(self, host: int, rb: RAMBlock) -> int:
        """Place one whole host page atomically: set page_size / target_page_size bits.

        QEMU (migration/postcopy-ram.c qemu_ufd_copy_ioctl): after UFFDIO_COPY succeeds,
        ramblock_recv_bitmap_set_range(rb, host, pagesize / qemu_target_page_size()).
        Preconditions: destination, postcopy supported by the host (target page <= host
        page), ``host`` the start of a page of rb->page_size inside the block.
        """
        fn = "postcopy_place_page"
        self._side(fn, Side.DESTINATION)
        self._check_pointer(fn, "host", host)
        if self.qemu_target_page_size() > self.host_page_size:
            raise PreconditionError(
                fn,
                "target page",
                "target page size <= host page size (postcopy_ram_supported_by_host in "
                "migration/postcopy-ram.c refuses postcopy otherwise)",
            )
        if host % rb.page_size or not rb.host <= host <= rb.host + rb.max_length - rb.page_size:
            raise PreconditionError(
                fn, "host", "a host page of rb->page_size inside the block (UFFDIO_COPY)"
            )
        self._recvmap(fn, rb)
        self.ramblock_recv_bitmap_set_range(rb, host, rb.page_size // self.qemu_target_page_size())
        return 0

    # --- the source's dirty bitmap ----------------------------------------------------

    def ram_list_init_bitmaps(self) -> None:
        """Source: each migrated block's bmap, max_length >> bits bits, all dirty (ram.c).

        Between 03158519384f and 40c4d4a83545 (no release: v4.1.0-rc0 and the commits
        around it) the new bmaps stay all clear.

        QEMU skips the whole allocation when ram_bytes_total() is 0 (used_length summed
        over the blocks the migration walks; "Skip setting bitmap if there is no RAM"):
        then every bmap stays NULL, even of a block whose max_length is not 0.
        """
        fn = "ram_list_init_bitmaps"
        self._side(fn, Side.SOURCE)
        bits = self.qemu_target_page_bits()
        blocks = self.migrated_blocks()
        for rb in blocks:
            if rb.bmap is not None:
                raise PreconditionError(fn, "rb->bmap", "NULL before ram_save_setup")
        if self.ram_bytes_total() == 0:
            return
        # 03158519384f left the bmap blank, 40c4d4a83545 (both v4.1.0) made it dirty again
        blank = self.release.has(BMAP_BLANK) and not self.release.has(BMAP_DIRTY_AGAIN)
        for rb in blocks:
            pages = rb.max_length >> bits
            rb.bmap = bitmap_new(pages, self.layout)
            if not blank:
                bitmap_set(rb.bmap, 0, pages)

    def ram_save_cleanup(self) -> None:
        """Source: free each migrated block's bmap (migration/ram.c ram_save_cleanup)."""
        for rb in self.migrated_blocks():
            rb.bmap = None

    # --- postcopy recovery (pymodel.recovery) -----------------------------------------

    def ramblock_recv_bitmap_send(self, block_name: str) -> tuple[bytes, int]:
        """Destination: the recovery stream of one block and QEMU's return value."""
        return ramblock_recv_bitmap_send(self, block_name)

    def ram_dirty_bitmap_reload(self, block: RAMBlock, stream: bytes) -> int:
        """Source: load a recovery stream (any bytes-like object) into block->bmap as
        dirty pages; 0."""
        stream = check_buffer("ram_dirty_bitmap_reload", "stream", stream)
        return ram_dirty_bitmap_reload(self, block, stream)


# The context factory of the model: the same arguments as every face's factory.
model_context = RamContext


class MapLike(Protocol):
    """A bitmap seen from outside: the model's Words or the C face's map."""

    @property
    def nwords(self) -> int: ...

    def image(self) -> bytes: ...


class RamApi(Protocol):
    """The API the model context and the C face share (blocks are each side's own type)."""

    layout: Layout
    side: Side
    error_log: list[str]

    def qemu_target_page_bits(self) -> int: ...

    def qemu_target_page_size(self) -> int: ...

    @property
    def ram_block_add(self) -> Callable[..., Any]:
        """QEMU's ram_block_add with ``RamContext.ram_block_add``'s arguments."""

    def qemu_ram_block_by_name(self, name: str) -> Any: ...

    def ramblock_recv_map_init(self) -> None: ...

    def ramblock_recv_bitmap_offset(
        self, host_addr: int, rb: Any, strict: bool | None = None
    ) -> int: ...

    def ramblock_recv_bitmap_test(self, rb: Any, host_addr: int) -> int: ...

    def ramblock_recv_bitmap_test_byte_offset(self, rb: Any, byte_offset: int) -> bool: ...

    def ramblock_recv_bitmap_set(self, rb: Any, host_addr: int) -> None: ...

    def ramblock_recv_bitmap_set_range(self, rb: Any, host_addr: int, nr: int) -> None: ...

    def ramblock_recv_bitmap_set_offset(self, rb: Any, byte_offset: int) -> None: ...

    def ram_load_cleanup(self) -> int: ...

    def ram_block_discard_range(self, rb: Any, start: int, length: int) -> int: ...

    def ram_discard_range(self, rbname: str, start: int, length: int) -> int: ...

    def postcopy_ram_supported_by_host(self) -> bool: ...

    def postcopy_place_page(self, host: int, rb: Any) -> int: ...

    def ram_list_init_bitmaps(self) -> None: ...

    def ram_save_cleanup(self) -> None: ...

    def ramblock_recv_bitmap_send(self, block_name: str) -> tuple[bytes, int]: ...

    def ram_dirty_bitmap_reload(self, block: Any, stream: bytes) -> int: ...
