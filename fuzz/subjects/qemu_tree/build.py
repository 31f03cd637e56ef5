# SPDX-License-Identifier: GPL-2.0-or-later
"""Build a QEMU tree's own code, with our glue, into an implementation (cached).

    build_tree(tree, bits=64, host=None) -> Path

returns a shared library exporting the ABI of ``qemu_ref/qemu_ref.h`` (``host`` None: this
machine; load it like any ``--impl`` library) or, with ``host`` (``i686``, ``armhf``,
``s390x``, ``ppc64``; see ``fuzz.subjects.hosts``), the replay driver cross-built for that host
(``qemu_ref/replay.c`` with QEMU's code linked in), to run under qemu-user.

What is compiled (``units(tree)``), each a ``Unit``:
- the tree's ``util/bitmap.c`` and ``util/bitops.c``, unmodified, with the tree's own
  ``include/`` headers, after our ``glue/include`` (its ``qemu/osdep.h`` stands in for
  QEMU's) and the generated ``config-host.h`` (``config_host``: the macros a release
  expects from configure/meson);
- ``wrappers.c``, generated from the ``QREF_API`` lines of ``qemu_ref.h``: an exported
  function with the ABI's name and signature for each ``static inline`` helper of the
  tree's bitops.h/bitmap.h (the unit renames the header's inline functions with
  ``#define set_bit qemu_inline_set_bit`` before including them, so it can export QEMU's
  name), plus our library marker ``qref_bits_per_long``; functions the tree lacks are not
  written, so they are absent from the library;
- ``extra_units(tree)``: the units of ``fuzz/subjects/qemu_tree/ram.py`` when that module
  exists (part 2: QEMU's received-bitmap functions); otherwise the bitmap layer alone.

The cache key is the sha256 of every file a unit reads (its source, each header the
compiler reports with ``-MM``, our glue and generated files), the flags, the compiler's
version and the host. A build happens in a temporary folder inside the cache and is
renamed into place only when it succeeded, so a failed or interrupted build leaves
nothing behind (the folder of a build killed outright is swept by a later build). A unit
that does not compile raises ``BuildError`` with one line: the file and the compiler's
first error (the whole log is ``BuildError.log``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recvmap.qemu_ref.loader import HEADERS, abi, package_file

from .. import hosts
from ..build import cache_dir
from ..hosts import source_dir
from . import ram
from .compiler import CompilerStuck, quoted, run_all, under
from .diagnose import first_error, missing_call
from .tree import BITMAP_HEADER, FREE, IDENTITY, Origin, QemuTree, inventory

FORMAT = "recvmap-qemu-tree-2"  # bump when the way a build is made changes
GLUE = Path(__file__).resolve().parent / "glue"
GLUE_INCLUDE = GLUE / "include"
# QEMU's code as QEMU builds it (gnu11, no strict aliasing, wrapping signed arithmetic);
# its warnings are kept in build.log but never stop a build (an old tree meets new gcc),
# except a call of an undeclared function: the glue lacks something the release calls,
# and the build says which (diagnose.py) instead of leaving it to the loader. Line tables
# (DWARF 4: the linker then names a #line'd file as written) let the linker name a caller.
QEMU_CFLAGS = (
    "-std=gnu11",
    "-O2",
    "-fno-strict-aliasing",
    "-fwrapv",
    "-D_GNU_SOURCE",
    "-Wall",
    "-Werror=implicit-function-declaration",
    "-gdwarf-4",
)
# A shared library links only when every symbol it uses is defined: never a load error.
SHARED_LDFLAGS = ("-shared", "-Wl,-z,defs")
# Our glue is our C: the project's rules. QEMU's headers come in through -isystem there.
GLUE_CFLAGS = ("-std=gnu11", "-O2", "-fwrapv", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror")
BUILD_DIR = "@BUILD@"  # in a unit's flags: the folder of the build (generated headers)
TREE_DIR = "@TREE@"  # in a unit's flags: the tree's root


class BuildError(RuntimeError):
    """A tree could not be built; the message is one line, ``log`` the compiler's output."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Unit:
    """One C translation unit of a tree build.

    ``source`` is compiled as is (a file of the tree or of our glue), or ``text`` is written
    to the build folder as ``NAME.c`` and compiled. ``qemu`` True means QEMU's code (QEMU's
    flags, tree include path); False means our glue (warnings are errors, the tree's
    headers are system headers). ``cflags`` are added for this unit (``@BUILD@`` and
    ``@TREE@`` are replaced by the build folder and the tree root). ``provides`` names the
    ABI functions the unit exports; ``origins`` says where each comes from (for
    ``recvmap qemu-tree``).
    """

    name: str
    source: Path | None = None
    text: str | None = None
    qemu: bool = True
    cflags: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()
    origins: tuple[Origin, ...] = field(default=(), compare=False)


# --- the glue generated per tree ---------------------------------------------------------


def config_host(tree: QemuTree) -> str:
    """The ``config-host.h`` a release expects (what QEMU's configure/meson would write).

    Only the macros the bitmap helpers and their headers test: the host's long width and
    byte order (spelled HOST_WORDS_BIGENDIAN, defined or not, before v7.1.0; HOST_BIG_ENDIAN,
    0 or 1, from v7.1.0, unless the tree's compiler.h already defines them) and the
    byteswap header. Each is computed by the compiler, so one header serves every host.
    """
    compiler_h = tree.text("include/qemu/compiler.h")
    lines = [
        "/* SPDX-License-Identifier: GPL-2.0-or-later */",
        f"/* Generated by recvmap for QEMU {tree.release}: configure's answers. */",
        "#ifndef RECVMAP_CONFIG_HOST_H",
        "#define RECVMAP_CONFIG_HOST_H",
    ]
    if "define HOST_LONG_BITS" not in compiler_h:
        lines.append("#define HOST_LONG_BITS (__SIZEOF_POINTER__ * 8)")
    if tree.release_tuple < (7, 1, 0):
        lines += [
            "#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__",
            "#define HOST_WORDS_BIGENDIAN 1",
            "#endif",
        ]
    elif "define HOST_BIG_ENDIAN" not in compiler_h:
        lines.append("#define HOST_BIG_ENDIAN (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)")
    lines += ["#define CONFIG_BYTESWAP_H 1", "#endif"]
    return "\n".join(lines) + "\n"


_C_TYPES = {"qref_ulong": "unsigned long", "qref_long": "long"}


def c_type(spelling: str) -> str:
    """An ABI type in QEMU's own C: ``const qref_ulong *`` -> ``const unsigned long *``."""
    return re.sub(r"\b(qref_ulong|qref_long)\b", lambda m: _C_TYPES[m[1]], spelling)


def wrappers(tree: QemuTree, origins: Sequence[Origin]) -> str:
    """The wrapper unit: QEMU's ``static inline`` helpers exported under QEMU's names."""
    decls = {d.name: d for d in abi() if d.header == BITMAP_HEADER}
    inline = [o for o in origins if o.kind == "glue" and o.path]
    out = [
        "/* SPDX-License-Identifier: GPL-2.0-or-later */",
        f"/* Generated by recvmap from qemu_ref.h for QEMU {tree.release}: the static inline",
        " * helpers of the tree's bitops.h and bitmap.h, exported with the ABI's names. */",
        '#include "qemu/osdep.h"',
        "",
        "/* The headers' inline functions get other names here, so QEMU's are free. */",
    ]
    out += [f"#define {o.function} qemu_inline_{o.function}" for o in inline]
    out += ['#include "qemu/bitops.h"', '#include "qemu/bitmap.h"', ""]
    out += [f"#undef {o.function}" for o in inline]
    out += ["", '#define RECVMAP_EXPORT __attribute__((visibility("default")))', ""]
    for o in inline:
        d = decls[o.function]
        params = ", ".join(f"{c_type(t)} a{i}" for i, t in enumerate(d.argtypes)) or "void"
        args = ", ".join(f"a{i}" for i in range(len(d.argtypes)))
        ret = c_type(d.restype)
        call = f"qemu_inline_{o.function}({args})"
        body = f"{call};" if ret == "void" else f"return {call};"
        out += [
            f"/* {o.where} */",
            f"RECVMAP_EXPORT {ret} {o.function}({params});",
            f"{ret} {o.function}({params})\n{{\n    {body}\n}}",
            "",
        ]
    out += [
        "/* Not QEMU's: the marker recvmap's loader reads (the word width of this build). */",
        f"RECVMAP_EXPORT int {IDENTITY}(void);",
        f"int {IDENTITY}(void)\n{{\n    return (int)(sizeof(unsigned long) * CHAR_BIT);\n}}",
        "",
        "/* Not QEMU's: frees a map of bitmap_new the way QEMU's callers do (g_free). */",
        f"RECVMAP_EXPORT void {FREE}(unsigned long *map);",
        f"void {FREE}(unsigned long *map)\n{{\n    g_free(map);\n}}",
    ]
    return "\n".join(out) + "\n"


def bitmap_units(tree: QemuTree) -> list[Unit]:
    """The bitmap layer: QEMU's two files as they are, and our wrapper unit."""
    origins = inventory(tree)
    out = []
    for rel in ("util/bitmap.c", "util/bitops.c"):
        mine = tuple(o for o in origins if o.kind == "tree" and o.path == rel)
        out.append(
            Unit(
                Path(rel).stem,
                source=tree.root / rel,
                provides=tuple(o.function for o in mine),
                origins=mine,
            )
        )
    glue = tuple(o for o in origins if o.kind == "glue")
    absent = tuple(o for o in origins if o.kind == "absent")
    out.append(
        Unit(
            "wrappers",
            text=wrappers(tree, origins),
            qemu=False,
            provides=tuple(o.function for o in glue),
            origins=glue + absent,
        )
    )
    return out


def extra_units(tree: QemuTree) -> list[Unit]:
    """The units of part 2 (``ram.extra_units``)."""
    env = ram.BuildEnv(config_host(tree), cache_root(), QEMU_CFLAGS, GLUE_INCLUDE)
    return [Unit(**u) for u in ram.extra_units(tree, env)]


def units(tree: QemuTree) -> list[Unit]:
    return bitmap_units(tree) + extra_units(tree)


def origins(tree: QemuTree) -> list[Origin]:
    """Where every ABI function of a build of ``tree`` comes from (``recvmap qemu-tree``)."""
    found: dict[str, Origin] = {}
    for u in units(tree):
        for o in u.origins:
            found.setdefault(o.function, o)
    return [found.get(d.name, Origin(d.name, "absent")) for d in abi()]


# --- compiling ------------------------------------------------------------------------------


def cache_root() -> Path:
    """Where built trees are kept: the build cache of subjects.build, ``qemu-tree/``."""
    return cache_dir() / "qemu-tree"


@functools.lru_cache(maxsize=8)
def compiler_version(cc: str) -> str:
    if shutil.which(cc) is None:
        raise BuildError(f"compiler {cc} not found")
    proc = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return proc.stdout


def _host(host: str | None) -> tuple[str, tuple[str, ...]]:
    """(compiler, flags) for ``host`` (None: this machine, a shared library)."""
    if host is None:
        return os.environ.get("CC", "gcc"), ("-fPIC",)

    if host not in hosts.HOSTS:
        raise BuildError(f"unknown host {host}; choose from {', '.join(hosts.HOSTS)}")
    h = hosts.HOSTS[host]
    if h.cflags:
        raise BuildError(
            f"host {host} emulates another word width on our C only; QEMU's code has its "
            "host's own unsigned long (32-bit words: --host i686 or armhf)"
        )
    if reason := hosts.host_status(host):
        raise BuildError(f"host {host}: {reason}")
    return h.cc, ("-static",) if h.triplet else ()


def _flags(unit: Unit, tree: QemuTree, build: Path, host_flags: Sequence[str]) -> list[str]:
    base = QEMU_CFLAGS if unit.qemu else GLUE_CFLAGS
    tree_inc = "-I" if unit.qemu else "-isystem"
    own = [f.replace(BUILD_DIR, str(build)).replace(TREE_DIR, str(tree.root)) for f in unit.cflags]
    return [
        *base,
        *host_flags,
        f"-I{GLUE_INCLUDE}",
        f"-I{build}",
        *own,
        tree_inc,
        str(tree.root / "include"),
    ]


def _source(unit: Unit, build: Path) -> Path:
    if unit.source is not None:
        return unit.source
    return build / f"{unit.name}.c"


def _deps(stdout: str) -> list[Path]:
    """The files of a ``-MM`` answer: every file the compiler read but system headers.

    The answer is a make rule: names are separated by blanks, a line ends in ``\\`` when
    it goes on, and a name's own blanks, ``#`` and ``$`` are written ``\\ ``, ``\\#`` and
    ``$$`` (a tree may sit in a folder named ``a b$c``)."""
    text = stdout.replace("\\\n", " ").split(": ", 1)[1] if ": " in stdout else ""
    names: list[str] = []
    name: list[str] = []
    i = 0
    while i < len(text):
        c, nxt = text[i], text[i + 1 : i + 2]
        if (c == "\\" and nxt in (" ", "\t", "#")) or (c == "$" and nxt == "$"):
            name.append(nxt)
            i += 2
            continue
        if c.isspace():
            if name:
                names.append("".join(name))
            name = []
        else:
            name.append(c)
        i += 1
    if name:
        names.append("".join(name))
    return [Path(n) for n in names]


def _dispatch(ref: Path, out: Path, headers: list[Path], only: set[str]) -> None:
    """The replay driver's table (qemu_ref/gen_dispatch.py, run in this process)."""
    spec = importlib.util.spec_from_file_location("recvmap_gen_dispatch", ref / "gen_dispatch.py")
    if spec is None or spec.loader is None:
        raise BuildError(f"{ref / 'gen_dispatch.py'}: cannot be loaded")
    module = sys.modules.get(spec.name)
    if module is None or getattr(module, "__file__", None) != spec.origin:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    try:
        out.write_text(module.generate(headers, only))
    except SystemExit as err:
        raise BuildError(f"gen_dispatch.py failed: {err}") from None


def _problem(log: str, tree: QemuTree, build: Path, mine: Sequence[Path]) -> str:
    """The one line of a failed compile or link (``diagnose``), bounded and quoting only
    the build's own files (``compiler.quoted``), with the build folder's and the tree's
    paths made relative: ``migration/ram.c:3785: ram_load_cleanup calls ...``."""
    found = missing_call(log)
    line = found.text() if found is not None else quoted(first_error(log), mine)
    for base in (build, tree.root):
        line = line.replace(f"{base}/", "").replace(f"{base.resolve()}/", "")
    return line


def _label(path: Path, tree: QemuTree, build: Path) -> str:
    for base, tag in ((build, "build"), (tree.root, "tree"), (GLUE, "glue")):
        try:
            return f"{tag}:{path.resolve().relative_to(base.resolve())}"
        except ValueError:
            continue
    return str(path)


def _where(unit: Unit, tree: QemuTree) -> str:
    if unit.source is None:
        return f"{tree.root} (glue {unit.name}.c)"
    try:
        return f"{tree.root}: {unit.source.relative_to(tree.root)}"
    except ValueError:
        return f"{tree.root} (glue {unit.source.name})"


def _dispatch_headers(provided: set[str]) -> list[Path]:
    """The ABI headers the driver's table is generated from: those a build provides."""
    used = {d.header for d in abi() if d.name in provided}
    return [package_file(h) for h in HEADERS if h in used]


def build_tree(tree: QemuTree | str | Path, bits: int = 64, host: str | None = None) -> Path:
    """Build (or find in the cache) ``tree`` as a library (``host`` None) or a host's driver."""
    if not isinstance(tree, QemuTree):
        tree = QemuTree.open(tree)
    cc, host_flags = _host(host)
    native_bits = 8 * (8 if sys.maxsize > 2**32 else 4)
    if host is None and bits != native_bits:
        raise BuildError(
            f"QEMU's code uses this host's {native_bits}-bit unsigned long; "
            "32-bit words are checked with --host i686 or armhf"
        )
    todo = units(tree)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    sweep(root)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        return _build(tree, todo, cc, host, host_flags, root, tmp)
    except CompilerStuck as err:
        raise BuildError(f"{tree.root}: {err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


STALE = 3600.0  # seconds after which a temporary build folder is an abandoned one


def sweep(root: Path) -> None:
    """Remove the temporary folders of builds that were killed (older than ``STALE``)."""
    for tmp in root.glob(".building-*"):
        try:
            if time.time() - tmp.stat().st_mtime > STALE:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def _build(
    tree: QemuTree,
    todo: list[Unit],
    cc: str,
    host: str | None,
    host_flags: Sequence[str],
    root: Path,
    tmp: Path,
) -> Path:
    (tmp / "config-host.h").write_text(config_host(tree))
    for u in todo:
        if u.text is not None:
            (tmp / f"{u.name}.c").write_text(u.text)
    provided = {n for u in todo for n in u.provides}
    driver = host is not None
    extra: list[tuple[str, str]] = []
    if driver:
        ref = source_dir()
        headers = _dispatch_headers(provided)
        _dispatch(ref, tmp / "qref_dispatch.h", headers, provided)
        extra.append(("gen_dispatch.py", (ref / "gen_dispatch.py").read_text()))
        todo = [
            *todo,
            Unit("replay", source=ref / "replay.c", qemu=False, cflags=(f"-I{ref}",)),
        ]
        extra.append(("replay.c", (ref / "replay.c").read_text()))
    digest = hashlib.sha256()
    for part in (FORMAT, compiler_version(cc), host or "native", *map(repr, extra)):
        digest.update(part.encode() + b"\0")
    plans = [(u, _flags(u, tree, tmp, host_flags), _source(u, tmp)) for u in todo]
    # what a build may read: the tree, its own folder, our glue, our C and headers (the
    # folders our units name with -I)
    named = {f[2:] for _, flags, _ in plans for f in flags if f.startswith("-I") and len(f) > 2}
    mine = [tree.root, tmp, GLUE, *{Path(u.source).parent for u in todo if u.source}]
    mine += [Path(d) for d in sorted(named)]
    scans = run_all([[cc, *flags, "-MM", str(src)] for _, flags, src in plans])
    for (u, flags, _src), (status, stdout, stderr) in zip(plans, scans, strict=True):
        if status:
            where = _where(u, tree)
            raise BuildError(
                f"{where} does not compile: {_problem(stderr, tree, tmp, mine)}", stderr
            )
        deps = _deps(stdout)
        outside = [d for d in deps if not under(d, mine)]
        if outside:
            raise BuildError(
                f"{_where(u, tree)} includes {outside[0]}, a file outside the tree: not built"
            )
        # the folders are placeholders: the same content built from elsewhere is the same key
        text = " ".join(flags).replace(str(tmp), BUILD_DIR).replace(str(tree.root), TREE_DIR)
        digest.update(f"{u.name}\0{text}\0".encode())
        for d in sorted(set(deps), key=str):
            digest.update(_label(d, tree, tmp).encode() + b"\0" + d.read_bytes() + b"\0")
    key = digest.hexdigest()[:24]
    final = root / key
    name = f"qref-replay-{tree.release}" if driver else f"libqemu-{tree.release}-{key[:8]}.so"
    if (final / name).is_file():
        return final / name
    log: list[str] = []
    objects = [str(tmp / f"{u.name}.o") for u, _, _ in plans]
    jobs = zip(plans, objects, strict=True)
    compiled = run_all([[cc, *flags, "-c", str(src), "-o", obj] for (_, flags, src), obj in jobs])
    for (u, _, _), (status, _, stderr) in zip(plans, compiled, strict=True):
        log.append(f"== {u.name}\n{stderr}")
        if status:
            where = _where(u, tree)
            raise BuildError(
                f"{where} does not compile: {_problem(stderr, tree, tmp, mine)}", stderr
            )
    kind = () if driver else SHARED_LDFLAGS
    link = [cc, *kind, *host_flags, "-pthread", "-o", str(tmp / name), *objects]
    status, _, stderr = run_all([link])[0]
    log.append(f"== link\n{stderr}")
    if status:
        problem = _problem(stderr, tree, tmp, mine)
        raise BuildError(f"{tree.root}: does not link: {problem}", stderr)
    (tmp / "build.log").write_text("\n".join(log))
    (tmp / "TREE").write_text(f"{tree.root}\n{tree.release}\n")
    for o in objects:
        os.unlink(o)
    try:
        os.rename(tmp, final)  # atomic: the folder appears complete or not at all
    except OSError:
        if not (final / name).is_file():  # not another process's identical build
            raise
    tmp.mkdir(exist_ok=True)  # the caller removes it
    return final / name


def release_of(path: str | Path) -> str:
    """The release of the tree at ``path`` (``QemuTree.open(path).release``)."""
    return QemuTree.open(path).release


__all__ = [
    "BuildError",
    "Unit",
    "build_tree",
    "config_host",
    "extra_units",
    "origins",
    "release_of",
    "units",
]
