# SPDX-License-Identifier: GPL-2.0-or-later
"""Native coverage mode: the C reference built by clang with libFuzzer's instrumentation.

``recvmap fuzz --native`` builds our C with ``-fsanitize=fuzzer-no-link,address,undefined``
outside the pip build and runs the harnesses with atheris' ``asan_with_fuzzer.so``
preloaded, so the C library's edges count as coverage next to the model's Python branches,
and AddressSanitizer / UBSan reports stop the run. Skipped without clang or atheris.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recvmap.fuzz.campaign.harness_env import HarnessConfig
from recvmap.fuzz.subjects import native
from recvmap.fuzz.subjects.build import build_library


def _asan_runtime() -> bool:
    """atheris's libFuzzer with ASan, which native mode preloads."""
    try:
        import atheris
    except ImportError:
        return True  # the extra marker skips, naming the fuzz extra
    return (Path(atheris.path()) / "asan_with_fuzzer.so").is_file()


pytestmark = [
    pytest.mark.extra("fuzz"),
    pytest.mark.skipif(
        native.clang() is None or not _asan_runtime(),
        reason="native coverage needs clang (clang-16, libclang-rt-16-dev: make system)",
    ),
]
FUZZ = Path(native.__file__).resolve().parent.parent / "campaign"


def run_harness(
    lib: Path, layer: str, runs: int, tmp_path: Path, seeds: int = 0
) -> subprocess.CompletedProcess[str]:
    """The ``layer`` harness in native mode on ``lib``: libFuzzer with a fixed seed, from
    ``seeds`` inputs of a fixed random generator (an empty corpus without them)."""
    config = HarnessConfig(word_bits=64, native=((64, lib),), out_dir=tmp_path / "out")
    env = config.to_env({**os.environ, **native.sanitizer_env()})
    env["PYTHONHASHSEED"] = "0"  # the model's Python coverage must not vary between runs
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    rng = random.Random(14)  # a fixed seed corpus: libFuzzer starts from real programs
    for k in range(seeds):
        (corpus / f"seed-{k}").write_bytes(rng.randbytes(rng.randrange(8, 400)))
    print(f"harness_{layer}.py -runs={runs} -seed=1, {seeds} inputs of Random(14)")
    return subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"harness_{layer}.py"),
            f"-runs={runs}",
            "-seed=1",
            "-len_control=0",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_instrumented_library_registers_its_edges(tmp_path: Path) -> None:
    lib = native.build_native(64)
    symbols = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True).stdout
    assert "__sanitizer_cov_8bit_counters_init" in symbols and "__asan_" in symbols
    r = run_harness(lib, "ram", 120, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Using preloaded libfuzzer" in r.stderr
    # the C library's counters are a module of their own next to atheris' Python counters
    assert re.search(r"Loaded 1 modules\s+\(\d+ inline 8-bit counters\)", r.stderr), r.stderr
    assert "Done 120 runs" in r.stderr


def test_without_the_preload_the_library_does_not_load() -> None:
    lib = native.build_native(64)
    r = subprocess.run(
        [sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(lib)!r})"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0 and "undefined symbol" in r.stderr


@pytest.mark.slow
def test_short_native_campaign(tmp_path: Path) -> None:
    report = tmp_path / "summary.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "recvmap.fuzz.cli",
            "fuzz",
            "--native",
            "--target",
            "ram",
            "--max-time",
            "8",
            "--seed",
            "3",
            "--json",
            str(report),
            "--quiet",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ASan, UBSan, libFuzzer edges" in r.stdout
    s = json.loads(report.read_text())
    assert s["status"] == "clean" and s["totals"]["ops"] > 0
    assert all(j["coverage"] > 0 for j in s["jobs"])


# --- teeth: bugs planted in a copy of the C, built the native way, are caught ---------------

COUNT_DECL = "    qref_long k, lim = FULL_WORDS(nbits), count = 0;\n"
COUNT_ADD = "        count += word_ctpop(map[k]);\n"
NATIVE_PLANTS = {
    # a result the model disagrees with: bitmap_set ends its last partial word a bit early
    "divergence": (
        "*p |= mask & BITMAP_LAST_WORD_MASK(end);",
        "*p |= mask & BITMAP_LAST_WORD_MASK(end - 1);",
        "diverges from the model",
    ),
    # bitmap_count_one also reads the word after the array, without using it: only ASan sees it
    "asan": (
        COUNT_DECL,
        COUNT_DECL + "\n    (void)*(volatile const qref_ulong *)&map[BITS_TO_LONGS(nbits)];\n",
        "ERROR: AddressSanitizer: heap-buffer-overflow",
    ),
    # bitmap_count_one shifts a word by the word width, which is undefined
    "ubsan": (
        COUNT_ADD,
        "        volatile int w = QREF_BITS_PER_LONG;\n        count += word_ctpop(map[k] >> w);\n",
        "runtime error: shift exponent",
    ),
}
TEETH_RUNS = 2000


def test_native_control_is_clean_over_the_teeth_runs(tmp_path: Path) -> None:
    """The control of the plants below: the clean build, same harness, seed and runs."""
    r = run_harness(native.build_native(64), "bitmap", TEETH_RUNS, tmp_path, 64)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert f"Done {TEETH_RUNS} runs" in r.stderr


@pytest.mark.parametrize("plant", list(NATIVE_PLANTS))
def test_native_mode_catches_a_planted_bug(tmp_path: Path, plant: str) -> None:
    old, new, report = NATIVE_PLANTS[plant]
    cc = native.clang()
    assert cc is not None
    lib = build_library(64, edits={"bitmap.c": [(old, new)]}, cc=cc, flags=native.SANITIZE)
    r = run_harness(lib, "bitmap", TEETH_RUNS, tmp_path, 64)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and report in out, out[-3000:]
    assert list(tmp_path.glob("crash-*")), "libFuzzer wrote no reproducer"
