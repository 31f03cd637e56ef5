# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's own received-bitmap functions, taken from the shared trees (--qemu-tree, part 2).

Expected locations and absences below were read from the trees by hand (grep), not from
the extractor; expected behaviours were read from each tree's source. The fuzz runs check
that the ram and recovery layers RUN on each tree's code and agree with the model at the
tree's own release; the teeth tests mutate one line of a COPY of a tree.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qemu_trees import SKIP_REASON, TREES  # noqa: E402

from recvmap.fuzz.subjects.qemu_tree.build import build_tree  # noqa: E402
from recvmap.fuzz.subjects.qemu_tree.extract import RAM_FUNCTIONS, extract  # noqa: E402
from recvmap.fuzz.subjects.qemu_tree.ram import RamBuildError, ram_problem, ram_units  # noqa: E402
from recvmap.qemu_ref.loader import load  # noqa: E402

pytestmark = [pytest.mark.extra("qemu-tree"), pytest.mark.skipif(not TREES, reason=SKIP_REASON)]

RECVMAP = [sys.executable, "-c", "import sys; from recvmap.fuzz.cli import main; sys.exit(main())"]

ABSENT = {
    "v2.12.0": {
        "ramblock_recv_bitmap_set_offset",
        "ramblock_recv_bitmap_send",
        "ram_dirty_bitmap_reload",
    },
    "v3.0.0": {"ramblock_recv_bitmap_set_offset"},
    "v5.2.0": {"ramblock_recv_bitmap_set_offset"},
    "v8.2.0": {"ramblock_recv_bitmap_set_offset"},
    "v10.1.0": set(),
}

# file:line of a few definitions, found with grep in each tree.
WHERE = {
    "v2.12.0": {
        "ram_block_discard_range": "exec.c:3761",
        "ramblock_recv_map_init": "migration/ram.c:156",
        "ramblock_recv_bitmap_offset": "include/exec/ram_addr.h:65",
        "ram_load_cleanup": "migration/ram.c:2656",
    },
    "v3.0.0": {
        "ramblock_recv_bitmap_send": "migration/ram.c:209",
        "ram_dirty_bitmap_reload": "migration/ram.c:3949",
        "ram_block_discard_range": "exec.c:4008",
    },
    "v5.2.0": {
        "ram_block_discard_range": "softmmu/physmem.c:3483",
        "ram_dirty_bitmap_reload": "migration/ram.c:3695",
    },
    "v8.2.0": {
        "ram_block_discard_range": "system/physmem.c:3496",
        "ram_dirty_bitmap_reload": "migration/ram.c:4119",
    },
    "v10.1.0": {
        "ramblock_recv_bitmap_set_offset": "migration/ram.c:287",
        "ramblock_recv_bitmap_send": "migration/ram.c:298",
        "ram_dirty_bitmap_reload": "migration/ram.c:4416",
        "ramblock_recv_bitmap_offset": "include/system/ram_addr.h:94",
        "ram_block_discard_range": "system/physmem.c:3809",
        "qemu_ufd_copy_ioctl": "migration/postcopy-ram.c:1583",
    },
}

RELEASES = [r for r in ABSENT if r in TREES]


@pytest.mark.parametrize("release", RELEASES)
def test_extraction_finds_every_function_of_the_release(release: str) -> None:
    ex = extract(TREES[release])
    names = {w.name for w in RAM_FUNCTIONS}
    found = names & set(ex.found)
    assert names - found == ABSENT[release]
    for name, where in WHERE[release].items():
        assert ex.found[name].where == where, name
    # the text is the definition itself: it starts at the declaration and ends with "}"
    for name in found:
        d = ex.found[name]
        assert name in d.text.split("(")[0] and d.text.rstrip().endswith("}"), name


@pytest.mark.parametrize("release", RELEASES)
def test_build_exports_the_ram_abi_the_release_has(release: str) -> None:
    lib = load(build_tree(TREES[release]), bits=64, partial=True)
    assert ram_problem(TREES[release]) is None
    abi_names = {w.abi for w in RAM_FUNCTIONS} - {"postcopy_place_page"}
    for name in abi_names:
        assert lib.has(name) == (name not in ABSENT[release]), name
    assert lib.has("postcopy_place_page") and lib.has("qref_ram_last_error")


def _fuzz(
    lib: Path | str, layer: str, tmp: Path, seconds: int, release: str, seed: int = 1
) -> dict:
    """``recvmap fuzz`` of one layer on 64-bit words, the model at ``release``."""
    out = tmp / f"{layer}-{seed}.json"
    proc = subprocess.run(
        [
            *RECVMAP,
            "fuzz",
            "--impl",
            str(lib),
            "--target",
            layer,
            "--word-bits",
            "64",
            "--max-time",
            str(seconds),
            "--seed",
            str(seed),
            "--release",
            release,
            "--jobs",
            "1",
            "--engine",
            "random",
            "--quiet",
            "--out",
            str(tmp / "out"),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 60,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    result: dict = json.loads(out.read_text())
    result["returncode"] = proc.returncode
    return result


@pytest.mark.parametrize(
    "release",  # the oldest and newest trees in the fast suite, those between in make check
    [
        r if r in (RELEASES[0], RELEASES[-1]) else pytest.param(r, marks=pytest.mark.slow)
        for r in RELEASES
    ],
)
def test_ram_and_recovery_layers_run_on_the_tree(release: str, tmp_path: Path) -> None:
    lib = build_tree(TREES[release])
    for layer in ("ram", "recovery"):
        if layer == "recovery" and "ram_dirty_bitmap_reload" in ABSENT[release]:
            proc = subprocess.run(
                [*RECVMAP, "fuzz", "--impl", str(lib), "--target", layer, "--max-time", "5"],
                capture_output=True,
                text=True,
            )
            # skipped, never passed: nothing to fuzz, and the missing functions are named
            assert proc.returncode == 2
            assert "ram_dirty_bitmap_reload" in proc.stderr
            continue
        result = _fuzz(lib, layer, tmp_path, 6, release)
        programs = sum(j.get("programs", 0) for j in result["jobs"])
        assert programs > 0, result
        assert not result["crashes"], result["crashes"]
        # at its own release the model agrees with every tree (the releases work)
        assert not result["divergences"], result["divergences"]


def _mutated_ram_c(tmp: Path, old: str, new: str, release: str | None = None) -> Path:
    """A copy of the ``release`` tree (default the newest) whose migration/ram.c has its one
    ``old`` made ``new``."""
    release = RELEASES[-1] if release is None else release
    tree = tmp / release
    shutil.copytree(TREES[release], tree)
    path = tree / "migration/ram.c"
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return tree


def test_teeth_a_mutated_recv_bitmap_send_is_caught(tmp_path: Path) -> None:
    """The recovery layer of the v10.1.0 tree is clean at v10.1.0 (see above); with one line
    of a copy of its ramblock_recv_bitmap_send changed, the fuzzer names the sender."""
    if "v10.1.0" not in TREES:
        pytest.skip("needs the v10.1.0 tree")
    tree = _mutated_ram_c(
        tmp_path, "return size + sizeof(size);", "return size;", release="v10.1.0"
    )
    result = _fuzz(build_tree(tree), "recovery", tmp_path, 30, "v10.1.0")
    assert result["divergences"], "the mutant survived 30 s of the recovery layer"
    assert "ramblock_recv_bitmap_send" in result["divergences"][0]["description"]


def test_teeth_a_mutated_ram_discard_range_is_caught(tmp_path: Path) -> None:
    if "v10.1.0" not in TREES:
        pytest.skip("needs the v10.1.0 tree")
    tree = _mutated_ram_c(
        tmp_path,
        "                     length >> qemu_target_page_bits());",
        "                     (length >> qemu_target_page_bits()) + 1);",
        release="v10.1.0",
    )
    result = _fuzz(build_tree(tree), "ram", tmp_path, 30, "v10.1.0")
    assert result["divergences"], "the mutant survived 30 s of the ram layer"
    assert "discard" in result["divergences"][0]["description"]


def test_a_tree_lacking_a_function_names_it(tmp_path: Path) -> None:
    tree = _mutated_ram_c(
        tmp_path,
        "int ram_discard_range(const char *rbname,",
        "int ram_discard_range_renamed(const char *rbname,",
    )
    with pytest.raises(RamBuildError) as err:
        ram_units(tree)
    assert err.value.function == "ram_discard_range"
    # the bitmap layer still builds; the ram part's reason is kept for the command
    lib = load(build_tree(tree), bits=64, partial=True)
    assert lib.has("bitmap_set") and not lib.has("ram_discard_range")
    problem = ram_problem(tree)
    assert problem is not None and "ram_discard_range" in str(problem)


def test_a_function_that_does_not_compile_is_named(tmp_path: Path) -> None:
    tree = _mutated_ram_c(
        tmp_path,
        "    return test_bit(byte_offset >> TARGET_PAGE_BITS, rb->receivedmap);",
        "    return test_bit(byte_offset >> TARGET_PAGE_BITS, rb->no_such_field);",
    )
    build_tree(tree)
    problem = ram_problem(tree)
    assert problem is not None
    assert problem.function == "ramblock_recv_bitmap_test_byte_offset"
    assert "migration/ram.c:" in str(problem) and "\n" not in str(problem)


# --- QEMU's behaviour through the glue, expected values read from each tree's source --------
# These are also the reproducers of the divergences from today's model (docs/qemu-tree.md):
# each runs QEMU's own function and checks what its code says it does.

MIB = 1 << 20


def _tree_ctx(release: str, **kw: object) -> object:
    from recvmap.pymodel.ramblock import TargetPage
    from recvmap.qemu_ref.ram import c_context

    lib = load(build_tree(TREES[release]), bits=64, partial=True)
    return c_context(TargetPage.for_target("x86_64"), lib=lib, checked=False, **kw)


def _reload(release: str, stream: bytes) -> tuple[int, str]:
    """(the ABI's return, the last error) of QEMU's reload of ``stream`` into an 8M block."""
    from recvmap.pymodel.errors import RecoveryError
    from recvmap.pymodel.ramblock import Side

    src = _tree_ctx(release, side=Side.SOURCE)
    rb = src.ram_block_add("pc.ram", 8 * MIB, page_size=4096)  # type: ignore[attr-defined]
    src.ram_list_init_bitmaps()  # type: ignore[attr-defined]
    try:
        ret = src.ram_dirty_bitmap_reload(rb, stream)  # type: ignore[attr-defined]
    except RecoveryError as err:
        ret = err.ret
    log = src.error_log  # type: ignore[attr-defined]
    return ret, log[-1] if log else ""


def _stream(size: int = 0x100, body: bytes | None = None, mark: int = 0x0123456789ABCDEF) -> bytes:
    body = bytes(size) if body is None else body
    return size.to_bytes(8, "big") + body + mark.to_bytes(8, "big")


@pytest.mark.parametrize("release", [r for r in ("v3.0.0", "v5.2.0") if r in TREES])
def test_int_reload_short_streams_as_qemufile_reads_them(release: str) -> None:
    # empty: qemu_get_be64 reads 0 at EOF, so it is a size mismatch (-EINVAL), not -EIO
    ret, err = _reload(release, b"")
    assert ret == -22
    assert err == "ram_dirty_bitmap_reload: ramblock 'pc.ram' bitmap size mismatch (0x0 != 0x100)"
    # 7 bytes of a good stream: the missing byte reads as 0, the size matches (0x100), the map
    # read comes up short and the recorded -EIO fails it
    ret, err = _reload(release, _stream()[:7])
    assert ret == -5
    assert err == (
        "ram_dirty_bitmap_reload: read bitmap failed for ramblock 'pc.ram': -5 "
        "(size 0x100, got: 0x0)"
    )


@pytest.mark.parametrize("release", [r for r in ("v8.2.0", "v10.1.0") if r in TREES])
def test_bool_reload_maps_false_to_minus_one_with_the_error_message(release: str) -> None:
    ret, err = _reload(release, b"")
    assert ret == -1
    assert err == "ramblock 'pc.ram' bitmap size mismatch (0x0 != 0x100)"  # no __func__ prefix


@pytest.mark.parametrize("release", [r for r in RELEASES if r != "v2.12.0"])
def test_reload_never_reads_past_the_end_mark(release: str) -> None:
    assert _reload(release, _stream() + b"\x00" * 5) == (0, "")


def test_reload_end_mark_text_of_v3_prints_decimal_after_0x() -> None:
    if "v3.0.0" not in TREES:
        pytest.skip("needs the v3.0.0 tree")
    _, err = _reload("v3.0.0", _stream(mark=0x0123456789ABCD00))
    assert err.endswith(f"end mark incorrect: 0x{0x0123456789ABCD00}")


@pytest.mark.parametrize("release", RELEASES)
def test_no_ram_leaves_every_bmap_null(release: str) -> None:
    from recvmap.pymodel.ramblock import Side

    src = _tree_ctx(release, side=Side.SOURCE)
    rb = src.ram_block_add("pc.ram", 0, 4096, page_size=4096)  # type: ignore[attr-defined]
    src.ram_list_init_bitmaps()  # type: ignore[attr-defined]
    assert rb.bmap is None


@pytest.mark.parametrize(
    ("release", "expected"),
    [("v2.12.0", (True, True)), ("v3.0.0", (True, False)), ("v10.1.0", (False, False))],
)
def test_recv_map_init_blocks_by_release(release: str, expected: tuple[bool, bool]) -> None:
    """v2.12: every block; v3.0: migratable ones (ignore-shared comes in v4.0)."""
    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    dst = _tree_ctx(release)
    a = dst.ram_block_add("a", MIB, page_size=4096, ignored=True)  # type: ignore[attr-defined]
    b = dst.ram_block_add("b", MIB, page_size=4096, migratable=False)  # type: ignore[attr-defined]
    dst.ramblock_recv_map_init()  # type: ignore[attr-defined]
    assert (a.receivedmap is not None, b.receivedmap is not None) == expected


@pytest.mark.parametrize(
    ("release", "expected"),
    [
        ("v2.12.0", "ram_block_discard_range: Unaligned end address: 0x7f0000201000"),
        ("v3.0.0", "ram_block_discard_range: Unaligned end address: 0x7f0000201000"),
        ("v5.2.0", "ram_block_discard_range: Unaligned length: 1000"),
        ("v10.1.0", "ram_block_discard_range: Unaligned length: 1000"),
    ],
)
def test_discard_of_an_unaligned_length(release: str, expected: str) -> None:
    """Before v5.0.0 (72821d93e0) QEMU checks the end address, with %p."""
    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    dst = _tree_ctx(release)
    rb = dst.ram_block_add("pc.ram", 8 * MIB, page_size=2 * MIB, host=0x7F0000000000)  # type: ignore[attr-defined]
    dst.ramblock_recv_map_init()  # type: ignore[attr-defined]
    assert dst.ram_discard_range("pc.ram", 2 * MIB, 4096) == -1  # type: ignore[attr-defined]
    assert dst.error_log[-1] == expected  # type: ignore[attr-defined]
    # the received bits are cleared first, at every release
    assert dst.ramblock_recv_bitmap_test(rb, 0x7F0000000000 + 2 * MIB) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("release", "ret"), [("v2.12.0", -1), ("v5.2.0", -1), ("v8.2.0", 0), ("v10.1.0", 0)]
)
def test_discard_past_used_length_inside_max_length(release: str, ret: int) -> None:
    """Checked against used_length until v6.1.0 (dcdc460767), max_length since."""
    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    dst = _tree_ctx(release)
    dst.ram_block_add("pc.ram", 4 * MIB, 8 * MIB, page_size=4096)  # type: ignore[attr-defined]
    dst.ramblock_recv_map_init()  # type: ignore[attr-defined]
    assert dst.ram_discard_range("pc.ram", 4 * MIB, 4096) == ret  # type: ignore[attr-defined]


@pytest.mark.parametrize(("release", "size"), [("v5.2.0", 0x100), ("v10.1.0", 0x80)])
def test_send_sizes_the_map_by_release(release: str, size: int) -> None:
    """used_length until v6.1.0 (898ba906cc), postcopy_length since: used 8M, postcopy 4M."""
    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    import ctypes

    dst = _tree_ctx(release)
    dst.ram_block_add("pc.ram", 8 * MIB, page_size=4096, postcopy_length=4 * MIB)  # type: ignore[attr-defined]
    dst.ramblock_recv_map_init()  # type: ignore[attr-defined]
    buf = (ctypes.c_uint8 * 0x200)()
    lib = dst.transport.lib  # type: ignore[attr-defined]
    ret = lib.ramblock_recv_bitmap_send(
        dst.transport.ram_list,  # type: ignore[attr-defined]
        b"pc.ram",
        buf,
        len(buf),  # type: ignore[attr-defined]
    )
    assert ret == size + 8
    assert bytes(buf[:8]) == size.to_bytes(8, "big")


def _discard_on(release: str, target_bits: int, host_page: int, **block: object) -> int:
    """QEMU's ram_discard_range of one whole page of a block, target and host pages given
    through the ABI (qref_set_target_page_bits, qref_set_host_page_size)."""
    from recvmap.pymodel.ramblock import TargetPage
    from recvmap.qemu_ref.ram import c_context

    lib = load(build_tree(TREES[release]), bits=64, partial=True)
    page = int(block.pop("page_size", host_page))  # type: ignore[call-overload]
    dst = c_context(TargetPage.fixed(target_bits), host_page_size=host_page, lib=lib, checked=False)
    dst.ram_block_add("pc.ram", 4 * MIB, page_size=page, **block)  # type: ignore[arg-type]
    dst.ramblock_recv_map_init()
    return int(dst.ram_discard_range("pc.ram", 0, max(page, 1 << target_bits)))


@pytest.mark.parametrize(("release", "ret"), [("v2.12.0", -1), ("v8.2.0", -1), ("v10.1.0", 0)])
def test_discard_by_qemu_host_page_size_before_v9(release: str, ret: int) -> None:
    """need_madvise = rb->page_size == qemu_host_page_size, max(host page, TARGET_PAGE_SIZE)
    (page_size_init), until 80c3aeef7f (v9.0.0) compares qemu_real_host_page_size(); a file
    takes fallocate. Alpha's 8K pages on a 4K host: an anonymous 4K block takes neither
    before v9.0.0 (-1); a 16K host makes qemu_host_page_size 16K, a 16K block madvises. The
    two host pages on one library: the glue takes the host page from the ABI, not a
    constant (with 4096 fixed, the first discard returned 0 at every release)."""
    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    assert _discard_on(release, 13, 4096) == ret
    assert _discard_on(release, 13, 16384) == 0
    assert _discard_on(release, 12, 4096) == 0
    assert _discard_on(release, 13, 4096, ignored=True) == 0  # a shared file: fallocate
    assert _discard_on(release, 13, 4096, page_size=2 * MIB) == 0  # hugetlbfs: fallocate


def test_fuzzer_reaches_the_qemu_host_page_size_rule(tmp_path: Path) -> None:
    """The ram layer's generator draws targets whose page is bigger than the host's: the
    v8.2.0 tree judged at v9.0.0's rules diverges on such a discard within seconds."""
    if "v8.2.0" not in TREES:
        pytest.skip("needs the v8.2.0 tree")
    result = _fuzz(build_tree(TREES["v8.2.0"]), "ram", tmp_path, 20, "v9.0.0")
    assert result["divergences"], "20 s of the ram layer never reached the rule"
    assert "discard" in result["divergences"][0]["description"]


def test_v2_12_source_side_discard_crashes(tmp_path: Path) -> None:
    """bitmap_clear on the source's NULL receivedmap: a crash until 814bb08f17 (v3.0.0)."""
    if "v2.12.0" not in TREES or "v3.0.0" not in TREES:
        pytest.skip("needs the v2.12.0 and v3.0.0 trees")
    script = (
        "import sys\n"
        "from recvmap.pymodel.ramblock import Side, TargetPage\n"
        "from recvmap.qemu_ref.loader import load\n"
        "from recvmap.qemu_ref.ram import c_context\n"
        "lib = load(sys.argv[1], bits=64, partial=True)\n"
        "src = c_context(TargetPage.for_target('x86_64'), lib=lib, checked=False,"
        " side=Side.SOURCE)\n"
        "src.ram_block_add('pc.ram', 1 << 20, page_size=4096)\n"
        "print(src.ram_discard_range('pc.ram', 0, 4096))\n"
    )
    codes = {}
    for release in ("v2.12.0", "v3.0.0"):
        lib = build_tree(TREES[release])
        proc = subprocess.run([sys.executable, "-c", script, str(lib)], capture_output=True)
        codes[release] = proc.returncode
    assert codes["v3.0.0"] == 0
    assert codes["v2.12.0"] == -11  # SIGSEGV


@pytest.mark.parametrize(
    ("release", "layers"),
    [
        ("v2.12.0", ["bitmap", "ram"]),
        ("v3.0.0", ["bitmap", "ram", "recovery"]),
        ("v8.2.0", ["bitmap", "ram", "recovery"]),
        ("v10.1.0", ["bitmap", "ram", "recovery"]),
    ],
)
def test_host_driver_layers_follow_the_release(release: str, layers: list[str]) -> None:
    from recvmap.fuzz.subjects.qemu_tree.build import origins
    from recvmap.fuzz.subjects.qemu_tree.command import driver_layers, open_tree

    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    assert driver_layers(origins(open_tree(TREES[release]))) == layers


@pytest.mark.slow
@pytest.mark.parametrize(("release", "host"), [("v2.12.0", "i686"), ("v8.2.0", "s390x")])
def test_tree_ram_code_on_an_emulated_host(release: str, host: str) -> None:
    """QEMU's own ram code cross-built into the replay driver, under qemu-user, at its
    release: programs run (a 32-bit and a big-endian host), none diverges or crashes."""
    from recvmap.fuzz.campaign.hosts import fuzz_host
    from recvmap.fuzz.subjects.hosts import HostPool, host_status

    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    if reason := host_status(host):
        pytest.skip(reason)
    driver = build_tree(TREES[release], host=host)
    s = fuzz_host(
        host, 8, seed=1, layers=("ram",), pool=HostPool({host: Path(driver)}), release=release
    )
    assert s["layers"]["ram"]["programs"] > 0
    assert s["divergence"] is None and s["crashes"] == 0, s


def test_a_hosts_driver_sends_the_map_of_used_length_before_v6_1() -> None:
    """v3.0.0's sender sizes the map by used_length (898ba906cc moved it to postcopy_length
    in v6.1.0): 5 pages used, 1 for postcopy, 4K target pages: 80 bits, 10 bytes rounded up
    to 16, ret 16 + 8. The driver's face gives its sender room for that map (it gave the
    newest rule's 8 bytes: -ENOSPC on i686, a false divergence of every pre-v6.1 tree)."""
    from recvmap.fuzz.subjects.hosts import HostPool, host_status
    from recvmap.fuzz.subjects.remote import driver_context
    from recvmap.pymodel.ramblock import TargetPage

    if "v3.0.0" not in TREES:
        pytest.skip("needs the v3.0.0 tree")
    if reason := host_status("i686"):
        pytest.skip(reason)
    pool = HostPool({"i686": Path(build_tree(TREES["v3.0.0"], host="i686"))})
    try:
        dst = driver_context(pool.driver("i686"), TargetPage.fixed(12), checked=False)
        dst.ram_block_add("pc.ram", 5 * 65536, page_size=65536, postcopy_length=65536)
        dst.ramblock_recv_map_init()
        stream, ret = dst.ramblock_recv_bitmap_send("pc.ram")
    finally:
        pool.kill()
    assert ret == 24
    assert stream[:8] == (16).to_bytes(8, "big") and len(stream) == 32


def test_without_the_parser_the_ram_part_is_left_out_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import recvmap.fuzz.subjects.qemu_tree.extract as extract_mod
    from recvmap.fuzz.subjects.qemu_tree.build import extra_units
    from recvmap.fuzz.subjects.qemu_tree.tree import QemuTree

    def no_parser() -> None:
        raise extract_mod.ExtractError("tree-sitter-c is not installed (the qemu-tree extra)")

    monkeypatch.setattr(extract_mod, "_parser", no_parser)
    extract_mod._index.cache_clear()
    tree = QemuTree.open(TREES[RELEASES[-1]])
    try:
        assert extra_units(tree) == []
        problem = ram_problem(tree.root)
        assert problem is not None and "tree-sitter-c" in str(problem)
    finally:
        extract_mod._index.cache_clear()


@pytest.mark.parametrize("release", ["v2.12.0", "v3.0.0"])
def test_percent_p_of_a_block_at_address_0_never_prints_nil(release: str) -> None:
    """The ABI lets a block sit at host 0 (NULL), but QEMU prints %p only for a start or
    end address that is NOT page-aligned, and 0 is aligned: glibc's "(nil)" cannot appear.
    The start and end messages of a block at 0 (before v5.0.0, 72821d93e0), by the tree
    and by the model at its release, are the hand-written ones."""
    if release not in TREES:
        pytest.skip(f"needs the {release} tree")
    from recvmap.pymodel.ramblock import TargetPage, model_context

    want = [
        (0x800, 0x1000, "ram_block_discard_range: Unaligned start address: 0x800"),
        (0, 0x800, "ram_block_discard_range: Unaligned end address: 0x800"),
    ]
    model = model_context(TargetPage.for_target("x86_64"), release=release)
    for ctx in (_tree_ctx(release), model):
        ctx.ram_block_add("pc.ram", MIB, page_size=4096, host=0)  # type: ignore[attr-defined]
        ctx.ramblock_recv_map_init()  # type: ignore[attr-defined]
        for start, length, text in want:
            assert ctx.ram_discard_range("pc.ram", start, length) == -1  # type: ignore[attr-defined]
            assert ctx.error_log[-1] == text  # type: ignore[attr-defined]
