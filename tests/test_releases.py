# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU releases in the model: every rule change is run on both sides of its release.

``pymodel.releases.CHANGES`` is the table ``recvmap releases`` prints. Each change has a
test here that runs the model at the last release before the change and at the first
release with it, with expectations written from QEMU's code of those releases (the trees
in ../shared/qemu-trees, when present, are checked for the code each change rests on).
The rules fixed on this branch (the no-RAM guard, QEMUFile reads of short streams, bytes
after the end mark) have hand-derived vectors; monkeypatching the old model rule back in
makes them fail.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from recvmap.fuzz.cli import main
from recvmap.fuzz.vectors.files import Case, check_model, iter_files, load_file
from recvmap.pymodel import bitmap_new, bitmap_set
from recvmap.pymodel import recovery as recovery_mod
from recvmap.pymodel.errors import PreconditionError, RecoveryError
from recvmap.pymodel.ramblock import RAMBlock, RamContext, Side, TargetPage
from recvmap.pymodel.releases import (
    CHANGES,
    DEFAULT_RELEASE,
    FUNCTION_SINCE,
    RELEASES,
    Release,
    ReleaseError,
    at_release,
    change,
    parse_release,
    release_range,
    render_table,
)
from recvmap.pymodel.words import ILP32_LE, LP64_LE

TPS = 4096
VECTORS = Path(__file__).parent / "vectors"


def _qemu_trees() -> tuple[dict[str, Path], str]:
    """tests/qemu_trees.py (the tests are not a package: load it by path)."""
    spec = importlib.util.spec_from_file_location("qemu_trees", VECTORS.parent / "qemu_trees.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TREES, module.SKIP_REASON


TREES, SKIP_REASON = _qemu_trees()


def before(key: str) -> str:
    """The last listed release without change ``key``."""
    first = change(key).release
    return max(r for r in RELEASES if r < first).name


def after(key: str) -> str:
    return change(key).release.name


def ctx(release: str, side: Side = Side.DESTINATION) -> RamContext:
    return RamContext(TargetPage.fixed(12), side=side, release=release)


def stream_of(nbits: int, received: tuple[int, ...] = ()) -> bytes:
    dst = ctx(DEFAULT_RELEASE.name)
    rb = dst.ram_block_add("pc.ram", nbits * TPS)
    dst.ramblock_recv_map_init()
    for p in received:
        dst.ramblock_recv_bitmap_set(rb, rb.host + p * TPS)
    return dst.ramblock_recv_bitmap_send("pc.ram")[0]


def source(release: str, nbits: int = 9) -> tuple[RamContext, RAMBlock]:
    src = ctx(release, Side.SOURCE)
    rb = src.ram_block_add("pc.ram", nbits * TPS)
    src.ram_list_init_bitmaps()
    return src, rb


# --- one test per change: both sides ----------------------------------------------------


def absent_then_present(key: str, call: Callable[[Release], object]) -> None:
    for name in change(key).functions:
        with pytest.raises(ReleaseError) as err:
            call(parse_release(before(key)))
        assert name in str(err.value) or err.value.function in change(key).functions
        assert err.value.since == change(key).release
        assert isinstance(err.value, PreconditionError)
    call(parse_release(after(key)))  # no error: the function exists


def t_recovery_stream() -> None:
    key = "recovery_stream"
    old = ctx(before(key))
    old.ram_block_add("pc.ram", 4 * TPS)
    old.ramblock_recv_map_init()  # v2.12.0 has the receivedmap ...
    with pytest.raises(ReleaseError, match="first appears in v3.0.0"):
        old.ramblock_recv_bitmap_send("pc.ram")  # ... but no recovery stream
    src, rb = source(before(key))
    with pytest.raises(ReleaseError, match="ram_dirty_bitmap_reload"):
        src.ram_dirty_bitmap_reload(rb, stream_of(9))
    new = ctx(after(key))
    new.ram_block_add("pc.ram", 4 * TPS)
    new.ramblock_recv_map_init()
    assert new.ramblock_recv_bitmap_send("pc.ram")[1] == 16
    src, rb = source(after(key))
    assert src.ram_dirty_bitmap_reload(rb, stream_of(9, (0,))) == 0


def _maps(release: str, **flags: bool) -> tuple[bool, int]:
    c = ctx(release)
    c.ram_block_add("pc.ram", 4 * TPS)
    other = c.ram_block_add("ram1", 2 * TPS, **flags)
    c.ramblock_recv_map_init()
    return other.receivedmap is not None, c.ram_bytes_total()


def t_recv_map_migratable_only() -> None:
    key = "recv_map_migratable_only"
    assert _maps(before(key), migratable=False) == (True, 6 * TPS)
    assert _maps(after(key), migratable=False) == (False, 4 * TPS)


def t_ignore_shared() -> None:
    key = "ignore_shared"
    assert _maps(before(key), ignored=True) == (True, 6 * TPS)
    assert _maps(after(key), ignored=True) == (False, 4 * TPS)


def t_discard_no_map_on_source() -> None:
    key = "discard_no_map_on_source"
    old = ctx(before(key), Side.SOURCE)
    old.ram_block_add("pc.ram", 4 * TPS)
    with pytest.raises(PreconditionError, match="814bb08f177a"):
        old.ram_discard_range("pc.ram", 0, TPS)
    new = ctx(after(key), Side.SOURCE)
    new.ram_block_add("pc.ram", 4 * TPS)
    assert new.ram_discard_range("pc.ram", 0, TPS) == 0
    # less than one target page: bitmap_clear(NULL, 0, 0) touches nothing, the discard goes
    # on to ram_block_discard_range (whose length check fails the same at both releases)
    assert old.ram_discard_range("pc.ram", 0, TPS // 2) == -1
    assert old.error_log[-1].startswith("ram_block_discard_range: Unaligned end address")
    # the window b895de5027..814bb08f177a: a non-migratable block of the destination has
    # no map either, so its discard is out of the domain there too
    window = ctx("v3.0.0-discard_no_map_on_source")
    window.ram_block_add("pc.ram", 4 * TPS)
    window.ram_block_add("vga", 4 * TPS, migratable=False)
    window.ramblock_recv_map_init()
    with pytest.raises(PreconditionError, match="814bb08f177a"):
        window.ram_discard_range("vga", 0, TPS)


def t_count_one_zero() -> None:
    m = bitmap_new(128, LP64_LE)
    bitmap_set(m, 3, 5)
    bitmap_set(m, 64, 2)
    assert at_release(before("count_one_zero")).bitmap_count_one(m, 0) == 5  # word 0
    assert at_release(before("count_one_zero")).bitmap_count_one(m, 66) == 7
    assert at_release(after("count_one_zero")).bitmap_count_one(m, 0) == 0
    w = bitmap_new(40, ILP32_LE)
    bitmap_set(w, 31, 2)
    assert at_release("v2.12.0").bitmap_count_one(w, 0) == 1  # word 0 of 32 bits only


def t_count_one_with_offset() -> None:
    m = bitmap_new(128, LP64_LE)
    bitmap_set(m, 60, 8)
    absent_then_present(
        "count_one_with_offset",
        lambda r: at_release(r).bitmap_count_one_with_offset(m, 62, 4),
    )
    assert at_release(after("count_one_with_offset")).bitmap_count_one_with_offset(m, 62, 4) == 4


def t_copy_with_offset() -> None:
    a, b = bitmap_new(128, LP64_LE), bitmap_new(128, LP64_LE)
    bitmap_set(b, 5, 3)
    absent_then_present(
        "copy_with_offset", lambda r: at_release(r).bitmap_copy_with_src_offset(a, b, 4, 8)
    )
    assert a.word(0) == 0b1110
    absent_then_present(
        "copy_with_offset", lambda r: at_release(r).bitmap_copy_with_dst_offset(a, b, 1, 8)
    )


def _discard(release: str, start: int, length: int, used: int = 4, mx: int = 4) -> tuple[int, str]:
    c = ctx(release)
    rb = c.ram_block_add("pc.ram", used * TPS, mx * TPS, host=0x10000000)
    c.ramblock_recv_map_init()
    ret = c.ram_block_discard_range(rb, start, length)
    return ret, c.error_log[-1] if c.error_log else ""


def t_discard_unaligned_length() -> None:
    key = "discard_unaligned_length"
    assert _discard(before(key), TPS, TPS + 1) == (
        -1,
        "ram_block_discard_range: Unaligned end address: 0x10002001",
    )
    assert _discard(after(key), TPS, TPS + 1) == (
        -1,
        "ram_block_discard_range: Unaligned length: 1001",
    )


def t_discard_overrun_max_length() -> None:
    key = "discard_overrun_max_length"
    assert _discard(before(key), 2 * TPS, TPS, used=2) == (
        -1,
        "ram_block_discard_range: Overrun block 'pc.ram' (8192/1000/2000)",
    )
    assert _discard(after(key), 2 * TPS, TPS, used=2) == (0, "")
    assert _discard(after(key), 2 * TPS, 3 * TPS, used=2) == (
        -1,
        "ram_block_discard_range: Overrun block 'pc.ram' (8192/3000/4000)",
    )


def _base_page_discard(
    release: str, target_bits: int, page_size: int = TPS, ignored: bool = False
) -> tuple[int, list[str]]:
    """A whole-page discard of a block on an x86_64 host (4K base page, 2M hugepages)."""
    c = RamContext(TargetPage.fixed(target_bits), host_page_size=TPS, release=release)
    c.ram_block_add("pc.ram", 4 << 20, page_size=page_size, ignored=ignored)
    c.ramblock_recv_map_init()
    return c.ram_discard_range("pc.ram", 0, max(page_size, 1 << target_bits)), c.error_log


def t_discard_real_host_page() -> None:
    """ram_block_discard_range: need_madvise = (rb->page_size == qemu_host_page_size), and
    page_size_init made that max(getpagesize(), TARGET_PAGE_SIZE) (8K for alpha's 13 bits);
    need_fallocate = (rb->fd != -1). An anonymous 4K block of an 8K target took neither and
    returned its initial -1, no error_report. 80c3aeef7f compares qemu_real_host_page_size()."""
    key = "discard_real_host_page"
    assert _base_page_discard(before(key), 13) == (-1, [])
    assert _base_page_discard(after(key), 13) == (0, [])
    for release in (before(key), after(key)):
        assert _base_page_discard(release, 12) == (0, [])  # 4K target: madvise
        assert _base_page_discard(release, 13, ignored=True) == (0, [])  # a file: fallocate
        assert _base_page_discard(release, 13, page_size=2 << 20) == (0, [])  # hugetlbfs


def t_discard_fallocate_by_fd() -> None:
    """Before db144f7000 a block not madvised (rb->page_size != qemu_host_page_size) was
    fallocate()d on rb->fd, -1 for anonymous memory: EBADF, ret = -errno and the error
    "Failed to discard range %s:%" PRIx64 " +%zx (%d)" (exec.c at the seed); from it,
    fallocate only with a file, and neither call is -1 without a message."""
    key = "discard_fallocate_by_fd"
    assert _base_page_discard(before(key), 13) == (
        -9,
        ["ram_block_discard_range: Failed to discard range pc.ram:0 +2000 (-9)"],
    )
    assert _base_page_discard(after(key), 13) == (-1, [])
    for release in (before(key), after(key)):
        assert _base_page_discard(release, 12) == (0, [])  # madvise
        assert _base_page_discard(release, 13, ignored=True) == (0, [])  # a file: fallocate
        assert _base_page_discard(release, 13, page_size=2 << 20) == (0, [])  # hugetlbfs


def t_send_postcopy_length() -> None:
    key = "send_postcopy_length"
    sizes = []
    for release in (before(key), after(key)):
        c = ctx(release)
        c.ram_block_add("pc.ram", 100 * TPS, 100 * TPS, postcopy_length=40 * TPS)
        c.ramblock_recv_map_init()
        stream, ret = c.ramblock_recv_bitmap_send("pc.ram")
        sizes.append((int.from_bytes(stream[:8], "big"), ret))
    assert sizes == [(16, 24), (8, 16)]  # 100 pages -> 13 -> 16 bytes; 40 -> 5 -> 8


def t_test_and_clear() -> None:
    m = bitmap_new(64, LP64_LE)
    bitmap_set(m, 0, 4)
    absent_then_present("test_and_clear", lambda r: at_release(r).bitmap_test_and_clear(m, 1, 2))
    assert m.word(0) == 0b1001
    assert at_release(before("test_and_clear")).bitmap_test_and_clear_atomic(m, 0, 1) is True


def _reload(release: str, stream: bytes) -> tuple[int, str]:
    src, rb = source(release)
    try:
        return src.ram_dirty_bitmap_reload(rb, stream), ""
    except RecoveryError as err:
        assert src.error_log == [src.error_log[-1]]
        return err.ret, src.error_log[-1]


WINDOW_7AA6070D09 = "v8.1.0+reload_error_setg"  # 7aa6070d09 in, 88577f3242 not yet


def t_reload_bool_error() -> None:
    """88577f3242: bool returns, the read failure's error code dropped (its parent is the
    7aa6070d09 window: Error messages without prefix, int returns, the code kept)."""
    key = "reload_bool_error"
    short = stream_of(9)[:12]
    assert _reload(WINDOW_7AA6070D09, short) == (
        -errno.EIO,
        "read bitmap failed for ramblock 'pc.ram': -5 (size 0x8, got: 0x4)",
    )
    assert _reload(after(key), short) == (
        -1,
        "read bitmap failed for ramblock 'pc.ram': (size 0x8, got: 0x4)",
    )
    assert _reload(WINDOW_7AA6070D09, b"") == (
        -errno.EINVAL,
        "ramblock 'pc.ram' bitmap size mismatch (0x0 != 0x8)",
    )
    assert _reload(after(key), b"") == (-1, "ramblock 'pc.ram' bitmap size mismatch (0x0 != 0x8)")


def t_reload_error_setg() -> None:
    """7aa6070d09: the texts lose the "ram_dirty_bitmap_reload: " prefix; returns unchanged."""
    bad_size = (0x10).to_bytes(8, "big") + bytes(16)
    assert _reload(before("reload_error_setg"), bad_size) == (
        -errno.EINVAL,
        "ram_dirty_bitmap_reload: ramblock 'pc.ram' bitmap size mismatch (0x10 != 0x8)",
    )
    assert _reload(WINDOW_7AA6070D09, bad_size) == (
        -errno.EINVAL,
        "ramblock 'pc.ram' bitmap size mismatch (0x10 != 0x8)",
    )
    short = stream_of(9)[:12]
    assert _reload(before("reload_error_setg"), short) == (
        -errno.EIO,
        "ram_dirty_bitmap_reload: read bitmap failed for ramblock 'pc.ram': -5 "
        "(size 0x8, got: 0x4)",
    )


def t_recv_bitmap_test_byte_offset() -> None:
    key = "recv_bitmap_test_byte_offset"

    def call(release: Release) -> object:
        c = ctx(release.name)
        rb = c.ram_block_add("pc.ram", 4 * TPS)
        c.ramblock_recv_map_init()
        c.ramblock_recv_bitmap_set(rb, rb.host + 2 * TPS)
        return c.ramblock_recv_bitmap_test_byte_offset(rb, 2 * TPS + 5)

    absent_then_present(key, call)
    assert before(key) == "v2.11.0" and call(parse_release(after(key))) is True


def _send_one_page(release: str, pages: int = 1) -> tuple[bytes, int]:
    c = ctx(release)
    rb = c.ram_block_add("pc.ram", pages * TPS)
    c.ramblock_recv_map_init()
    c.ramblock_recv_bitmap_set(rb, rb.host)
    return c.ramblock_recv_bitmap_send("pc.ram")


def t_recv_bitmap_size_div_round_up() -> None:
    """a725ef9fe364: ROUND_UP(nbits / 8, 8) rounded the division down (a335debb35's
    rule, in no release: both commits are in v3.0.0-rc0)."""
    old = "v3.0.0-recv_bitmap_size_div_round_up"
    end = (0x0123456789ABCDEF).to_bytes(8, "big")
    assert _send_one_page(old) == (bytes(8) + end, 8)  # 1 page: 0 map bytes
    assert _send_one_page("v3.0.0") == ((8).to_bytes(8, "big") + b"\x01" + bytes(7) + end, 16)
    assert _send_one_page(old, 65)[1] == 16 and _send_one_page("v3.0.0", 65)[1] == 24
    # the source of the old rule refuses the new stream: its own size is 0
    src, rb = source(old, 1)
    with pytest.raises(RecoveryError, match=r"bitmap size mismatch \(0x8 != 0x0\)"):
        src.ram_dirty_bitmap_reload(rb, _send_one_page("v3.0.0")[0])


def _bmap(release: str) -> bytes:
    src, rb = source(release, 16)
    assert rb.bmap is not None
    return rb.bmap.image()


def t_bmap_blank() -> None:
    """03158519384f left the new bmaps blank (v4.1.0-rc0 has it without the fix)."""
    assert _bmap("v4.0.0")[:2] == b"\xff\xff"
    assert _bmap("v4.0.0+bmap_blank")[:2] == b"\x00\x00"


def t_bmap_dirty_again() -> None:
    """40c4d4a83545 set every page dirty again: no release has the blank bmap."""
    assert _bmap("v4.1.0-bmap_dirty_again")[:2] == b"\x00\x00"
    assert _bmap("v4.1.0")[:2] == b"\xff\xff"


def t_reload_end_mark_hex() -> None:
    key = "reload_end_mark_hex"
    bad = stream_of(9)[:16] + (0xFF).to_bytes(8, "big")
    assert _reload(before(key), bad) == (
        -errno.EINVAL,
        "ram_dirty_bitmap_reload: ramblock 'pc.ram' end mark incorrect: 0x255",
    )
    assert _reload(after(key), bad) == (
        -errno.EINVAL,
        "ram_dirty_bitmap_reload: ramblock 'pc.ram' end mark incorrect: 0xff",
    )


def t_clear_bit_atomic() -> None:
    m = bitmap_new(64, LP64_LE)
    bitmap_set(m, 0, 2)
    absent_then_present("clear_bit_atomic", lambda r: at_release(r).clear_bit_atomic(1, m))
    assert m.word(0) == 1


def t_recv_bitmap_set_offset() -> None:
    key = "recv_bitmap_set_offset"
    for release in (before(key), after(key)):
        c = ctx(release)
        rb = c.ram_block_add("pc.ram", 4 * TPS)
        c.ramblock_recv_map_init()
        if release == before(key):
            with pytest.raises(ReleaseError, match="v9.1.0"):
                c.ramblock_recv_bitmap_set_offset(rb, 2 * TPS)
        else:
            c.ramblock_recv_bitmap_set_offset(rb, 2 * TPS)
            assert rb.receivedmap is not None and rb.receivedmap.word(0) == 4


def t_bitmap_new_zero() -> None:
    """g_try_malloc0(0) is NULL, and bitmap_new aborted on NULL before 5e9efe31f1."""
    with pytest.raises(PreconditionError, match=r"nbits != 0 before v9\.1\.0.*abort"):
        at_release(before("bitmap_new_zero")).bitmap_new(0, LP64_LE)
    assert at_release(before("bitmap_new_zero")).bitmap_new(1, LP64_LE).nwords == 1
    assert at_release(after("bitmap_new_zero")).bitmap_new(0, LP64_LE).nwords == 0
    assert at_release(after("bitmap_new_zero")).bitmap_new(65, LP64_LE).nwords == 2


BOTH_SIDES: dict[str, Callable[[], None]] = {
    "recovery_stream": t_recovery_stream,
    "recv_map_migratable_only": t_recv_map_migratable_only,
    "discard_no_map_on_source": t_discard_no_map_on_source,
    "count_one_zero": t_count_one_zero,
    "count_one_with_offset": t_count_one_with_offset,
    "ignore_shared": t_ignore_shared,
    "copy_with_offset": t_copy_with_offset,
    "discard_unaligned_length": t_discard_unaligned_length,
    "reload_end_mark_hex": t_reload_end_mark_hex,
    "discard_overrun_max_length": t_discard_overrun_max_length,
    "send_postcopy_length": t_send_postcopy_length,
    "test_and_clear": t_test_and_clear,
    "reload_bool_error": t_reload_bool_error,
    "clear_bit_atomic": t_clear_bit_atomic,
    "recv_bitmap_set_offset": t_recv_bitmap_set_offset,
    "bitmap_new_zero": t_bitmap_new_zero,
    "recv_bitmap_test_byte_offset": t_recv_bitmap_test_byte_offset,
    "recv_bitmap_size_div_round_up": t_recv_bitmap_size_div_round_up,
    "bmap_blank": t_bmap_blank,
    "bmap_dirty_again": t_bmap_dirty_again,
    "reload_error_setg": t_reload_error_setg,
    "discard_real_host_page": t_discard_real_host_page,
    "discard_fallocate_by_fd": t_discard_fallocate_by_fd,
}


def test_every_change_has_a_two_sided_test() -> None:
    assert set(BOTH_SIDES) == {c.key for c in CHANGES}


@pytest.mark.parametrize("key", sorted(BOTH_SIDES))
def test_change_on_both_sides(key: str) -> None:
    BOTH_SIDES[key]()


# --- the release names and the table ---------------------------------------------------


def test_releases_are_ordered_as_version_tuples() -> None:
    assert list(RELEASES) == sorted(RELEASES)
    assert parse_release("v10.1.0") > parse_release("v9.2.0") > parse_release("v2.12.0")
    assert parse_release("10.1.0") == parse_release("v10.1.0")
    assert parse_release("3.0") == parse_release("v3.0.0")
    assert parse_release(None) == DEFAULT_RELEASE == RELEASES[-1]
    assert parse_release("v10.1.1").has("reload_bool_error")  # a stable release in between
    assert parse_release("v2.11.0") == RELEASES[0]  # the first release with the map
    for bad in ("v2.10.0", "v99.0.0", "latest", "", "2.12.91", "v3.0.0-rc1", "2.12.50"):
        with pytest.raises(PreconditionError, match="release"):
            parse_release(bad)
    with pytest.raises(PreconditionError, match="v3.0.0-rc1, a snapshot between releases"):
        parse_release("2.12.91")


def test_release_ranges() -> None:
    r = release_range(">=v3.0.0,<v8.2.0")
    assert [x.name for x in RELEASES if r(x)][:2] == ["v3.0.0", "v3.1.0"]
    assert not r(parse_release("v8.2.0")) and not r(parse_release("v2.12.0"))
    assert release_range("v4.0.0")(parse_release("v4.0.0"))
    assert all(release_range("*")(x) for x in RELEASES)


def test_release_error_names_the_first_release_and_pickles() -> None:
    err = ReleaseError("bitmap_test_and_clear", "v3.0.0")
    assert "first appears in v7.2.0" in str(err) and "cedb70eafb" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.function, again.release, str(again)) == (err.function, err.release, str(err))
    with pytest.raises(AttributeError):
        _ = at_release("v3.0.0").no_such_function


def test_the_newest_view_is_the_model() -> None:
    from recvmap.pymodel import bitmap, bitops

    view = at_release()
    assert view.bitmap_count_one is bitmap.bitmap_count_one
    assert view.set_bit is bitops.set_bit
    assert set(view.functions()) == set(bitmap.__all__) | set(bitops.__all__)
    assert not at_release("v2.12.0").has("bitmap_test_and_clear")
    assert set(FUNCTION_SINCE) >= {"bitmap_count_one_with_offset", "ramblock_recv_bitmap_send"}


NAMED = {  # the changes issue 9 names, with their commits
    "count_one_zero": "e7c91368d2",
    "count_one_with_offset": "94960256ae",
    "copy_with_offset": "ad37f24d57",
    "test_and_clear": "cedb70eafb",
    "reload_bool_error": "88577f3242",
    "recovery_stream": "a335debb35",
    "discard_no_map_on_source": "814bb08f17",
    "send_postcopy_length": "898ba906cc",
    "discard_unaligned_length": "72821d93e0",
}


def test_recvmap_releases_lists_the_changes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["releases"]) == 0
    out = capsys.readouterr().out
    assert out == render_table()
    for key, commit in NAMED.items():
        c = change(key)
        assert c.commit.startswith(commit)
        assert re.search(rf"^{re.escape(c.release.name)}\s+{c.commit}\s", out, re.M), key


def test_cli_rejects_an_unknown_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--release", "v1.0.0", str(VECTORS)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "predates the received-page bitmap" in err


def test_replay_at_an_old_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--model-only", "--release", "v3.0.0", str(VECTORS)]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"\d+ passed, 0 failed, \d+ skipped \(model only, QEMU v3.0.0\)", out)


# --- the fixed rules: hand vectors, and the old model rule fails them ------------------


def hand_cases(name: str) -> list[Case]:
    return [c for c in load_file(VECTORS / name) if "HandDerived" in c.test["flags"]]


def check(case: Case) -> str | None:
    """check_model at the first release of the case's range."""
    first = case.group["release"].split(",")[0].removeprefix(">=")
    return check_model(case, first)


NEW_READ_STREAM = recovery_mod._read_stream


def _old_read_stream(ctx: RamContext, block: RAMBlock, stream: bytes, local_size: int) -> bytes:
    """The model's rule before this fix: a stream shorter than the size field was its own
    error (-EIO), and bytes after the end mark were rejected (-EINVAL)."""
    if len(stream) < 8:
        raise recovery_mod._reject(ctx, block, "stream too short", -errno.EIO)
    payload = NEW_READ_STREAM(ctx, block, stream, local_size)
    if len(stream) > 16 + local_size:
        raise recovery_mod._reject(ctx, block, "bytes after the end mark", -errno.EINVAL)
    return payload


def test_old_stream_rule_fails_the_hand_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        c for c in hand_cases("recovery-stream.json") if "issue 3 malformed" in c.test["comment"]
    ]
    names = {
        "empty stream",
        "7-byte size field",
        "size field cut short",
        "bytes after the end mark",
    }
    targets = [c for c in cases if any(n in c.test["comment"] for n in names)]
    assert len(targets) >= 4 * 4  # every case at both releases / layout pairs it has
    assert all(check(c) is None for c in targets)
    monkeypatch.setattr(recovery_mod, "_read_stream", _old_read_stream)
    assert all(check(c) is not None for c in targets)


def test_old_no_guard_rule_fails_the_hand_vectors(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [c for c in hand_cases("ram-rules.json") if "no RAM" in c.test["comment"]]
    cases += [
        c
        for c in load_file(VECTORS / "recovery-stream.json")
        if "the source has no RAM" in c.test["comment"]
    ]
    assert len(cases) >= 2 + 4
    assert all(check(c) is None for c in cases)
    monkeypatch.setattr(RamContext, "ram_bytes_total", lambda self: 1)  # no guard
    assert all(check(c) is not None for c in cases)


def test_every_vector_file_has_hand_derived_and_snapshot_flags() -> None:
    flags = {f for p in iter_files([VECTORS]) for c in load_file(p) for f in c.test["flags"]}
    assert {"HandDerived", "ModelSnapshot", "Release"} <= flags


# --- the code each change rests on, in QEMU's own trees --------------------------------

needs_trees = pytest.mark.skipif(not TREES, reason=SKIP_REASON)


def _function(tree: Path, path: str, signature: str) -> str:
    text = (tree / path).read_text(errors="replace")
    start = text.index(signature)
    end = text.index("\n}\n", start)
    return text[start:end]


@needs_trees
def test_the_trees_show_the_release_rules() -> None:
    for release, tree in TREES.items():
        rel = parse_release(release)
        count_one = _function(tree, "include/qemu/bitmap.h", "long bitmap_count_one(")
        assert ("!nbits" in count_one) == rel.has("count_one_zero"), release
        new = _function(tree, "include/qemu/bitmap.h", "long *bitmap_new(")
        assert ("g_new0" in new) == rel.has("bitmap_new_zero"), release
        assert ("abort()" in new) == (not rel.has("bitmap_new_zero")), release
        init = _function(tree, "migration/ram.c", "ram_list_init_bitmaps(void)")
        assert "if (ram_bytes_total())" in init, release  # the no-RAM guard: every release
        discard = _function(tree, "migration/ram.c", "int ram_discard_range(")
        assert ("if (rb->receivedmap)" in discard) == rel.has("discard_no_map_on_source")
        ram_c = (tree / "migration/ram.c").read_text(errors="replace")
        assert ("ramblock_recv_bitmap_send(" in ram_c) == rel.has_function(
            "ramblock_recv_bitmap_send"
        )
        if not rel.has_function("ram_dirty_bitmap_reload"):
            continue
        reload = _function(tree, "migration/ram.c", "ram_dirty_bitmap_reload(MigrationState")
        assert reload.lstrip().startswith("ram_dirty_bitmap_reload")
        is_bool = "bool ram_dirty_bitmap_reload(" in ram_c
        assert is_bool == rel.has("reload_bool_error"), release
        assert ("PRIu64" not in reload.split("end mark incorrect")[1][:30]) == rel.has(
            "reload_end_mark_hex"
        )
        assert reload.index("size = qemu_get_be64(file)") < reload.index("qemu_get_buffer")
        assert reload.index("qemu_get_buffer") < reload.index("qemu_file_get_error")
        send = _function(tree, "migration/ram.c", "int64_t ramblock_recv_bitmap_send(")
        uses_postcopy = "nbits = block->postcopy_length" in send
        assert uses_postcopy == rel.has("send_postcopy_length"), release


# --- rules by content: rule sets between releases, QEMU's version numbers ----------------


def test_rules_of_a_release_and_between_releases() -> None:
    from recvmap.pymodel.releases import parse_rules, rules_of

    v3 = parse_rules("v3.0.0")
    assert v3 == parse_release("v3.0.0").rules == parse_rules("v3.1.0")  # no change in v3.1
    assert v3.name == "v3.0.0" and v3.release == parse_release("v3.0.0")
    # the parent of 814bb08f177a: v3.0.0's changes but the discard guard
    parent = parse_rules("v3.0.0-814bb08f177a")
    assert parent == parse_rules(
        "v2.12.0+recovery_stream+recv_map_migratable_only+recv_bitmap_size_div_round_up"
    )
    assert parent.release is None and not parent.has("discard_no_map_on_source")
    assert parent.has("recv_map_migratable_only") and parent.has_function("ram_dirty_bitmap_reload")
    assert parse_rules(parent.name) == parent  # the name reads back
    assert rules_of(parent.applied) == parent and rules_of(v3.applied).name == "v3.0.0"
    # a context, a view and an error work with any rule set
    c = ctx(parent.name, Side.SOURCE)
    c.ram_block_add("pc.ram", 4 * TPS)
    with pytest.raises(PreconditionError, match="814bb08f177a"):
        c.ram_discard_range("pc.ram", 0, TPS)
    m = bitmap_new(64, LP64_LE)
    bitmap_set(m, 0, 3)
    assert at_release(parent).bitmap_count_one(m, 0) == 3  # before e7c91368d246 (v4.0.0)
    err = ReleaseError("bitmap_test_and_clear", parent)
    assert parent.name in str(err) and pickle.loads(pickle.dumps(err)).release == parent
    for bad in ("v3.0.0+no_such_change", "v3.0.0-rc1", "2.12.91", "v3.0.0+0000000000"):
        with pytest.raises(PreconditionError):
            parse_rules(bad)


def test_qemu_version_numbers() -> None:
    from recvmap.pymodel.releases import parse_version, version_rules

    rc1 = parse_version("2.12.91")
    assert (rc1.tuple, rc1.candidate, rc1.is_release) == ((2, 12, 91), 1, False)
    assert parse_version("v3.0.0-rc1").candidate == 1
    assert parse_version("3.0") == parse_version("v3.0.0") and parse_version("3.0").is_release
    assert parse_version("2.10.50").candidate is None
    assert parse_version("2.10.50") < parse_version("2.10.90") < parse_version("2.11.0")
    with pytest.raises(ValueError):
        parse_version("3.0.0.1")
    # QEMU's conventions: a snapshot says which releases it lies between, not its rules
    seen = version_rules(rc1)
    assert seen.rules == parse_rules_of("v3.0.0") and "v3.0.0-rc1: ambiguous" in seen.text
    assert {c.commit for c in seen.unsure} == {
        "a335debb35",
        "a725ef9fe364",
        "b895de5027",
        "814bb08f177a",
    }
    dev = version_rules(parse_version("2.10.50"))  # the seed's own VERSION
    assert dev.rules is not None and dev.rules.applied == frozenset()
    assert "development after v2.10" in dev.text
    assert version_rules(parse_version("2.12.0")).unsure == ()
    assert version_rules(parse_version("2.9.50")).rules is None  # before the bitmap
    assert version_rules(parse_version("99.0.0")).rules == parse_rules_of(None)


def parse_rules_of(name: str | None) -> object:
    from recvmap.pymodel.releases import parse_rules

    return parse_rules(name)


# --- one home for release facts (issue 24) -------------------------------------------------

SOURCE = Path(__file__).resolve().parents[1]
PARSER = ("pymodel/releases.py", "parse_version")
DIGITS_DOT = r"(\d+)\."  # the heart of a version regex: digits, then a dot


@functools.cache
def _sources() -> list[tuple[str, str, str]]:
    """(file, function or "<module constant>", source) of pymodel/, qemu_ref/ and fuzz/:
    every function, and every string constant outside functions."""
    import ast

    out = []
    for folder in ("pymodel", "qemu_ref", "fuzz"):
        for path in sorted((SOURCE / folder).rglob("*.py")):
            text, rel = path.read_text(), str(path.relative_to(SOURCE))
            tree = ast.parse(text)
            inside = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    out.append((rel, node.name, ast.get_source_segment(text, node) or ""))
                    inside |= {id(n) for n in ast.walk(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    if id(node) not in inside:
                        out.append((rel, "<module constant>", node.value))
    return out


def parses_versions(source: str) -> bool:
    """Code that turns dotted numbers into ints: split(".") with int(), a digits findall
    with int(), or a version regex."""
    splits = re.search(r"""split\(\s*["']\.["']\s*\)""", source) and "int(" in source
    digits = "int(" in source and re.search(r"""findall\(\s*r?["']\\d\+["']""", source)
    return bool(splits or digits or DIGITS_DOT in source)


def test_one_version_parser_exists_and_is_used() -> None:
    """QEMU's version strings are parsed in one place, pymodel.releases.parse_version
    (there were four: releases._tag, ramblock._version, tree.release_tuple and
    ram.parse_version), and the tree, the model's page tables and the rules use it."""
    found = sorted({(f, n) for f, n, src in _sources() if parses_versions(src)})
    assert found == [("pymodel/releases.py", "<module constant>")], found  # the regex ...
    readers = [n for f, n, src in _sources() if f == PARSER[0] and "_VERSION." in src]
    assert readers == [PARSER[1]]  # ... read by the parser only
    users = {f for f, n, src in _sources() if "parse_version(" in src and (f, n) != PARSER}
    assert {"pymodel/releases.py", "pymodel/ramblock.py"} <= users, users
    assert "fuzz/subjects/qemu_tree/tree.py" in users, users
    # the test recognises the parsers it replaced
    assert parses_versions('tuple(int(x) for x in v.split("."))')
    assert parses_versions(r'parts = [int(p) for p in re.findall(r"\d+", text)[:3]]')
    assert parses_versions(r'_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)\s*$")')


def test_first_releases_live_in_the_model_only() -> None:
    """'Since when does X exist' has one answer, pymodel.releases (FUNCTION_KEY/SINCE):
    no other module keeps a table of first releases (qemu_tree/ram.py had FIRST_RELEASE
    and OLDEST, whose comments disagreed with the model)."""
    import ast

    names = {"FIRST_RELEASE", "OLDEST", "FUNCTION_SINCE", "FUNCTION_KEY", "RELEASES"}
    for path in sorted((SOURCE / "fuzz").rglob("*.py")) + sorted(
        (SOURCE / "qemu_ref").rglob("*.py")
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for t in targets:
                assert not (isinstance(t, ast.Name) and t.id in names), f"{path}: {t.id}"
