# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU releases: the spec's base is the newest release, older ones are small deltas.

In the manner of the Ethereum consensus-specs forks: the functions of ``bitops``,
``bitmap``, ``ramblock`` and ``recovery`` describe the newest release QEMU has
(``DEFAULT_RELEASE``). Every observable rule that changed since the received-page bitmap
was added (upstream commit f9494614898f, "migration: add bitmap for received page",
VERSION 2.10.50, first released in v2.11.0) is one ``Change`` below: the first release
with today's rule, the upstream commit that made the change, today's rule and the OLD
rule. The model code asks ``rules.has(KEY)`` and applies the old rule when the rules it
runs at lack the change. Functions the rules lack raise ``ReleaseError`` (a
``PreconditionError``) naming the first release that has them.

Rules by content. What the model runs at is a ``Rules``: the set of changes (keys of
``CHANGES``) a QEMU tree contains, plus a display name. A release's rules are the changes
of that release and before it (``Release.rules``); a tree between releases (a development
snapshot, a release candidate, a patch series, a backport branch) has whatever set its
history gives it, so a commit is judged by the deltas it contains, not by a version
number. The empty set is the seed commit's own state (``SEED``). ``parse_rules`` reads a
release tag or a rule-set name such as ``v2.12.0+recovery_stream`` (a release plus
changes) and is what every command, context and vector accepts.

QEMU's version numbers (``parse_version``, the one parser of them): a tag ``v3.0.0`` or
``v3.0.0-rc1``, or a VERSION file's text: ``X.Y.Z`` below 50 a release (Z > 0 a stable
one), ``X.Y.50`` the development tree opened after release X.Y, ``X.Y.9N`` release
candidate N of the next release (2.12.91 is v3.0.0-rc1). A snapshot between releases has
no rules of its own number: ``version_rules`` says which it is judged as, and whether that
is ambiguous.

The table is the semantic changelog of QEMU's bitmap helpers and received-page bitmap;
``recvmap releases`` prints it. Each change was read from QEMU's code (the shared trees
and QEMU's history) and placed at its release; changes of text only (comments, renames
such as atomic_ -> qatomic_, __func__ instead of a literal name) are not rules and are
not here.

Rules of all states (not deltas; they hold from the seed on): ram_list_init_bitmaps
allocates nothing when ram_bytes_total() is 0; ram_dirty_bitmap_reload reads through a
QEMUFile (a read past the end yields zeros and an error checked after the reads, and
bytes after the end mark are never read).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .bitmap import bitmap_count_one_before_v4, bitmap_new_before_v9_1
from .bitops import __all__ as bitops_names
from .errors import PreconditionError

__all__ = [
    "CHANGES",
    "DEFAULT_RELEASE",
    "DEFAULT_RULES",
    "FIRST_RELEASE",
    "FUNCTION_KEY",
    "FUNCTION_SINCE",
    "RELEASES",
    "SEED",
    "Change",
    "Release",
    "ReleaseError",
    "ReleaseView",
    "Rules",
    "Version",
    "VersionRules",
    "at_release",
    "boundaries",
    "change",
    "changes_between",
    "parse_release",
    "parse_rules",
    "parse_version",
    "range_of",
    "release_range",
    "render_table",
    "version_rules",
]

SEED = "f9494614898f"  # upstream commit "migration: add bitmap for received page"
SEED_VERSION = (2, 10, 50)  # its VERSION: the development tree after v2.10
DEVELOPMENT = 50  # X.Y.50: the development tree opened after release X.Y
CANDIDATE = 90  # X.Y.9N: release candidate N of the release after X.Y

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?$")


@dataclass(frozen=True, order=True)
class Version:
    """A QEMU version as QEMU writes it: a tag or the first line of a tree's VERSION.

    ``micro`` is VERSION's third number (50 and above: a snapshot between releases);
    ``rc`` is the N of a ``-rcN`` tag (None otherwise). Versions order as QEMU's numbers.
    """

    major: int
    minor: int
    micro: int = 0
    rc: int | None = field(default=None, compare=False)

    @property
    def tuple(self) -> tuple[int, int, int]:
        """(major, minor, micro), for comparisons with other versions."""
        return (self.major, self.minor, self.micro)

    @property
    def is_release(self) -> bool:
        """A release or a stable release (``X.Y.Z``, Z below 50), not a snapshot."""
        return self.rc is None and self.micro < DEVELOPMENT

    @property
    def candidate(self) -> int | None:
        """N when this is release candidate N (tag ``-rcN`` or VERSION ``X.Y.9N``)."""
        if self.rc is not None:
            return self.rc
        return self.micro - CANDIDATE if self.micro >= CANDIDATE else None

    @property
    def text(self) -> str:
        """As written in a VERSION file (a tag's ``-rcN`` kept)."""
        rc = "" if self.rc is None else f"-rc{self.rc}"
        return f"{self.major}.{self.minor}.{self.micro}{rc}"

    def __str__(self) -> str:
        return self.text


def parse_version(text: str) -> Version:
    """The one parser of QEMU version strings: "v3.0.0", "3.0", "2.12.91", "v3.0.0-rc1".

    A missing micro number is 0. Anything else raises ValueError.
    """
    m = _VERSION.match(text.strip())
    if m is None:
        raise ValueError(f"not a QEMU version: {text!r}")
    rc = None if m[4] is None else int(m[4])
    return Version(int(m[1]), int(m[2]), int(m[3] or 0), rc)


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

    @property
    def rules(self) -> Rules:
        """The rules of this release: every change released in it or before."""
        return _release_rules(self)


def _tag(name: str) -> Release:
    v = parse_version(name)
    if not v.is_release:
        raise ValueError(name)
    return Release(v.tuple)


# The releases from the first with the received-page bitmap to the newest one known.
RELEASES: tuple[Release, ...] = tuple(
    _tag(n)
    for n in (
        "v2.11.0 v2.12.0 v3.0.0 v3.1.0 v4.0.0 v4.1.0 v4.2.0 v5.0.0 v5.1.0 v5.2.0 v6.0.0 "
        "v6.1.0 v6.2.0 v7.0.0 v7.1.0 v7.2.0 v8.0.0 v8.1.0 v8.2.0 v9.0.0 v9.1.0 v9.2.0 "
        "v10.0.0 v10.1.0 v10.1.3"
    ).split()
)
DEFAULT_RELEASE: Release = RELEASES[-1]
FIRST_RELEASE: Release = RELEASES[0]


def _snapshot_error(function: str, argument: str, v: Version) -> PreconditionError:
    return PreconditionError(
        function,
        argument,
        f"{v.text} is {_version_name(v)}, a snapshot between releases: its rules depend on "
        "its history (point recvmap at its git checkout, or give a release or a rule set "
        "such as v2.12.0+recovery_stream)",
    )


def parse_release(value: str | Release | None) -> Release:
    """ "v3.0.0", "3.0.0", "3.0" (a tree's VERSION) or a Release; None is the default.

    Any release from v2.11.0 (the first with the received-page bitmap) to the newest
    known release is accepted, also one between two listed releases (a stable release
    such as v10.1.1): the rules are keyed by the first release that had them. A snapshot
    between releases (2.12.91, v3.0.0-rc1, 2.12.50) is not a release: PreconditionError.
    """
    if value is None:
        return DEFAULT_RELEASE
    if isinstance(value, Release):
        return value
    try:
        v = parse_version(value)
    except ValueError:
        raise PreconditionError(
            "parse_release", "release", f"a QEMU release tag such as v10.1.0, not {value!r}"
        ) from None
    if not v.is_release:
        raise _snapshot_error("parse_release", "release", v)
    rel = Release(v.tuple)
    if rel < FIRST_RELEASE:
        raise PreconditionError(
            "parse_release",
            "release",
            f"{rel} predates the received-page bitmap (first in {FIRST_RELEASE}, commit {SEED})",
        )
    if rel > DEFAULT_RELEASE:
        raise PreconditionError(
            "parse_release",
            "release",
            f"{rel} is newer than the newest release the model knows ({DEFAULT_RELEASE})",
        )
    return rel


def release_range(spec: str) -> Callable[[Release | Rules], bool]:
    """A predicate for a range such as ">=v4.0.0", "<v4.0.0", ">=v3.0.0,<v8.2.0" or "*".

    A bare tag means exactly that release; a bare rule-set name (``v2.12.0+recovery_stream``)
    means exactly those rules. Rules that are a release's are compared as that release;
    rules between releases hold only for a bare name of the same set (``Case.covers``
    decides the rest by the model's outcome, see ``fuzz.vectors.files``).
    """
    tests: list[Callable[[Release | Rules], bool]] = []
    for part in (p.strip() for p in spec.split(",")):
        if part in ("", "*"):
            continue
        for op in (">=", "<=", ">", "<", "=="):
            if part.startswith(op):
                tests.append(_compare(op, parse_release(part[len(op) :])))
                break
        else:
            tests.append(_same(parse_rules(part)))
    return lambda r: all(t(r) for t in tests)


def _same(bound: Rules) -> Callable[[Release | Rules], bool]:
    if bound.origin is not None:
        return _compare("==", bound.origin)
    return lambda r: (r.rules if isinstance(r, Release) else r) == bound


def _compare(op: str, bound: Release) -> Callable[[Release | Rules], bool]:
    table: dict[str, Callable[[Release], bool]] = {
        ">=": lambda r: r >= bound,
        "<=": lambda r: r <= bound,
        ">": lambda r: r > bound,
        "<": lambda r: r < bound,
        "==": lambda r: r == bound,
    }
    test = table[op]

    def holds(r: Release | Rules) -> bool:
        rel = r if isinstance(r, Release) else r.release
        return rel is not None and test(rel)

    return holds


@dataclass(frozen=True)
class Change:
    """One observable rule that changed: ``release`` is the first release with ``new``.

    ``bug`` marks a change that fixed a QEMU bug: the old behaviour is a crash or an
    abort (outside the model's domain under the old rules). ``recvmap history`` expects
    the fixed behaviour from every commit, so such a bug is a finding, named by its fix.
    """

    key: str
    release: Release
    commit: str
    subject: str
    layer: str
    functions: tuple[str, ...]
    new: str
    old: str
    bug: bool = False


def _c(
    key: str,
    release: str,
    commit: str,
    subject: str,
    layer: str,
    functions: str,
    new: str,
    old: str,
    *,
    bug: bool = False,
) -> Change:
    return Change(
        key, _tag(release), commit, subject, layer, tuple(functions.split()), new, old, bug
    )


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
RECV_SIZE_ROUND_UP = "recv_bitmap_size_div_round_up"
BMAP_BLANK = "bmap_blank"
BMAP_DIRTY_AGAIN = "bmap_dirty_again"
RELOAD_ERROR_SETG = "reload_error_setg"
DISCARD_REAL_HOST_PAGE = "discard_real_host_page"
DISCARD_FALLOCATE_BY_FD = "discard_fallocate_by_fd"

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
        "no recovery stream before v3.0.0: v2.11 and v2.12 have the receivedmap but neither "
        "function",
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
        "of at least one target page dereferences NULL, a crash (out of the model's domain); "
        "a shorter one clears nothing and goes on",
        bug=True,
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
        "migration: Change ram_dirty_bitmap_reload() retval to bool",
        "recovery",
        "ram_dirty_bitmap_reload",
        "returns bool (ABI: 0 / -1), and the read failure no longer prints the file's error "
        "code: \"read bitmap failed for ramblock 'X': (size ...)\"",
        "returns int (-EINVAL for size/end mark, -EIO for a failed read), and the read failure "
        "prints the file's error: \"read bitmap failed for ramblock 'X': -5 (size ...)\"",
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
        DISCARD_FALLOCATE_BY_FD,
        "v2.12.0",
        "db144f7000",
        "migrate: Update ram_block_discard_range for shared",
        "ram",
        "ram_block_discard_range ram_discard_range",
        "fallocate only when a file backs the block (rb->fd != -1), madvise when rb->page_size "
        "== qemu_host_page_size; neither: -1 without a message",
        "madvise when rb->page_size == qemu_host_page_size, else fallocate(rb->fd): an "
        "anonymous block (fd -1) under a target page bigger than the host's failed with EBADF: "
        '-9 and "ram_block_discard_range: Failed to discard range pc.ram:0 +2000 (-9)"',
    ),
    _c(
        DISCARD_REAL_HOST_PAGE,
        "v9.0.0",
        "80c3aeef7f",
        "softmmu/physmem: Remove qemu_host_page_size",
        "ram",
        "ram_block_discard_range ram_discard_range",
        "a block on the host's base page is discarded with madvise (rb->page_size == "
        "qemu_real_host_page_size()), a file with fallocate: a checked range returns 0",
        "madvise only when rb->page_size == qemu_host_page_size, which page_size_init made "
        "max(host page, target page): with a target page bigger than the host page, a block "
        "on base pages that is no file took neither call and returned -1, with no message",
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
# The changes found by the audit of QEMU's history from the seed (issue 21), appended so that
# the table of each branch merges by addition.
CHANGES += (
    _c(
        "recv_bitmap_test_byte_offset",
        "v2.12.0",
        "1cba9f6e662d",
        "migration/ram: ramblock_recv_bitmap_test_byte_offset",
        "ram",
        "ramblock_recv_bitmap_test_byte_offset",
        "ramblock_recv_bitmap_test_byte_offset exists",
        "absent: the seed and v2.11.0 test the received bits by host address only",
    ),
    _c(
        RECV_SIZE_ROUND_UP,
        "v3.0.0",
        "a725ef9fe364",
        "migration: fix incorrect bitmap size calculation",
        "recovery",
        "ramblock_recv_bitmap_send ram_dirty_bitmap_reload",
        "the stream's map is DIV_ROUND_UP(nbits, 8) bytes rounded up to 8",
        "nbits / 8 bytes (rounded DOWN) rounded up to 8: 0 bytes for fewer than 8 pages, and "
        "the last partial byte of the map is lost (trees after a335debb35, before this)",
    ),
    _c(
        BMAP_BLANK,
        "v4.1.0",
        "03158519384f",
        "migratioin/ram: leave RAMBlock->bmap blank on allocating",
        "ram",
        "ram_list_init_bitmaps",
        "ram_list_init_bitmaps leaves each bmap all clear (until bmap_dirty_again, 40c4d4a83545)",
        "every page of a new bmap is dirty",
    ),
    _c(
        BMAP_DIRTY_AGAIN,
        "v4.1.0",
        "40c4d4a83545",
        "migration: always initial RAMBlock.bmap to 1 for new migration",
        "ram",
        "ram_list_init_bitmaps",
        "every page of a new bmap is dirty again (no release had the blank bmap)",
        "after 03158519384f: the bmap starts all clear (v4.1.0-rc0 and the commits around it)",
    ),
    _c(
        RELOAD_ERROR_SETG,
        "v8.2.0",
        "7aa6070d09c5",
        "migration: Refactor error handling in source return path",
        "recovery",
        "ram_dirty_bitmap_reload",
        "failures go to an Error: its message has no function prefix (the int returns and the "
        "read failure's error code stay until 88577f3242)",
        '"ram_dirty_bitmap_reload: ..." through error_report()',
    ),
)
CHANGE_BY_KEY: dict[str, Change] = {c.key: c for c in CHANGES}

# The change that added each ABI function that appeared after the seed commit.
FUNCTION_KEY: dict[str, str] = {
    f: c.key for c in CHANGES if c.old.startswith(("absent", "no recovery")) for f in c.functions
}
# The first release of each of those functions.
FUNCTION_SINCE: dict[str, Release] = {f: CHANGE_BY_KEY[k].release for f, k in FUNCTION_KEY.items()}


def change(key: str) -> Change:
    return CHANGE_BY_KEY[key]


def changes_between(old: Release, new: Release) -> Iterator[Change]:
    """The changes a program sees when moving from release ``old`` to ``new``."""
    lo, hi = min(old, new), max(old, new)
    return (c for c in CHANGES if lo < c.release <= hi)


# --- rules: the set of changes a QEMU state contains --------------------------------------


@dataclass(frozen=True)
class Rules:
    """The rules of one QEMU state: the changes (keys of ``CHANGES``) it contains.

    Two rule sets are equal when they contain the same changes, whatever their names.
    ``label`` is the name given (a release's tag), else ``name`` is derived from the set;
    ``origin`` is the release these rules were made from, if any.
    """

    applied: frozenset[str]
    label: str = field(default="", compare=False)
    origin: Release | None = field(default=None, compare=False)

    def has(self, key: str) -> bool:
        """True when these rules have the NEW rule of change ``key``."""
        if key not in CHANGE_BY_KEY:
            raise KeyError(f"no release change {key!r}")
        return key in self.applied

    def has_function(self, function: str) -> bool:
        """True when QEMU has ``function`` under these rules."""
        key = FUNCTION_KEY.get(function)
        return key is None or key in self.applied

    @property
    def name(self) -> str:
        """A name ``parse_rules`` reads back: a release tag, or a base and ``+change``s."""
        return self.label or rules_name(self.applied)

    @property
    def release(self) -> Release | None:
        """The release whose rules these are: the one they were made from, else the first
        release with exactly this set (None: a state between releases)."""
        if self.origin is not None:
            return self.origin
        return _release_of(self.applied)

    @property
    def missing(self) -> tuple[Change, ...]:
        """The changes these rules do not have, in table order."""
        return tuple(c for c in CHANGES if c.key not in self.applied)

    def __str__(self) -> str:
        return self.name


@functools.cache
def _release_rules(release: Release) -> Rules:
    applied = frozenset(c.key for c in CHANGES if c.release <= release)
    return Rules(applied, release.name, release)


DEFAULT_RULES: Rules = DEFAULT_RELEASE.rules
SEED_RULES: Rules = Rules(frozenset(), SEED)


def rules_name(applied: Iterable[str]) -> str:
    """The canonical name of a set of changes: the release with the largest set inside it
    (the first such release; the seed's commit when there is none), then ``+key`` for
    each other change."""
    keys = frozenset(applied)
    base: Release | None = None
    for r in RELEASES:
        own = r.rules.applied
        if own <= keys and (base is None or len(own) > len(base.rules.applied)):
            base = r
    base_keys = base.rules.applied if base is not None else frozenset()
    extra = [c.key for c in CHANGES if c.key in keys - base_keys]
    return "+".join([base.name if base is not None else SEED, *extra])


def parse_rules(value: str | Release | Rules | None) -> Rules:
    """The rules a name stands for: None (the newest release), a release tag ("v3.0.0"),
    the seed (``f9494614898f``), or a base with changes added or removed by key or
    commit: ``v2.12.0+recovery_stream+b895de5027``, ``v3.0.0-discard_no_map_on_source``.
    Anything else is a PreconditionError naming the problem."""
    if value is None:
        return DEFAULT_RULES
    if isinstance(value, Rules):
        return value
    if isinstance(value, Release):
        return value.rules
    text = value.strip()
    try:
        snapshot = parse_version(text)
    except ValueError:
        snapshot = None
    if snapshot is not None and not snapshot.is_release:
        raise _snapshot_error("parse_rules", "release", snapshot)
    parts = re.split(r"([+-])", text)
    base = parts[0]
    if base in (SEED, "seed"):
        applied: set[str] = set()
    else:
        applied = set(parse_release(base).rules.applied)
    if len(parts) == 1:
        return SEED_RULES if base in (SEED, "seed") else parse_release(base).rules
    for sign, item in zip(parts[1::2], parts[2::2], strict=True):
        key = _change_key(item)
        if sign == "+":
            applied.add(key)
        else:
            applied.discard(key)
    return Rules(frozenset(applied))


def _change_key(item: str) -> str:
    """A change by key or by (a prefix of at least 7 digits of) its upstream commit."""
    if item in CHANGE_BY_KEY:
        return item
    low = item.lower()
    if len(low) >= 7:
        for c in CHANGES:
            if c.commit.startswith(low) or low.startswith(c.commit):
                return c.key
    raise PreconditionError(
        "parse_rules",
        "release",
        f"{item!r} is no release change of the model (recvmap releases lists them)",
    )


def rules_of(changes: Iterable[str]) -> Rules:
    """The rules of a state that contains exactly ``changes`` (keys): named as a release
    when they are one's."""
    applied = frozenset(changes)
    unknown = applied - CHANGE_BY_KEY.keys()
    if unknown:
        raise KeyError(f"no release change {sorted(unknown)[0]!r}")
    rel = _release_of(applied)
    return rel.rules if rel is not None else (SEED_RULES if not applied else Rules(applied))


@functools.cache
def _release_of(applied: frozenset[str]) -> Release | None:
    """The first release whose rules are exactly ``applied``."""
    return next((r for r in RELEASES if r.rules.applied == applied), None)


@dataclass(frozen=True)
class VersionRules:
    """What a tree's VERSION says about its rules, without its history.

    ``rules`` is what it is judged as; ``unsure`` lists the changes the version cannot
    place (a snapshot between two releases whose window has changes); ``text`` says it
    in one phrase ("VERSION 2.12.91 = v3.0.0-rc1: ambiguous ..., judged as v3.0.0").
    """

    version: Version
    rules: Rules | None
    unsure: tuple[Change, ...]
    text: str


def _version_name(v: Version) -> str:
    """How QEMU calls a version: "v3.0.0", "v3.0.0-rc1", "development after v2.12"."""
    if v.is_release:
        return "v" + ".".join(map(str, v.tuple))
    nxt = _next_release(v)
    n = v.candidate
    if n is not None:
        if v.rc is not None:
            return f"v{v.major}.{v.minor}.{v.micro}-rc{n}"
        return f"{nxt}-rc{n}" if nxt else f"release candidate {n} after v{v.major}.{v.minor}"
    return f"development after v{v.major}.{v.minor}"


def _next_release(v: Version) -> Release | None:
    """The release a snapshot leads to: a -rc tag's own; after X.Y, the first known
    release of a higher X.Y (None: newer than the model knows)."""
    if v.rc is not None:
        return Release(v.tuple)
    return next((r for r in RELEASES if r.version[:2] > (v.major, v.minor)), None)


def version_rules(v: Version) -> VersionRules:
    """Which rules a tree of VERSION ``v`` is judged as when its history is unknown.

    A release has its own rules. A development tree (X.Y.50) is judged as release X.Y
    (the seed's state after v2.10); a release candidate as the release it leads to.
    Either is ambiguous when the model knows changes between those releases: they are
    listed in ``unsure``. ``rules`` is None when the version predates the received-page
    bitmap; a release newer than the model knows is judged as the newest.
    """
    name = _version_name(v)
    if v.is_release:
        rel = Release(v.tuple)
        if rel > DEFAULT_RELEASE:
            return VersionRules(
                v,
                DEFAULT_RULES,
                (),
                f"{v.text} = {name}, newer than the model knows: judged as {DEFAULT_RELEASE}",
            )
        if rel < FIRST_RELEASE:
            return VersionRules(
                v,
                None,
                (),
                f"{v.text} = {name}: predates the received-page bitmap (first in {FIRST_RELEASE})",
            )
        return VersionRules(v, rel.rules, (), f"{v.text} = {parse_release(name)}")
    nxt = _next_release(v)
    if v.rc is not None:
        prev = max((r for r in RELEASES if r < Release(v.tuple)), default=None)
    else:
        opened = (v.major, v.minor, 0)  # a development tree branches from X.Y.0, not a stable
        prev = max((r for r in RELEASES if r.version <= opened), default=None)
    if v.tuple < SEED_VERSION or (nxt is None and prev is None):
        return VersionRules(v, None, (), f"{v.text} = {name}: predates the received-page bitmap")
    lo = prev.rules if prev is not None else SEED_RULES
    unsure = tuple(
        c for c in CHANGES if c.key not in lo.applied and (nxt is None or c.release <= nxt)
    )
    judged = nxt.rules if (v.candidate is not None and nxt is not None) else lo
    as_text = f"the seed {SEED}" if judged == SEED_RULES and not judged.origin else judged.name
    if judged.origin is None and prev is None:
        as_text = f"the seed {SEED} (an older tree of this number predates it)"
    if not unsure:
        return VersionRules(v, judged, (), f"{v.text} = {name}, judged as {as_text}")
    which = ", ".join(c.commit for c in unsure)
    return VersionRules(
        v,
        judged,
        unsure,
        f"{v.text} = {name}: ambiguous, {len(unsure)} change(s) may or may not be in "
        f"({which}), judged as {as_text}",
    )


# --- errors and views -------------------------------------------------------------------


class ReleaseError(PreconditionError):
    """``function`` does not exist under ``release`` (rules): it first appears in ``since``."""

    def __init__(self, function: str, release: Release | Rules | str) -> None:
        rules = parse_rules(release)
        since = FUNCTION_SINCE.get(function, FIRST_RELEASE)
        super().__init__(
            function,
            "release",
            f"QEMU {rules} has no {function} (it first appears in {since}, commit "
            f"{_commit_of(function)})",
        )
        self.release = rules
        self.since = since

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReleaseError, (self.function, self.release.name))


def _commit_of(function: str) -> str:
    key = FUNCTION_KEY.get(function)
    return CHANGE_BY_KEY[key].commit if key is not None else SEED


def require(function: str, release: Release | Rules) -> None:
    """Raise ReleaseError when ``release`` (a release or rules) lacks ``function``."""
    if not release.has_function(function):
        raise ReleaseError(function, release)


class ReleaseView:
    """The bitmap layer under some rules: QEMU's functions of those rules as attributes.

    ``at_release("v3.0.0").bitmap_count_one(map, 0)`` counts word 0 (the old rule);
    ``at_release("v3.0.0").bitmap_test_and_clear`` raises ReleaseError.
    """

    def __init__(self, release: Release | Rules) -> None:
        self.release = parse_rules(release)

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
        """Every bitmap-layer function of the rules, by QEMU's name."""
        return dict(_bitmap_functions(self.release))

    def has(self, name: str) -> bool:
        return name in _bitmap_functions(self.release)


_TABLES: dict[frozenset[str], dict[str, Callable[..., Any]]] = {}


def _bitmap_functions(rules: Rules) -> dict[str, Callable[..., Any]]:
    table = _TABLES.get(rules.applied)
    if table is None:
        table = {}
        for module in (f"{__package__}.bitops", f"{__package__}.bitmap"):
            namespace = vars(sys.modules[module])
            for name in namespace["__all__"]:
                obj = namespace[name]
                if callable(obj) and not isinstance(obj, type) and rules.has_function(name):
                    table[name] = obj
        assert bitops_names  # both modules are loaded (imported above)
        if not rules.has(COUNT_ONE_ZERO):
            table["bitmap_count_one"] = bitmap_count_one_before_v4
        if not rules.has(BITMAP_NEW_ZERO):
            table["bitmap_new"] = bitmap_new_before_v9_1
        _TABLES[rules.applied] = table
    return table


def at_release(release: str | Release | Rules | None = None) -> ReleaseView:
    """The bitmap layer as QEMU ``release`` (a release or rules) has it (default: newest)."""
    return ReleaseView(parse_rules(release))


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
        f"The seed, upstream {SEED} (VERSION 2.10.50), has none of these changes; a tree",
        "between releases is judged by the changes its history contains.",
        "Rules of every state (no change since the seed): ram_list_init_bitmaps allocates",
        "nothing when ram_bytes_total() is 0; ram_dirty_bitmap_reload reads a QEMUFile (a short",
        "stream is a size mismatch or a failed read, bytes after the end mark are not read).",
    ]
    return "\n".join(lines) + "\n"
