# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU releases: the spec's base is the newest release, older ones are small deltas.

In the manner of the Ethereum consensus-specs forks: the functions of ``bitops``,
``bitmap``, ``ramblock`` and ``recovery`` describe the newest release QEMU has
(``DEFAULT_RELEASE``). Every observable rule that changed since v2.12.0 (the first
release with the received-page bitmap, commit f9494614898f) is one ``Change`` below: the
first release with today's rule, the upstream commit that made the change, today's rule
and the OLD rule. The model code asks ``release.has(KEY)`` and applies the old rule when
the context's release predates the change. Functions a release does not have raise
``ReleaseError`` (a ``PreconditionError``) naming the first release that has them.

The table is the semantic changelog of QEMU's bitmap helpers and received-page bitmap;
``recvmap releases`` prints it. Each change was read from QEMU's code in the shared trees
(v2.12.0, v3.0.0, v5.2.0, v8.2.0, v10.1.0) and placed at its release with the
per-function history of those files; changes of text only (comments, renames such as
atomic_ -> qatomic_, __func__ instead of a literal name) are not rules and are not here.

Rules of all releases (not deltas; they predate v2.12.0): ram_list_init_bitmaps
allocates nothing when ram_bytes_total() is 0; ram_dirty_bitmap_reload reads through a
QEMUFile (a read past the end yields zeros and an error checked after the reads, and
bytes after the end mark are never read).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .bitmap import bitmap_count_one_before_v4, bitmap_new_before_v9_1
from .bitops import __all__ as bitops_names
from .errors import PreconditionError

__all__ = [
    "CHANGES",
    "DEFAULT_RELEASE",
    "FUNCTION_SINCE",
    "RELEASES",
    "Change",
    "Release",
    "ReleaseError",
    "ReleaseView",
    "at_release",
    "boundaries",
    "change",
    "changes_between",
    "parse_release",
    "range_of",
    "release_range",
    "render_table",
]

_NAME = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True, order=True)
class Release:
    """A QEMU release, ordered as a version tuple; its name is the git tag ("v3.0.0")."""

    version: tuple[int, int, int]

    @property
    def name(self) -> str:
        return "v" + ".".join(str(x) for x in self.version)

    def __str__(self) -> str:
        return self.name

    def has(self, key: str) -> bool:
        """True when this release has the NEW rule of change ``key``."""
        return self >= CHANGE_BY_KEY[key].release

    def has_function(self, function: str) -> bool:
        """True when QEMU has ``function`` at this release."""
        since = FUNCTION_SINCE.get(function)
        return since is None or self >= since


def _tag(name: str) -> Release:
    m = _NAME.match(name.strip())
    if m is None:
        raise ValueError(name)
    return Release((int(m[1]), int(m[2]), int(m[3] or 0)))


# The releases from the first with the received-page bitmap to the newest one known.
RELEASES: tuple[Release, ...] = tuple(
    _tag(n)
    for n in (
        "v2.12.0 v3.0.0 v3.1.0 v4.0.0 v4.1.0 v4.2.0 v5.0.0 v5.1.0 v5.2.0 v6.0.0 v6.1.0 "
        "v6.2.0 v7.0.0 v7.1.0 v7.2.0 v8.0.0 v8.1.0 v8.2.0 v9.0.0 v9.1.0 v9.2.0 v10.0.0 "
        "v10.1.0 v10.1.3"
    ).split()
)
DEFAULT_RELEASE: Release = RELEASES[-1]
FIRST_RELEASE: Release = RELEASES[0]


def parse_release(value: str | Release | None) -> Release:
    """ "v3.0.0", "3.0.0", "3.0" (a tree's VERSION) or a Release; None is the default.

    Any version from v2.12.0 (the first with the received-page bitmap) to the newest
    known release is accepted, also one between two listed releases (a stable release
    such as v10.1.1): the rules are keyed by the first release that had them.
    """
    if value is None:
        return DEFAULT_RELEASE
    if isinstance(value, Release):
        return value
    try:
        rel = _tag(value)
    except ValueError:
        raise PreconditionError(
            "parse_release", "release", f"a QEMU release tag such as v10.1.0, not {value!r}"
        ) from None
    if rel < FIRST_RELEASE:
        raise PreconditionError(
            "parse_release",
            "release",
            f"{rel} predates the received-page bitmap (first in {FIRST_RELEASE}, "
            "commit f9494614898f)",
        )
    if rel > DEFAULT_RELEASE:
        raise PreconditionError(
            "parse_release",
            "release",
            f"{rel} is newer than the newest release the model knows ({DEFAULT_RELEASE})",
        )
    return rel


def release_range(spec: str) -> Callable[[Release], bool]:
    """A predicate for a range such as ">=v4.0.0", "<v4.0.0", ">=v3.0.0,<v8.2.0" or "*".

    A bare tag means exactly that release.
    """
    tests: list[Callable[[Release], bool]] = []
    for part in (p.strip() for p in spec.split(",")):
        if part in ("", "*"):
            continue
        for op in (">=", "<=", ">", "<", "=="):
            if part.startswith(op):
                bound = parse_release(part[len(op) :])
                break
        else:
            op, bound = "==", parse_release(part)
        tests.append(_compare(op, bound))
    return lambda r: all(t(r) for t in tests)


def _compare(op: str, bound: Release) -> Callable[[Release], bool]:
    table: dict[str, Callable[[Release], bool]] = {
        ">=": lambda r: r >= bound,
        "<=": lambda r: r <= bound,
        ">": lambda r: r > bound,
        "<": lambda r: r < bound,
        "==": lambda r: r == bound,
    }
    return table[op]


@dataclass(frozen=True)
class Change:
    """One observable rule that changed: ``release`` is the first release with ``new``."""

    key: str
    release: Release
    commit: str
    subject: str
    layer: str
    functions: tuple[str, ...]
    new: str
    old: str


def _c(
    key: str,
    release: str,
    commit: str,
    subject: str,
    layer: str,
    functions: str,
    new: str,
    old: str,
) -> Change:
    return Change(key, _tag(release), commit, subject, layer, tuple(functions.split()), new, old)


# Keys used by the model code.
COUNT_ONE_ZERO = "count_one_zero"
RECV_MIGRATABLE = "recv_map_migratable_only"
IGNORE_SHARED = "ignore_shared"
DISCARD_SOURCE = "discard_no_map_on_source"
DISCARD_LENGTH_MSG = "discard_unaligned_length"
DISCARD_MAX_LENGTH = "discard_overrun_max_length"
SEND_POSTCOPY_LENGTH = "send_postcopy_length"
RELOAD_END_MARK_HEX = "reload_end_mark_hex"
RELOAD_ERROR_OBJECT = "reload_bool_error"
BITMAP_NEW_ZERO = "bitmap_new_zero"

CHANGES: tuple[Change, ...] = (
    _c(
        "recovery_stream",
        "v3.0.0",
        "a335debb35",
        "migration: new message MIG_RP_MSG_RECV_BITMAP (and edd090c728: synchronize dirty "
        "bitmap for resume)",
        "recovery",
        "ramblock_recv_bitmap_send ram_dirty_bitmap_reload",
        "postcopy recovery: the destination sends each block's receivedmap, the source "
        "reloads it as its dirty bitmap",
        "no recovery stream: v2.12 has the receivedmap but neither function",
    ),
    _c(
        RECV_MIGRATABLE,
        "v3.0.0",
        "b895de5027",
        "migration: discard non-migratable RAMBlocks",
        "ram",
        "ramblock_recv_map_init ram_load_cleanup ram_list_init_bitmaps ram_save_cleanup "
        "ram_bytes_total",
        "non-migratable blocks get no receivedmap/bmap and count nothing in ram_bytes_total",
        "every block of ram_list gets a map and counts in ram_bytes_total",
    ),
    _c(
        DISCARD_SOURCE,
        "v3.0.0",
        "814bb08f177a",
        "migration: update recv bitmap only on dest vm",
        "ram",
        "ram_discard_range",
        "the received bits are cleared only when the block has a receivedmap",
        "bitmap_clear(rb->receivedmap, ...) unconditionally: on the source (no map) a discard "
        "dereferences NULL, a crash (out of the model's domain)",
    ),
    _c(
        COUNT_ONE_ZERO,
        "v4.0.0",
        "e7c91368d246",
        "bitmap: fix bitmap_count_one",
        "bitmap",
        "bitmap_count_one",
        "bitmap_count_one(map, 0) returns 0 without reading",
        "bitmap_count_one(map, 0) took the one-word path with an all-ones mask: it returned "
        "the number of set bits of word 0",
    ),
    _c(
        "count_one_with_offset",
        "v4.0.0",
        "94960256ae",
        "bitmap: bitmap_count_one_with_offset",
        "bitmap",
        "bitmap_count_one_with_offset",
        "bitmap_count_one_with_offset exists",
        "absent",
    ),
    _c(
        IGNORE_SHARED,
        "v4.0.0",
        "fbd162e629",
        "migration: Add an ability to ignore shared RAM blocks",
        "ram",
        "ramblock_recv_map_init ram_load_cleanup ram_list_init_bitmaps ram_save_cleanup "
        "ram_bytes_total",
        "blocks left out by ignore-shared are skipped like non-migratable ones",
        "no ignore-shared: an 'ignored' (shared) block migrates and gets its maps",
    ),
    _c(
        "copy_with_offset",
        "v4.1.0",
        "ad37f24d57",
        "bitmap: Add bitmap_copy_with_{src|dst}_offset()",
        "bitmap",
        "bitmap_copy_with_src_offset bitmap_copy_with_dst_offset",
        "both functions exist",
        "absent",
    ),
    _c(
        DISCARD_LENGTH_MSG,
        "v5.0.0",
        "72821d93e0",
        "migration: check length directly to make sure the range is aligned",
        "ram",
        "ram_block_discard_range ram_discard_range",
        'an unaligned length fails with "Unaligned length: <length %zx>"',
        'the END address was checked: "Unaligned end address: <%p of host + start + length>" '
        "(same verdict, other message)",
    ),
    _c(
        RELOAD_END_MARK_HEX,
        "v5.2.0",
        "af3bbbe984",
        "migration/ram: Fix hexadecimal format string specifier",
        "recovery",
        "ram_dirty_bitmap_reload",
        'a wrong end mark is printed in hex: "end mark incorrect: 0x<hex>"',
        'PRIu64 after "0x": "end mark incorrect: 0x<decimal>"',
    ),
    _c(
        DISCARD_MAX_LENGTH,
        "v6.1.0",
        "dcdc460767",
        "exec: Relax range check in ram_block_discard_range()",
        "ram",
        "ram_block_discard_range ram_discard_range",
        "start + length may reach max_length; the Overrun message prints max_length",
        "start + length had to stay within used_length; the Overrun message printed used_length",
    ),
    _c(
        SEND_POSTCOPY_LENGTH,
        "v6.1.0",
        "898ba906cc",
        "migration/ram: Handle RAM block resizes during postcopy",
        "recovery",
        "ramblock_recv_bitmap_send",
        "nbits = postcopy_length >> target page bits",
        "nbits = used_length >> target page bits",
    ),
    _c(
        BITMAP_NEW_ZERO,
        "v9.1.0",
        "5e9efe31f1",
        "bitmap: Use g_try_new0/g_new0/g_renew",
        "bitmap",
        "bitmap_new",
        "bitmap_new(0) returns g_new0's NULL for 0 elements: no words, no abort",
        "g_try_malloc0(0) returned NULL and bitmap_new aborted on NULL: bitmap_new(0) "
        "aborted (outside the model's domain)",
    ),
    _c(
        "test_and_clear",
        "v7.2.0",
        "cedb70eafb",
        "migration: Use non-atomic ops for clear log bitmap",
        "bitmap",
        "bitmap_test_and_clear",
        "bitmap_test_and_clear exists",
        "absent (only bitmap_test_and_clear_atomic)",
    ),
    _c(
        RELOAD_ERROR_OBJECT,
        "v8.2.0",
        "88577f3242",
        "migration: Change ram_dirty_bitmap_reload() retval to bool (and 7aa6070d09)",
        "recovery",
        "ram_dirty_bitmap_reload",
        "returns bool with an Error (ABI: 0 / -1); the error is the Error's message, "
        "without a function prefix, and the read failure no longer prints an error code",
        "returns int (-EINVAL for size/end mark, -EIO for a failed read) and error_report()s "
        '"ram_dirty_bitmap_reload: ..." with "read bitmap failed for ramblock \'X\': -5 (...)"',
    ),
    _c(
        "clear_bit_atomic",
        "v9.0.0",
        "f427d90b98",
        "migration/multifd: Support outgoing mapped-ram stream format",
        "bitmap",
        "clear_bit_atomic",
        "clear_bit_atomic exists",
        "absent",
    ),
    _c(
        "recv_bitmap_set_offset",
        "v9.1.0",
        "5ef7e26bdb",
        "migration/multifd: solve zero page causing multiple page faults",
        "ram",
        "ramblock_recv_bitmap_set_offset",
        "ramblock_recv_bitmap_set_offset exists",
        "absent",
    ),
)
CHANGE_BY_KEY: dict[str, Change] = {c.key: c for c in CHANGES}

# The first release of each ABI function that appeared after v2.12.0.
FUNCTION_SINCE: dict[str, Release] = {
    f: c.release
    for c in CHANGES
    if c.old.startswith(("absent", "no recovery"))
    for f in c.functions
}


def change(key: str) -> Change:
    return CHANGE_BY_KEY[key]


def changes_between(old: Release, new: Release) -> Iterator[Change]:
    """The changes a program sees when moving from release ``old`` to ``new``."""
    lo, hi = min(old, new), max(old, new)
    return (c for c in CHANGES if lo < c.release <= hi)


class ReleaseError(PreconditionError):
    """``function`` does not exist at ``release``: it first appears in ``since``."""

    def __init__(self, function: str, release: Release | str) -> None:
        rel = parse_release(release)
        since = FUNCTION_SINCE.get(function, FIRST_RELEASE)
        super().__init__(
            function,
            "release",
            f"QEMU {rel} has no {function} (it first appears in {since}, commit "
            f"{_commit_of(function)})",
        )
        self.release = rel
        self.since = since

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReleaseError, (self.function, self.release))


def _commit_of(function: str) -> str:
    for c in CHANGES:
        if function in c.functions and c.release == FUNCTION_SINCE.get(function):
            return c.commit
    return "?"


def require(function: str, release: Release) -> None:
    """Raise ReleaseError when ``release`` lacks ``function``."""
    if not release.has_function(function):
        raise ReleaseError(function, release)


class ReleaseView:
    """The bitmap layer at one release: QEMU's functions of that release as attributes.

    ``at_release("v3.0.0").bitmap_count_one(map, 0)`` counts word 0 (the old rule);
    ``at_release("v3.0.0").bitmap_test_and_clear`` raises ReleaseError.
    """

    def __init__(self, release: Release) -> None:
        self.release = release

    def __repr__(self) -> str:
        return f"at_release({self.release.name!r})"

    def __getattr__(self, name: str) -> Any:
        table = _bitmap_functions(self.release)
        if name in table:
            return table[name]
        if name in FUNCTION_SINCE:
            raise ReleaseError(name, self.release)
        raise AttributeError(name)

    def functions(self) -> dict[str, Callable[..., Any]]:
        """Every bitmap-layer function of the release, by QEMU's name."""
        return dict(_bitmap_functions(self.release))

    def has(self, name: str) -> bool:
        return name in _bitmap_functions(self.release)


_TABLES: dict[Release, dict[str, Callable[..., Any]]] = {}


def _bitmap_functions(release: Release) -> dict[str, Callable[..., Any]]:
    table = _TABLES.get(release)
    if table is None:
        table = {}
        for module in (f"{__package__}.bitops", f"{__package__}.bitmap"):
            namespace = vars(sys.modules[module])
            for name in namespace["__all__"]:
                obj = namespace[name]
                if callable(obj) and not isinstance(obj, type) and release.has_function(name):
                    table[name] = obj
        assert bitops_names  # both modules are loaded (imported above)
        if not release.has(COUNT_ONE_ZERO):
            table["bitmap_count_one"] = bitmap_count_one_before_v4
        if not release.has(BITMAP_NEW_ZERO):
            table["bitmap_new"] = bitmap_new_before_v9_1
        _TABLES[release] = table
    return table


def at_release(release: str | Release | None = None) -> ReleaseView:
    """The bitmap layer as QEMU ``release`` has it (default: the newest)."""
    return ReleaseView(parse_release(release))


def boundaries() -> tuple[Release, ...]:
    """The releases where some rule changes, and the first: the model behaves the same
    from each of them up to the next, so these are the releases worth testing."""
    return tuple(sorted({FIRST_RELEASE, *(c.release for c in CHANGES)}))


def range_of(matching: Callable[[Release], bool], around: Release) -> str:
    """The release range (">=vA,<vB") of the boundary releases around ``around`` for
    which ``matching`` holds; ``around`` itself must match."""
    marks = boundaries()
    i = max(k for k, r in enumerate(marks) if r <= around)
    if not matching(marks[i]):
        raise ValueError(f"{around} does not match its own outcome")
    lo = i
    while lo > 0 and matching(marks[lo - 1]):
        lo -= 1
    hi = i
    while hi + 1 < len(marks) and matching(marks[hi + 1]):
        hi += 1
    text = f">={marks[lo]}"
    if hi + 1 < len(marks):
        text += f",<{marks[hi + 1]}"
    return text


def render_table() -> str:
    """``recvmap releases``: every rule that changed, by release, with its commit."""
    lines = [
        f"QEMU releases the model knows: {RELEASES[0]} .. {DEFAULT_RELEASE} "
        f"(default {DEFAULT_RELEASE}).",
        "Every rule that changed, by the first release with the new rule:",
        "",
    ]
    for c in sorted(CHANGES, key=lambda c: c.release):
        lines.append(f"{c.release}  {c.commit:<12}  [{c.layer}] {', '.join(c.functions)}")
        lines.append(f"    {c.subject}")
        lines.append(f"    now:    {c.new}")
        lines.append(f"    before: {c.old}")
    lines += [
        "",
        "Rules of every release (no change since v2.12.0): ram_list_init_bitmaps allocates",
        "nothing when ram_bytes_total() is 0; ram_dirty_bitmap_reload reads a QEMUFile (a short",
        "stream is a size mismatch or a failed read, bytes after the end mark are not read).",
    ]
    return "\n".join(lines) + "\n"
