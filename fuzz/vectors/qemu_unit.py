# SPDX-License-Identifier: GPL-2.0-or-later
"""The bitmap-layer vectors as a GTest unit test for QEMU's own test tree.

``recvmap vectors export --qemu-unit-test FILE.c [--release vX.Y.Z]`` writes one C file in
the style of QEMU's tests/unit/test-bitmap.c: it includes ``qemu/osdep.h`` and QEMU's
bitmap headers, has one test function per vector group (``g_test_add_func``), and spells
every program out as plain C: the initial words of each array, the calls, the expected
return values and, after the program, the expected words of every array as C arrays. It
needs nothing of recvmap at run time; a QEMU developer adds it to tests/unit/meson.build
(``'test-recvmap-vectors': []`` next to ``'test-bitmap': []``) and runs ``make check-unit``.

An array the implementation allocates (``alloc``) is made with QEMU's ``bitmap_new`` or
``bitmap_new`` and ``bitmap_zero_extend`` and checked at once, then freed with g_free.
Each comparison goes through ``recvmap_check_words``, which names the first differing
word before the assertion fails: ``bitmap-classes.json#25 @8: word 0: expected 0x...,
actual 0x...``.

What is expected is the vector's: every test is first checked against the model (results
and memory digests, ``files.check_model``); the expected words are the model's memory image
after the program read back as words, so they are exactly what the vector's sha256
digests describe. A group runs only on a host with its word width and byte order (C
``#if`` on ``ULONG_MAX`` and ``__BYTE_ORDER__``), since expected words of ``bitmap_to_le``
differ by byte order. An ``invalid`` test's last operation is outside QEMU's domain (QEMU
asserts): the C test stops before it.

``--release`` picks what that QEMU release has: a vector is written when its group's release
range holds the release (``recvmap.pymodel.releases``: e.g. ``bitmap_count_one(map, 0)``
before v4.0.0 is another group) and the release has every function it calls; its
expectations are the model's at that release. The default is the newest release.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recvmap.pymodel.errors import PreconditionError
from recvmap.pymodel.releases import Release, ReleaseError, parse_release, require
from recvmap.qemu_ref.loader import abi

from ..engine import model_run
from ..program import ArraySpec, Ref
from .files import Case, check_model, iter_files, load_file, vectors_dir


class ExportError(ValueError):
    """A release or vector that cannot be exported; one line."""


def parse(release: str | None) -> Release:
    """The QEMU release asked for (None: the newest the model knows)."""
    try:
        return parse_release(release)
    except PreconditionError as err:
        raise ExportError(f"--release {release}: {err.rule}") from None


def release_excludes(case: Case, release: Release) -> str | None:
    """Why ``case`` is not a test for ``release`` (None: it is)."""
    if not case.covers(release.rules):
        return f"its group holds at {case.group.get('release')}, not at {release}"
    for op in case.program.ops:
        try:
            require(op.name, release)
        except ReleaseError as err:
            return err.rule
    return None


# --- C spelling -----------------------------------------------------------------------------

_C_TYPE = {
    "qref_ulong": "unsigned long",
    "qref_long": "long",
    "int": "int",
    "bool": "bool",
    "int64_t": "int64_t",
    "uint64_t": "uint64_t",
    "uint32_t": "uint32_t",
    "size_t": "size_t",
}


def c_int(value: int, ctype: str) -> str:
    """An integer literal of C type ``ctype`` (no literal overflows, any width)."""
    if value < -(1 << 62):
        return f"({ctype})(-{-value - 1:#x}LL - 1)"
    if value < 0:
        return f"({ctype})-{-value}LL"
    return f"({ctype}){value:#x}ULL" if value > 9 else f"({ctype}){value}"


def _signatures() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {d.name: (d.restype, d.argtypes) for d in abi() if d.header == "qemu_ref.h"}


@dataclass
class CTest:
    """One vector as C statements (inside its group's function)."""

    case: Case
    lines: list[str]


def _words(image: bytes, bits: int, big_endian: bool) -> list[int]:
    size = bits // 8
    order = "big" if big_endian else "little"
    return [int.from_bytes(image[i : i + size], order) for i in range(0, len(image), size)]


def c_test(case: Case, sigs: dict[str, tuple[str, tuple[str, ...]]], release: Release) -> CTest:
    problem = check_model(case, release)
    if problem is not None:
        raise ExportError(f"{case.name}: the model disagrees with the vector: {problem}")
    program = case.program
    if case.test["result"] == "invalid":
        program = program.with_ops(program.ops[:-1])  # QEMU asserts on the last one
    run = model_run(program, release)
    assert run.rejected is None
    bits = program.layout.bits_per_long
    ind = "        "
    comment = str(case.test["comment"]).replace("*/", "* /")
    out = [f"    /* {case.name}: {comment} */", "    {"]
    out.append(f'{ind}g_test_message("{case.name}");')
    allocated = []
    for k, spec in enumerate(program.arrays):
        if spec.alloc is not None:
            out += _allocation(k, spec, ind)
            allocated.append(k)
            continue
        init = ", ".join(
            f"[{i}] = {c_int(v, 'unsigned long')}" for i, v in sorted(spec.words.items())
        )
        out.append(f"{ind}unsigned long a{k}[{spec.nwords}] = {{ {init or '0'} }};")
    for i, (op, result) in enumerate(zip(program.ops, run.results, strict=True)):
        if op.name not in sigs:
            raise ExportError(f"{case.name}: {op.name} is not a function of qemu_ref.h")
        restype, argtypes = sigs[op.name]
        args = []
        for a, t in zip(op.args, argtypes, strict=True):
            if isinstance(a, Ref):
                args.append(f"a{a.index}")
            elif isinstance(a, int):
                args.append(c_int(a, _C_TYPE[t.strip()]))
            else:
                raise ExportError(f"{case.name}: op #{i}: argument {a!r} is no bitmap argument")
        call = f"{op.name}({', '.join(args)})"
        if restype == "void":
            out.append(f"{ind}{call};")
        elif isinstance(result, bool) or restype in ("int", "bool", "qref_long"):
            out.append(f"{ind}g_assert_cmpint({call}, ==, {int(result)});")
        else:
            out.append(f"{ind}g_assert_cmpuint({call}, ==, {c_int(int(result), 'guint64')});")
    for k in range(len(program.arrays)):
        image = run.images[f"@{k}"]
        assert image is not None
        words = _words(image, bits, program.layout.big_endian)
        out += _expect(f"a{k}", f"e{k}", words, f"{case.name} @{k}", ind)
    out += [f"{ind}g_free(a{k});" for k in allocated]
    out.append("    }")
    return CTest(case, out)


def _expect(array: str, name: str, words: list[int], what: str, ind: str) -> list[str]:
    """C lines that compare ``array`` with the expected ``words`` (first differing word
    named by CHECK_WORDS)."""
    expected = ", ".join(c_int(w, "unsigned long") for w in words)
    return [
        f"{ind}{{",
        f"{ind}    static const unsigned long {name}[{len(words)}] = {{ {expected} }};",
        f'{ind}    recvmap_check_words("{what}", {array}, {name}, {len(words)});',
        f"{ind}}}",
    ]


def _allocation(k: int, spec: ArraySpec, ind: str) -> list[str]:
    """C lines allocating array ``k`` as its ``alloc`` says (bitmap_new, or bitmap_new with
    the old words then bitmap_zero_extend; NULL for 0 old bits, as QEMU's callers pass it),
    and the check that the new words are the vector's."""
    a = spec.alloc
    assert a is not None
    name = f"a{k}"
    if a.old_nbits is None:
        out = [f"{ind}unsigned long *{name} = bitmap_new({c_int(a.nbits, 'long')});"]
    else:
        old = "NULL" if not a.old_nbits else f"bitmap_new({c_int(a.old_nbits, 'long')})"
        out = [f"{ind}unsigned long *{name} = {old};"]
        out += [
            f"{ind}{name}[{i}] = {c_int(v, 'unsigned long')};" for i, v in sorted(a.old.items())
        ]
        out.append(
            f"{ind}{name} = bitmap_zero_extend({name}, {c_int(a.old_nbits, 'long')}, "
            f"{c_int(a.nbits, 'long')});"
        )
    words = [spec.words.get(i, 0) for i in range(spec.nwords)]
    return out + _expect(name, f"n{k}", words, f"allocated @{k}", ind)


CHECK_WORDS = """\
/* The first word of have[] that is not want[]: its index, both words, then the assert. */
static void recvmap_check_words(const char *what, const unsigned long *have,
                                const unsigned long *want, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (have[i] != want[i]) {
            g_test_message("%s: word %zu: expected 0x%lx, actual 0x%lx", what, i,
                           want[i], have[i]);
            g_assert_cmphex(have[i], ==, want[i]);
        }
    }
}
"""


def _ident(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")


def _host_condition(bits: int, big_endian: bool) -> str:
    width = "0xffffffffffffffffUL" if bits == 64 else "0xffffffffUL"
    order = "__ORDER_BIG_ENDIAN__" if big_endian else "__ORDER_LITTLE_ENDIAN__"
    return f"ULONG_MAX == {width} && __BYTE_ORDER__ == {order}"


@dataclass
class Export:
    text: str
    tests: int
    groups: int
    left_out: list[str]


def bitmap_cases(paths: Iterable[Path] | None = None) -> list[Case]:
    cases: list[Case] = []
    for path in iter_files(list(paths) if paths is not None else [vectors_dir()]):
        cases += [c for c in load_file(path) if c.group.get("layer") == "bitmap"]
    return cases


def qemu_unit_test(release: str | None = None, cases: list[Case] | None = None) -> Export:
    """The C text of the unit test for ``release`` (default: the newest)."""
    rel = parse(release)
    sigs = _signatures()
    groups: dict[tuple[str, int, bool], list[CTest]] = {}
    left_out: list[str] = []
    for case in bitmap_cases() if cases is None else cases:
        program = case.program
        why = release_excludes(case, rel)
        if why is not None:
            left_out.append(f"{case.name}: {why}")
            continue
        if case.test["result"] == "invalid" and len(program.ops) <= 1:
            left_out.append(f"{case.name}: only an operation outside QEMU's domain")
            continue
        key = (case.path.stem, program.layout.bits_per_long, program.layout.big_endian)
        groups.setdefault(key, []).append(c_test(case, sigs, rel))
    lines = [
        "/* SPDX-License-Identifier: GPL-2.0-or-later */",
        "/*",
        f" * recvmap's regression vectors for QEMU's bitmap helpers, for QEMU {rel}.",
        " * Generated by `recvmap vectors export --qemu-unit-test` from the",
        " * recvmap-vectors-v1 files; each vector's expected results and memory were checked",
        " * against recvmap's model of include/qemu/bitops.h, include/qemu/bitmap.h and",
        " * util/bitmap.c before they were written here. Add it to tests/unit/meson.build",
        " * like test-bitmap. A group runs on hosts with its word width and byte order.",
        " */",
        "",
        '#include "qemu/osdep.h"',
        '#include "qemu/bitops.h"',
        '#include "qemu/bitmap.h"',
        "",
        *CHECK_WORDS.splitlines(),
        "",
    ]
    registrations = []
    count = 0
    for (stem, bits, big), tests in groups.items():
        tag = f"{bits}{'be' if big else 'le'}"
        fn = f"test_{_ident(stem)}_{tag}"
        cond = _host_condition(bits, big)
        lines += [f"#if {cond}", f"static void {fn}(void)", "{"]
        for t in tests:
            lines += t.lines
        lines += ["}", "#endif", ""]
        registrations += [
            f"#if {cond}",
            f'    g_test_add_func("/recvmap/{stem}/{tag}", {fn});',
            "#endif",
        ]
        count += len(tests)
    lines += [
        "int main(int argc, char **argv)",
        "{",
        "    g_test_init(&argc, &argv, NULL);",
        *registrations,
        "    return g_test_run();",
        "}",
    ]
    return Export("\n".join(lines) + "\n", count, len(groups), left_out)


def write_qemu_unit_test(path: Path, release: str | None = None) -> Export:
    export = qemu_unit_test(release)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(export.text)
    return export


def summary(export: Export, path: Path, release: str) -> list[str]:
    out = [
        f"{path}: {export.tests} tests in {export.groups} groups for QEMU {release} "
        f"(GTest; add it to tests/unit/meson.build)"
    ]
    out += [f"  left out {why}" for why in export.left_out]
    return out
