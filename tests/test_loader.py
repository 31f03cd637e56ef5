# SPDX-License-Identifier: GPL-2.0-or-later
"""The ctypes loader: finds our libraries, honours RECVMAP_LIB, names what is wrong."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recvmap.fuzz.subjects.build import build_library
from recvmap.qemu_ref import LibraryError, abi, load
from recvmap.qemu_ref.loader import parse_header


def test_every_header_declaration_is_exported_by_both_libraries() -> None:
    names = {d.name for d in abi()}
    assert {"bitmap_set", "find_next_bit", "bitmap_copy_with_dst_offset"} <= names
    for bits in (64, 32):
        lib = load(bits=bits)
        assert lib.missing == [] and set(lib) == names
        assert lib.cdll.qref_bits_per_long() == bits


def test_argtypes_follow_the_word_width() -> None:
    fn64, fn32 = load(bits=64).find_next_bit, load(bits=32).find_next_bit
    assert fn64.restype is ctypes.c_uint64 and fn32.restype is ctypes.c_uint32
    assert fn64.argtypes[1] is ctypes.c_uint64 and fn32.argtypes[1] is ctypes.c_uint32


def test_parse_header_reads_qref_api_lines_only() -> None:
    text = (
        "/* QREF_API void not_this(void); */\n"
        "QREF_API qref_ulong find_last_bit(const qref_ulong *addr, qref_ulong size);\n"
        "QREF_API int qref_bits_per_long(void);\n"
        "static void hidden(int x);\n"
    )
    decls = parse_header(text)
    assert [(d.name, d.restype, d.argtypes) for d in decls] == [
        ("find_last_bit", "qref_ulong", ("const qref_ulong *", "qref_ulong")),
        ("qref_bits_per_long", "int", ()),
    ]


def test_environment_variable_selects_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    path = load(bits=32).path
    monkeypatch.setenv("RECVMAP_LIB", str(path))
    assert load(bits=32).path == path


def test_wrong_word_width_is_named() -> None:
    with pytest.raises(LibraryError, match="built for 32-bit words, loaded as 64-bit"):
        load(load(bits=32).path, bits=64)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(LibraryError, match="no such library file"):
        load(tmp_path / "nope.so")


def test_not_a_library_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(LibraryError, match="cannot load"):
        load(bogus)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_unrelated_library_is_named(tmp_path: Path) -> None:
    src = tmp_path / "x.c"
    src.write_text("int unrelated(void) { return 1; }\n")
    lib = tmp_path / "libx.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    with pytest.raises(LibraryError, match="exports none of QEMU's bitmap symbols"):
        load(lib, partial=True)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_missing_symbols_are_listed_by_name() -> None:
    path = build_library(64, {"bitops.c": [("void change_bit(", "void renamed_change_bit(")]})
    with pytest.raises(LibraryError, match="missing symbols: change_bit"):
        load(path)
    partial = load(path, partial=True)
    assert partial.missing == ["change_bit"] and not partial.has("change_bit")


def test_installed_package_finds_library_without_source_tree(tmp_path: Path) -> None:
    """importlib.resources, not __file__: works from any working directory."""
    code = "from recvmap.qemu_ref import load; print(load(bits=64).path.name)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "libqemuref64.so"


def test_frozen_bundle_layout_is_found_without_importlib_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PyInstaller bundle (ClusterFuzzLite's fuzzers) unpacks the package's files under
    sys._MEIPASS/recvmap/qemu_ref; when importlib.resources serves nothing there (a frozen
    importer without resource support), the loader still finds the libraries and headers."""
    from recvmap.qemu_ref import loader

    unpacked = tmp_path / "_MEI" / "recvmap" / "qemu_ref"
    unpacked.mkdir(parents=True)
    for name in (*loader.HEADERS, "libqemuref64.so"):
        shutil.copy2(loader.package_file(name), unpacked / name)
    monkeypatch.setattr(loader.resources, "files", lambda package: tmp_path / "served-nothing")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "_MEI"), raising=False)
    assert loader.package_file("qemu_ref.h") == unpacked / "qemu_ref.h"
    lib = load(bits=64)
    assert lib.path == unpacked / "libqemuref64.so"
    words = lib.words(2)
    lib.bitmap_set(words, 62, 4)
    assert words.image() == bytes([0] * 7 + [0xC0, 0x03] + [0] * 7)
    monkeypatch.delattr(sys, "_MEIPASS")  # not frozen: the missing file is named, not guessed
    with pytest.raises(LibraryError, match="served-nothing"):
        load(bits=64)
