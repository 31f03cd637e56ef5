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
import re
import subprocess
import sys
from pathlib import Path

import pytest

from recvmap.fuzz.subjects import native

atheris = pytest.importorskip("atheris")
pytestmark = pytest.mark.skipif(
    native.clang() is None or not (Path(atheris.path()) / "asan_with_fuzzer.so").is_file(),
    reason="native coverage needs clang (clang-16, libclang-rt-16-dev) and atheris",
)
FUZZ = Path(native.__file__).resolve().parent.parent / "campaign"


def test_the_instrumented_library_registers_its_edges(tmp_path: Path) -> None:
    lib = native.build_native(64)
    symbols = subprocess.run(["nm", "-D", str(lib)], capture_output=True, text=True).stdout
    assert "__sanitizer_cov_8bit_counters_init" in symbols and "__asan_" in symbols
    env = dict(
        os.environ,
        **native.native_env({64: lib}),
        RECVMAP_WORD_BITS="64",
        RECVMAP_OUT=str(tmp_path),
    )
    r = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "harness_ram.py"),
            "-runs=120",
            "-seed=1",
            "-len_control=0",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
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
