# SPDX-License-Identifier: GPL-2.0-or-later
"""``recvmap replay --layer L FILE``: raw libFuzzer inputs become vector files.

The raw inputs come from the harness scripts themselves, run as libFuzzer runs them (the
crash file atheris writes when the harness finds a divergence in a library with an
off-by-one last-word mask); the decoded program must be the one the harness ran (its
statistics count the same operations) and must replay the divergence.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import MASK, MUTANT, recvmap

from recvmap.fuzz import cli
from recvmap.fuzz.subjects.build import build_library
from recvmap.fuzz.vectors.files import load_file

FUZZ = Path(cli.__file__).resolve().parent / "campaign"


def harness(layer: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RECVMAP_")}
    return subprocess.run(
        [sys.executable, str(FUZZ / f"harness_{layer}.py"), *args],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("layer", "bits"), [("bitmap", "64"), ("ram", "32"), ("recovery", "64")])
def test_the_decoded_program_is_the_one_the_harness_ran(
    layer: str, bits: str, tmp_path: Path
) -> None:
    """The harness (configured as a campaign job of this layer and width) counts the
    operations it compares for the input; the vector holds as many."""
    data = random.Random(f"{layer}{bits}").randbytes(700)
    raw = tmp_path / "timeout-0123"
    raw.write_bytes(data)
    from recvmap.fuzz.campaign.harness import Harness
    from recvmap.fuzz.subjects.impls import Subject

    receiver = int(bits) if layer == "recovery" else None
    subject = Subject(None, None if layer == "recovery" else int(bits))
    h = Harness(layer, subject, receiver_bits=receiver, out_dir=tmp_path / "o")
    h.one_input(data)
    r = recvmap(
        "replay", "--layer", layer, "--word-bits", bits, "--out", "v", raw.name, cwd=tmp_path
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (case,) = load_file(tmp_path / "v" / f"timeout-0123-{layer}.json")
    assert len(case.program.ops) == h.ops > 0
    assert case.program.layout.bits_per_long == int(bits)
    assert "timeout-0123" in case.test["comment"]


@pytest.mark.extra("fuzz")  # atheris writes the crash file
@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc builds the mutant")
def test_a_libfuzzer_crash_file_replays_the_divergence(tmp_path: Path) -> None:
    lib = build_library(64, {"qemu_ref.h": [(MASK, MUTANT)]})
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    rng = random.Random(3)
    for i in range(16):
        (seeds / f"s{i}").write_bytes(rng.randbytes(rng.randrange(64, 800)))
    env = {
        "RECVMAP_IMPL": str(lib),
        "RECVMAP_WORD_BITS": "64",
        "RECVMAP_OUT": str(tmp_path / "harness-out"),
    }
    run = harness(
        "bitmap",
        env,
        "-seed=1",
        "-max_total_time=60",
        "-len_control=0",
        f"-artifact_prefix={tmp_path}/",
        str(seeds),
    )
    crashes = list(tmp_path.glob("crash-*"))
    assert run.returncode != 0 and len(crashes) == 1, run.stderr[-3000:]
    (crash,) = crashes
    # the innermost frame names the kind of divergence (crash deduplication by stack)
    assert "in diverges_in_bitmap_" in run.stdout + run.stderr, run.stdout[-3000:]
    r = recvmap(
        "replay", "--layer", "bitmap", "--word-bits", "64", "--impl", str(lib), str(crash),
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"decoded by the bitmap harness into fuzz-out/{crash.name}-bitmap.json" in r.stdout
    assert "FAIL" in r.stdout and "diverges" in r.stdout and "op #" in r.stdout
    vector = tmp_path / "fuzz-out" / f"{crash.name}-bitmap.json"
    assert json.loads(vector.read_text())["schema"] == "recvmap-vectors-v1"
    model_only = recvmap("replay", "--model-only", str(vector), cwd=tmp_path)
    assert model_only.returncode == 0, model_only.stdout
    ours = recvmap("replay", str(vector), cwd=tmp_path)
    assert ours.returncode == 0, ours.stdout


def test_a_raw_input_without_layer_is_one_clear_line(tmp_path: Path) -> None:
    raw = tmp_path / "crash-ff"
    raw.write_bytes(b"\xff\x00\x01")
    r = recvmap("replay", str(raw), cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "--layer" in r.stderr


def test_divergences_of_different_kinds_have_different_stacks() -> None:
    import traceback

    from recvmap.fuzz.campaign.harness import raise_by_kind
    from recvmap.fuzz.engine import Divergence, DivergenceError
    from recvmap.fuzz.program import Op, Ref

    def innermost(fn: str, what: str) -> str:
        d = Divergence(0, Op(fn, (Ref(0), 70)), what, 1, 2)
        try:
            raise_by_kind(DivergenceError(d, "libx.so"))
        except DivergenceError as err:
            return traceback.extract_tb(err.__traceback__)[-1].name
        raise AssertionError("raise_by_kind returned")

    assert innermost("bitmap_fill", "memory") == "diverges_in_bitmap_fill_memory"
    assert innermost("bitmap_fill", "memory") == innermost("bitmap_fill", "memory")
    assert innermost("bitmap_fill", "memory") != innermost("bitmap_fill", "result")
    assert innermost("bitmap_set", "memory") != innermost("bitmap_fill", "memory")


def test_an_input_that_happens_to_be_json_is_still_raw(tmp_path: Path) -> None:
    (tmp_path / "crash-7").write_bytes(b"7")
    r = recvmap("replay", "--layer", "bitmap", "--word-bits", "64", "crash-7", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "fuzz-out" / "crash-7-bitmap.json").is_file()
