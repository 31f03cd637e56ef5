# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU targets and migration hosts: page sizes, word widths, byte orders.

One table of targets (target page bits per QEMU target, with board variants and the
QEMU versions that changed them) and one of hosts (word width, byte order, base page,
hugepage sizes), restated from the facts page, sections 6 and 7. ``render_tables()`` is
what ``recvmap arches`` prints; ``postcopy_combinations()`` lists where postcopy can run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .words import Layout

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True)
class BoardPageBits:
    """Target page bits a set of boards asks for (``set_preferred_target_page_bits``).

    ``since`` / ``until`` are QEMU versions (inclusive); None means open-ended.
    """

    boards: tuple[str, ...]
    bits: int
    since: str | None = None
    until: str | None = None
    note: str = ""


@dataclass(frozen=True)
class PageBitsChange:
    """``bits`` was the target page size before QEMU version ``changed_in``."""

    bits: int
    changed_in: str


@dataclass(frozen=True)
class Target:
    """A QEMU target: its default target page bits for system emulation.

    For a variable-page target (``vary``, QEMU's TARGET_PAGE_BITS_VARY) ``page_bits`` is
    the legacy minimum; boards may lower-bound it higher before it is finalized.
    """

    name: str
    page_bits: int
    big_endian: bool
    vary: bool = False
    system: bool = True
    boards: tuple[BoardPageBits, ...] = ()
    history: tuple[PageBitsChange, ...] = ()
    notes: str = ""

    @property
    def page_size(self) -> int:
        return 1 << self.page_bits

    def page_bits_choices(self) -> tuple[int, ...]:
        """Every target page bits value this target uses or used, default first."""
        seen = [self.page_bits]
        for bits in [b.bits for b in self.boards] + [h.bits for h in self.history]:
            if bits not in seen:
                seen.append(bits)
        return tuple(seen)


@dataclass(frozen=True)
class Host:
    """A host QEMU runs on: ``unsigned long`` width, byte order, page sizes.

    ``base_page`` is getpagesize(); ``hugepages`` are the other values a RAMBlock's
    ``page_size`` can take (hugetlbfs backing). ``postcopy`` says whether the host has
    userfaultfd (Linux), which postcopy needs.
    """

    name: str
    bits_per_long: int
    big_endian: bool
    base_page: int
    hugepages: tuple[int, ...]
    pointer_bits: int
    postcopy: bool = True
    notes: str = ""

    @property
    def layout(self) -> Layout:
        return Layout(self.bits_per_long, self.big_endian)

    @property
    def page_sizes(self) -> tuple[int, ...]:
        """Every RAMBlock page_size on this host: the base page, then the hugepages."""
        return (self.base_page, *self.hugepages)


_ARM_BOARDS = (
    BoardPageBits(("virt",), 12, since="2.8", note="virt-2.7 and older keep 10"),
    BoardPageBits(("sbsa-ref",), 12),
)
_ARM_NOTES = "variable page size (TARGET_PAGE_BITS_VARY), legacy 10"
_LOONGSON_BOARDS = (BoardPageBits(("fuloong2e", "loongson3-virt"), 14, since="5.1", until="9.2"),)

TARGETS: tuple[Target, ...] = (
    Target("aarch64", 10, False, vary=True, boards=_ARM_BOARDS, notes=_ARM_NOTES),
    Target("alpha", 13, False),
    Target("arm", 10, False, vary=True, boards=_ARM_BOARDS, notes=_ARM_NOTES),
    Target("avr", 10, False, history=(PageBitsChange(8, "10.1"),)),
    Target("hexagon", 16, False, system=False, notes="user mode only: no migration"),
    Target("hppa", 12, True),
    Target("i386", 12, False),
    Target("loongarch64", 12, False, history=(PageBitsChange(14, "8.2"),)),
    Target("m68k", 12, True),
    Target("microblaze", 12, True),
    Target("microblazeel", 12, False),
    Target("mips", 12, True),
    Target("mips64", 12, True),
    Target("mips64el", 12, False, boards=_LOONGSON_BOARDS),
    Target("mipsel", 12, False),
    Target("or1k", 13, True),
    Target("ppc", 12, True),
    Target("ppc64", 12, True, notes="ppc64 hosts usually run 64K host pages"),
    Target("riscv32", 12, False),
    Target("riscv64", 12, False),
    Target("rx", 12, False),
    Target("s390x", 12, True),
    Target("sh4", 12, False),
    Target("sh4eb", 12, True),
    Target("sparc", 12, True),
    Target("sparc64", 13, True),
    Target("tricore", 14, False),
    Target("x86_64", 12, False),
    Target("xtensa", 12, False),
    Target("xtensaeb", 12, True),
)

HOSTS: tuple[Host, ...] = (
    Host("x86_64", 64, False, 4 * KIB, (2 * MIB, GIB), 64),
    Host("aarch64-4k", 64, False, 4 * KIB, (64 * KIB, 2 * MIB, 32 * MIB, GIB), 64),
    Host("aarch64-16k", 64, False, 16 * KIB, (2 * MIB, 32 * MIB, GIB), 64),
    Host("aarch64-64k", 64, False, 64 * KIB, (2 * MIB, 512 * MIB, 16 * GIB), 64),
    Host("ppc64le-hash", 64, False, 64 * KIB, (16 * MIB, 16 * GIB), 64, notes="hash MMU"),
    Host("ppc64le-radix", 64, False, 64 * KIB, (2 * MIB, GIB), 64, notes="radix MMU"),
    Host("ppc64-hash", 64, True, 64 * KIB, (16 * MIB, 16 * GIB), 64, notes="hash MMU"),
    Host("ppc64-radix", 64, True, 64 * KIB, (2 * MIB, GIB), 64, notes="radix MMU"),
    Host("s390x", 64, True, 4 * KIB, (MIB, 2 * GIB), 64, notes="1M hugepages with KVM"),
    Host("loongarch64", 64, False, 16 * KIB, (32 * MIB,), 64),
    Host(
        "win64",
        32,
        False,
        4 * KIB,
        (),
        64,
        postcopy=False,
        notes="LLP64: 32-bit long, 64-bit pointers; no userfaultfd",
    ),
    Host("i386", 32, False, 4 * KIB, (), 32, notes="32-bit host"),
    Host("arm", 32, False, 4 * KIB, (), 32, notes="32-bit host"),
)


def target(name: str) -> Target:
    """The target called ``name`` (KeyError if QEMU has none)."""
    for t in TARGETS:
        if t.name == name:
            return t
    raise KeyError(f"no QEMU target {name!r}")


def host(name: str) -> Host:
    """The host called ``name`` (KeyError if the table has none)."""
    for h in HOSTS:
        if h.name == name:
            return h
    raise KeyError(f"no host {name!r}")


def size_str(n: int) -> str:
    """A page size the way the facts write it: 4K, 2M, 1G, 16G, 256 (bytes)."""
    for unit, suffix in ((GIB, "G"), (MIB, "M"), (KIB, "K")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


@dataclass(frozen=True)
class PostcopyCombination:
    """A (target, host, RAMBlock page_size) triple on which postcopy can run."""

    target: str
    target_page_bits: int
    host: str
    page_size: int


def postcopy_possible(target_page_bits: int, h: Host) -> bool:
    """Postcopy needs userfaultfd and a target page no larger than the host's base page.

    QEMU: postcopy_ram_supported_by_host (migration/postcopy-ram.c) compares the target
    page size with getpagesize() and refuses when it is bigger.
    """
    return h.postcopy and (1 << target_page_bits) <= h.base_page


def postcopy_combinations(
    targets: tuple[Target, ...] = TARGETS,
    hosts: tuple[Host, ...] = HOSTS,
    every_page_bits: bool = False,
) -> list[PostcopyCombination]:
    """Every (target, host, page_size) where postcopy is possible.

    Only targets with system emulation migrate. With ``every_page_bits`` the board and
    historical page sizes of each target are listed too, not only its default.
    """
    out = []
    for t in targets:
        if not t.system:
            continue
        choices = t.page_bits_choices() if every_page_bits else (t.page_bits,)
        for bits in choices:
            for h in hosts:
                if postcopy_possible(bits, h):
                    out += [PostcopyCombination(t.name, bits, h.name, ps) for ps in h.page_sizes]
    return out


def _target_variants(t: Target) -> str:
    parts = []
    for b in t.boards:
        span = ""
        if b.since and b.until:
            span = f" in QEMU {b.since}..{b.until}"
        elif b.since:
            span = f" since {b.since}"
        note = f" ({b.note})" if b.note else ""
        parts.append(f"{b.bits} on {'/'.join(b.boards)}{span}{note}")
    parts += [f"{h.bits} before QEMU {h.changed_in}" for h in t.history]
    if t.notes:
        parts.append(t.notes)
    return "; ".join(parts)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_tables() -> str:
    """Both tables as plain text (``recvmap arches``)."""
    trows = [
        (
            t.name,
            str(t.page_bits),
            size_str(t.page_size),
            "big" if t.big_endian else "little",
            "system" if t.system else "user",
            _target_variants(t),
        )
        for t in TARGETS
    ]
    hrows = [
        (
            h.name,
            str(h.bits_per_long),
            str(h.pointer_bits),
            "big" if h.big_endian else "little",
            size_str(h.base_page),
            ", ".join(size_str(p) for p in h.hugepages) or "-",
            "yes" if h.postcopy else "no",
            h.notes,
        )
        for h in HOSTS
    ]
    return (
        "Targets (target page bits, facts section 6)\n"
        + _table(("target", "bits", "page", "order", "mode", "variants / notes"), trows)
        + "\n\nHosts (facts section 7)\n"
        + _table(("host", "BPL", "ptr", "order", "base", "hugepages", "uffd", "notes"), hrows)
        + "\n"
    )
