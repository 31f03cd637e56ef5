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


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The sanitized shared libraries (both widths) and replay drivers."""
    asan = libasan()
    out = tmp_path_factory.mktemp("sanitized")
    src = hosts.source_dir()
    sources = [str(src / f) for f in hosts.SOURCES if (src / f).is_file()]
    libs, drivers = {}, {}
    for name, (bits, flags) in WIDTHS.items():
        lib = out / f"libqemuref{bits}.so"
        cmd = [
            os.environ.get("CC", "gcc"),
            *hosts.CFLAGS,
            *SANITIZE,
            *flags,
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
        libs[bits] = str(lib)
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
out = {"vectors": 0, "divergences": [], "layers": {}}
for path in iter_files([cfg["vectors"]]):
    try:
        cases = load_file(path)
    except VectorError:
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


def test_ctypes_campaign_under_asan_ubsan(builds: dict[str, Any], tmp_path: Path) -> None:
    cfg = {
        "libs": builds["libs"],
        "vectors": str(VECTORS),
        "seed": 5,
        "seconds": SECONDS,
        "out": str(tmp_path),
    }
    env = child_env(
        LD_PRELOAD=builds["asan"],
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
    assert_clean(proc, "ctypes campaign")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    print("ctypes under ASan+UBSan:", summary)
    assert all(v["programs"] > 0 for v in summary["layers"].values())


# --- through the sanitized replay driver ---------------------------------------------------


def test_driver_campaign_under_asan_ubsan(builds: dict[str, Any]) -> None:
    """Vectors and every layer's random programs; a sanitizer report kills the driver,
    which fuzz_host turns into a "crash" divergence carrying the report."""
    executables = {n: Path(p) for n, p in builds["drivers"].items()}
    senders = {LP64_LE: "native", ILP32_LE: "native32"}
    cases = []
    for path in iter_files([VECTORS]):
        try:
            cases += load_file(path)
        except VectorError:
            continue
    ran = 0
    for name in executables:
        subject = hosts.HostSubject(name, hosts.HostPool(executables))
        subject.senders = dict(senders)
        try:
            for case in cases:
                obj = case.program.to_json()
                if obj["bits_per_long"] != subject.layout.bits_per_long:
                    continue
                obj["big_endian"] = False
                if "sender" in obj.get("setup", {}):
                    obj["setup"]["sender"]["big_endian"] = False
                program = Program.from_json(obj)
                if case.test["result"] == "invalid":
                    program = program.with_ops(program.ops[:-1])
                try:
                    first_divergence(program, subject)  # type: ignore[arg-type]
                except DriverError as err:
                    pytest.fail(f"sanitized driver {name} on {case.name}: {err}")
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
        print(f"sanitized driver {name}:", {k: s[k] for k in ("programs", "ops", "layers")})
        assert s["crashes"] == 0, s["divergence"]["description"]
    print(f"{ran} vector runs on the sanitized drivers")


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
