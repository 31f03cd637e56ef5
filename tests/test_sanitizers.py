# SPDX-License-Identifier: GPL-2.0-or-later
"""The C reference under AddressSanitizer, UndefinedBehaviorSanitizer and LeakSanitizer.

The library is rebuilt with ``-fsanitize=address,undefined -fno-sanitize-recover=undefined``
(gcc, into a temporary directory) and driven two ways, both in child processes so a report
cannot take pytest down:
- through ctypes, in a Python started with ``LD_PRELOAD`` of gcc's libasan (and
  ``PYTHONMALLOC=malloc``, so ctypes buffers get redzones): the regression vectors, then a
  short random campaign of every layer;
- through the replay driver built with the same flags, where every array is its own exact
  ``calloc`` (the tightest bounds): vectors and a campaign again, and LeakSanitizer over
  many ramblock_recv_map_init / ram_load_cleanup and ram_list_init_bitmaps /
  ram_save_cleanup cycles, with a control run that skips one cleanup and must leak.
Any sanitizer report fails the test. RECVMAP_SANITIZER_SECONDS sets each campaign (4 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from recvmap.fuzz.campaign import hosts as host_campaign
from recvmap.fuzz.engine import first_divergence
from recvmap.fuzz.program import Program
from recvmap.fuzz.subjects import hosts
from recvmap.fuzz.subjects.remote import DriverError
from recvmap.fuzz.vectors.files import VectorError, iter_files, load_file
from recvmap.pymodel.words import ILP32_LE, LP64_LE

SANITIZE = (
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fno-omit-frame-pointer",
    "-g",
    "-O1",
)
SECONDS = float(os.environ.get("RECVMAP_SANITIZER_SECONDS", "4"))
VECTORS = Path(__file__).parent / "vectors"
REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
WIDTHS = {"native": (64, ()), "native32": (32, ("-DQREF_BITS_PER_LONG=32",))}
OTHER_SCHEMA = {"recovery_stream_v1.json"}  # the golden streams (test_hosts replays them)


def libasan() -> str:
    gcc = shutil.which(os.environ.get("CC", "gcc"))
    if gcc is None or sys.platform != "linux":
        pytest.skip("gcc on Linux is needed for the sanitizer builds")
    path = subprocess.run(
        [gcc, "-print-file-name=libasan.so"], capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        pytest.skip("gcc has no libasan.so (install libasan or gcc's sanitizer runtime)")
    return path


def build_lib(src: Path, bits: int, out: Path) -> str:
    """The C reference of ``src`` as a sanitized shared library of ``bits``-bit words."""
    sources = [str(src / f) for f in hosts.SOURCES if (src / f).is_file()]
    out.mkdir(parents=True, exist_ok=True)
    lib = out / f"libqemuref{bits}.so"
    cmd = [
        os.environ.get("CC", "gcc"),
        *hosts.CFLAGS,
        *SANITIZE,
        *WIDTHS["native" if bits == 64 else "native32"][1],
        "-shared",
        "-fPIC",
        "-fvisibility=hidden",
        f"-I{src}",
        *sources,
        "-o",
        str(lib),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(lib)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sanitized shared libraries (both widths) and replay drivers."""
    asan = libasan()
    out = tmp_path_factory.mktemp("sanitized")
    src = hosts.source_dir()
    libs, drivers = {}, {}
    for name, (bits, _) in WIDTHS.items():
        libs[bits] = build_lib(src, bits, out)
        drivers[name] = hosts.build(name, hosts.DRIVER, SANITIZE, out_dir=out / name)
    return {"asan": asan, "libs": libs, "drivers": drivers, "dir": out}


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    env.update(extra)
    return env


def assert_clean(proc: subprocess.CompletedProcess[str], what: str) -> None:
    found = [r for r in REPORTS if r in proc.stderr]
    assert proc.returncode == 0 and not found, (
        f"{what}: exit {proc.returncode}, {found or 'no sanitizer report'}\n"
        f"{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}"
    )


# --- through ctypes, with libasan preloaded -------------------------------------------------

CTYPES_CHILD = """
import json, random, sys, time
from pathlib import Path
from recvmap.fuzz.campaign.harness import Harness
from recvmap.fuzz.engine import first_divergence
from recvmap.fuzz.subjects.impls import Subject
from recvmap.fuzz.program import Program
from recvmap.fuzz.subjects.remote import DriverError
from recvmap.fuzz.vectors.files import VectorError, iter_files, load_file
from recvmap.qemu_ref import load

cfg = json.loads(sys.argv[1])
subject = Subject(libraries={int(b): load(p, int(b)) for b, p in cfg["libs"].items()})
out = {"vectors": 0, "divergences": [], "layers": {}, "other_schema": []}
for path in iter_files([cfg["vectors"]]):
    try:
        cases = load_file(path)
    except VectorError:
        out["other_schema"].append(path.name)
        continue
    for case in cases:
        obj = case.program.to_json()
        obj["big_endian"] = False  # initial words are values: the same program here
        if "sender" in obj.get("setup", {}):
            obj["setup"]["sender"]["big_endian"] = False
        program = Program.from_json(obj)
        if case.test["result"] == "invalid":
            program = program.with_ops(program.ops[:-1])
        _, divergence = first_divergence(program, subject)
        out["vectors"] += 1
        if divergence is not None:
            out["divergences"].append(f"{case.name}: {divergence.describe()}")
rng = random.Random(cfg["seed"])
for layer in ("bitmap", "ram", "recovery"):
    h = Harness(layer, subject, out_dir=cfg["out"], keep_going=True)
    end = time.monotonic() + cfg["seconds"]
    while time.monotonic() < end:
        h.one_input(rng.randbytes(rng.randrange(8, 400)))
    out["layers"][layer] = {"programs": h.programs, "ops": h.ops, "diverging": h.divergences}
print(json.dumps(out))
"""


def ctypes_campaign(
    asan: str, libs: dict[int, str], out: Path, seconds: float
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The vectors and a random campaign (fixed seed 5) on ``libs``, in a child process."""
    cfg = {"libs": libs, "vectors": str(VECTORS), "seed": 5, "seconds": seconds, "out": str(out)}
    env = child_env(
        LD_PRELOAD=asan,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",  # Python itself keeps memory
        PYTHONMALLOC="malloc",
    )
    proc = subprocess.run(
        [sys.executable, "-c", CTYPES_CHILD, json.dumps(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = proc.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if proc.returncode == 0 and lines else {}
    return proc, summary


def campaign_problems(summary: dict[str, Any]) -> list[str]:
    """Every way the ctypes campaign can fail besides a sanitizer report."""
    problems = list(summary["divergences"])
    if set(summary["other_schema"]) - OTHER_SCHEMA:
        problems.append(f"vector files that do not load: {summary['other_schema']}")
    if summary["vectors"] == 0:
        problems.append("no vector ran")
    for layer, v in summary["layers"].items():
        if v["programs"] == 0:
            problems.append(f"{layer}: no random program ran")
        if v["diverging"]:
            problems.append(f"{layer}: {v['diverging']} random programs diverge (seed 5)")
    return problems


@pytest.mark.slow
def test_ctypes_campaign_under_asan_ubsan(builds: dict[str, Any], tmp_path: Path) -> None:
    proc, summary = ctypes_campaign(builds["asan"], builds["libs"], tmp_path, SECONDS)
    assert_clean(proc, "ctypes campaign")
    print("ctypes under ASan+UBSan (seed 5):", summary)
    problems = campaign_problems(summary)
    assert problems == [], "\n".join(problems[:20])


# --- through the sanitized replay driver ---------------------------------------------------


@pytest.mark.slow
def test_driver_campaign_under_asan_ubsan(builds: dict[str, Any]) -> None:
    """Vectors and every layer's random programs; a sanitizer report kills the driver,
    which fuzz_host turns into a "crash" divergence carrying the report."""
    executables = {n: Path(p) for n, p in builds["drivers"].items()}
    senders = {LP64_LE: "native", ILP32_LE: "native32"}
    cases, other = [], set()
    for path in iter_files([VECTORS]):
        try:
            cases += load_file(path)
        except VectorError:
            other.add(path.name)
    # a driver cannot allocate: the vectors of bitmap_new and bitmap_zero_extend run under
    # the sanitizers through ctypes (the first way above), not here
    cases = [c for c in cases if all(a.alloc is None for a in c.program.arrays)]
    assert other <= OTHER_SCHEMA, f"vector files that do not load: {other - OTHER_SCHEMA}"
    ran = 0
    diverged: list[str] = []
    for name in executables:
        subject = hosts.HostSubject(name, hosts.HostPool(executables))
        subject.senders = dict(senders)
        try:
            for case in cases:
                obj = case.program.to_json()
                if obj["bits_per_long"] != subject.layout.bits_per_long:
                    continue  # the other driver has this width (every case runs once)
                obj["big_endian"] = False
                if "sender" in obj.get("setup", {}):
                    obj["setup"]["sender"]["big_endian"] = False
                program = Program.from_json(obj)
                if case.test["result"] == "invalid":
                    program = program.with_ops(program.ops[:-1])
                try:
                    _, divergence = first_divergence(program, subject)  # type: ignore[arg-type]
                except DriverError as err:
                    pytest.fail(f"sanitized driver {name} on {case.name}: {err}")
                if divergence is not None:
                    diverged.append(f"{name}: {case.name}: {divergence.describe()}")
                ran += 1
        finally:
            subject.close()
        s = host_campaign.fuzz_host(
            name,
            SECONDS,
            seed=11,
            keep_going=True,
            pool=hosts.HostPool(executables),
            senders=senders,
        )
        print(
            f"sanitized driver {name} (seed 11):",
            {k: s[k] for k in ("programs", "ops", "layers")},
        )
        assert s["crashes"] == 0, s["divergence"]["description"]
        assert s["divergence"] is None, f"{name} (seed 11): {s['divergence']['description']}"
        assert all(v["programs"] > 0 for v in s["layers"].values()), s
    print(f"{ran} vector runs on the sanitized drivers")
    assert ran == len(cases), f"{len(cases) - ran} vectors ran on no sanitized driver"
    assert diverged == [], "\n".join(diverged[:20])


def _cycles(cycles: int, skip_cleanup_at: int | None = None) -> str:
    """Driver lines: blocks, then init/set/cleanup on both sides, ``cycles`` times."""
    lines = ["call qref_set_target_page_bits 12"]
    for c in range(cycles):
        lines += [
            "reset",
            f"block ${b'pc.ram'.hex()} {0x7F0000000000} {64 << 12} {96 << 12} {64 << 12} 4096 1 0",
            f"block ${b'vga.vram'.hex()} {0x7F0001000000} {8 << 12} {8 << 12} {8 << 12} 4096 1 0",
            f"block ${b'rom'.hex()} {0x7F0002000000} {4 << 12} {4 << 12} {4 << 12} 4096 0 0",
            "list #0 #1 #2",
            "call ramblock_recv_map_init #3",
            f"call ramblock_recv_bitmap_set_range #0 {0x7F0000000000 + (3 << 12)} 40",
            f"call ram_discard_range #3 ${b'pc.ram'.hex()} 0 8192",
            "new 64",
            f"call ramblock_recv_bitmap_send #3 ${b'pc.ram'.hex()} @0 64",
        ]
        if c != skip_cleanup_at:
            lines += ["call ram_load_cleanup #3", "call ram_load_cleanup #3"]  # twice: harmless
        lines += [
            "call ram_list_init_bitmaps #3",
            "call ram_dirty_bitmap_reload #0 @0 24",
            "call ram_save_cleanup #3",
        ]
    return "\n".join([*lines, "reset", "quit"]) + "\n"


@pytest.mark.parametrize("name", list(WIDTHS))
def test_no_leak_across_init_cleanup_cycles(builds: dict[str, Any], name: str) -> None:
    exe = str(builds["drivers"][name])
    env = child_env(ASAN_OPTIONS="detect_leaks=1")
    proc = subprocess.run(
        [exe], input=_cycles(50), capture_output=True, text=True, env=env, timeout=120
    )
    assert_clean(proc, f"{name}: 50 init/cleanup cycles")
    assert "err" not in proc.stdout, proc.stdout
    # the control: one cycle without ram_load_cleanup must be reported as a leak
    proc = subprocess.run(
        [exe],
        input=_cycles(3, skip_cleanup_at=1),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0 and "detected memory leaks" in proc.stderr, proc.stderr[-3000:]


# --- teeth: planted bugs are reported (the clean builds above are the controls) -------------

COUNT_LOOP = "    for (k = 0; k < lim; k++) {\n        count += word_ctpop(map[k]);\n"
PLANTS = {
    # bitmap_count_one reads one word past the end of its array
    "asan": (COUNT_LOOP, COUNT_LOOP.replace("k < lim", "k <= lim"), "ERROR: AddressSanitizer"),
    # ... or shifts a word by its own width (undefined behaviour)
    "ubsan": (
        COUNT_LOOP,
        COUNT_LOOP.replace(
            "count += word_ctpop(map[k]);",
            "volatile int w = QREF_BITS_PER_LONG;\n        count += word_ctpop(map[k] >> w);",
        ),
        "runtime error: shift exponent",
    ),
    # bitmap_complement leaves the tail of the last word set: a divergence, no report
    "divergence": (
        "dst[k] = ~src[k] & BITMAP_LAST_WORD_MASK(nbits);",
        "dst[k] = ~src[k];",
        "",
    ),
}


# Two words (16 bytes): ctypes would keep such an array inside its Python object, where a
# read past the end hits no redzone; the loader gives every array its own calloc'd block.
COUNT_CHILD = """
import sys
from recvmap.qemu_ref import load
lib = load(sys.argv[1], int(sys.argv[2]))
w = lib.words(2)
lib.bitmap_set(w, 0, int(sys.argv[2]) + 6)
print(lib.bitmap_count_one(w, 2 * int(sys.argv[2])))
"""


def ctypes_count(asan: str, lib: str, bits: int) -> subprocess.CompletedProcess[str]:
    env = child_env(LD_PRELOAD=asan, ASAN_OPTIONS="detect_leaks=0", PYTHONMALLOC="malloc")
    return subprocess.run(
        [sys.executable, "-c", COUNT_CHILD, lib, str(bits)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def driver_count(exe: Path, bits: int) -> subprocess.CompletedProcess[str]:
    lines = [
        f"new {2 * bits // 8}",
        "word 0 0 -1",
        "word 0 1 0x3f",
        f"call bitmap_count_one @0 {2 * bits}",
    ]
    return subprocess.run(
        [str(exe)],
        input="\n".join([*lines, "quit"]) + "\n",
        capture_output=True,
        text=True,
        env=child_env(ASAN_OPTIONS="detect_leaks=0"),
        timeout=120,
    )


@pytest.mark.parametrize("plant", ["asan", "ubsan"])
def test_a_planted_bug_is_reported_through_ctypes(
    builds: dict[str, Any], tmp_path: Path, plant_c: Any, plant: str
) -> None:
    old, new, report = PLANTS[plant]
    control = ctypes_count(builds["asan"], builds["libs"][64], 64)
    assert_clean(control, "control: bitmap_count_one on the clean build")
    assert control.stdout.split() == ["70"]
    lib = build_lib(plant_c("bitmap.c", old, new), 64, tmp_path / "lib")
    proc = ctypes_count(builds["asan"], lib, 64)
    assert proc.returncode != 0 and report in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("plant", ["asan", "ubsan"])
@pytest.mark.parametrize("name", list(WIDTHS))
def test_a_planted_bug_is_reported_by_the_driver(
    builds: dict[str, Any], tmp_path: Path, plant_c: Any, plant: str, name: str
) -> None:
    old, new, report = PLANTS[plant]
    bits = WIDTHS[name][0]
    control = driver_count(Path(builds["drivers"][name]), bits)
    assert_clean(control, f"control: {name} driver")
    assert control.stdout.split()[-2:] == ["s", str(bits + 6)], control.stdout
    src = plant_c("bitmap.c", old, new)
    exe = hosts.build(name, hosts.DRIVER, SANITIZE, out_dir=tmp_path / name, src=src)
    proc = driver_count(exe, bits)
    assert proc.returncode != 0 and report in proc.stderr, proc.stderr[-3000:]


def test_the_ctypes_campaign_fails_on_a_divergence(
    builds: dict[str, Any], tmp_path: Path, plant_c: Any
) -> None:
    """A C bug that no sanitizer sees: the campaign must fail on the diverging vectors."""
    old, new, _ = PLANTS["divergence"]
    src = plant_c("bitmap.c", old, new)
    libs = {bits: build_lib(src, bits, tmp_path / "lib") for bits in (64, 32)}
    proc, summary = ctypes_campaign(builds["asan"], libs, tmp_path, 0.5)
    assert_clean(proc, "ctypes campaign on the diverging build")
    problems = campaign_problems(summary)
    assert any("bitmap_complement" in p for p in problems), problems
