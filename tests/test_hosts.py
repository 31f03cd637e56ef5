# SPDX-License-Identifier: GPL-2.0-or-later
"""The C reference on real other hosts: cross-built, run under qemu-user, against the model.

Needs Debian's cross compilers and qemu-user (``.ci/run`` installs them); each host is
skipped with the reason when its tools are missing. The time is sampled to stay within
about two minutes: RECVMAP_HOST_SECONDS (default 6) of fuzzing per host over the bitmap,
ram and recovery layers (a fixed seed, printed, RECVMAP_HOST_SEED to change it; set
RECVMAP_CLOCK_SEED=1 for an extra run seeded from the clock), a few recovery plans over all
pairs of hosts, the golden recovery streams on every host, and the regression vectors on
every host of their word width. Each host also gets a driver cross-built from a copy of
the C sources with a planted bug, which the vectors must catch (the clean driver passing
the same vectors is its control).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from recvmap.fuzz.campaign import hosts as host_campaign
from recvmap.fuzz.engine import first_divergence, initial_image
from recvmap.fuzz.program import Program, Ref
from recvmap.fuzz.subjects import hosts
from recvmap.fuzz.subjects.impls import ModelImpl
from recvmap.fuzz.subjects.remote import driver_context, for_layout, replay
from recvmap.fuzz.vectors.files import VectorError, iter_files, load_file
from recvmap.pymodel.errors import RecoveryError
from recvmap.pymodel.ramblock import RamContext, Side, TargetPage

FOREIGN = ("i686", "s390x", "ppc64")  # the hosts: 32-bit LE, 64-bit BE twice
EXTRA = ("armhf", "s390x-w32", "native32")  # more layouts when present
SECONDS = float(os.environ.get("RECVMAP_HOST_SECONDS", "6"))
SEED = int(os.environ.get("RECVMAP_HOST_SEED", "1406"))
VECTORS = Path(__file__).parent / "vectors"
REPORT: dict[str, Any] = {}


def require(name: str) -> None:
    if reason := hosts.host_status(name):
        pytest.skip(f"host {name}: {reason}")


def runnable() -> list[str]:
    names = [n for n in hosts.available_hosts() if n != "native"]
    if not any(n in FOREIGN for n in names):
        pytest.skip(
            "no emulated host: apt-get install qemu-user gcc-s390x-linux-gnu "
            "gcc-powerpc64-linux-gnu gcc-i686-linux-gnu"
        )
    return ["native", *names]


@pytest.fixture(scope="module", autouse=True)
def report() -> Any:
    """Print which hosts ran, what each compared and how long it took (pytest -s / -rA)."""
    yield
    for key, line in REPORT.items():
        print(f"{key}: {line}")


@pytest.mark.parametrize("name", FOREIGN + EXTRA)
def test_driver_runs_with_the_hosts_layout(name: str) -> None:
    """The driver reports its word width and byte order, and its memory shows them."""
    require(name)
    with hosts.host_driver(name) as driver:
        expect = hosts.HOSTS[name].layout
        assert driver.layout == expect
        nbytes = expect.bits_per_long // 8
        k = driver.ask(f"new {nbytes}")
        driver.ask(f"word {k} 0 1")
        image = bytes.fromhex(driver.ask(f"dump {k}"))
        assert image == (1).to_bytes(nbytes, "big" if expect.big_endian else "little")


def seeds() -> list[int]:
    """The fixed seed first; the clock's as an extra only when asked for."""
    extra = [int(time.time()) % 10000] if os.environ.get("RECVMAP_CLOCK_SEED") else []
    return [SEED, *extra]


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds(), ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("name", FOREIGN + EXTRA)
def test_fuzz_on_host_agrees_with_model(name: str, seed: int) -> None:
    require(name)
    seconds = SECONDS if name in FOREIGN else SECONDS / 3
    print(f"fuzz on {name}: seed {seed} (RECVMAP_HOST_SEED={seed} reproduces it)")
    s = host_campaign.fuzz_host(name, seconds, seed=seed)
    layers = ", ".join(f"{k} {v['programs']}" for k, v in s["layers"].items())
    REPORT[f"fuzz {name}"] = (
        f"{s['layout']}: {s['programs']} programs ({layers}), {s['ops']} ops compared "
        f"in {s['seconds']} s, seed {s['seed']}"
    )
    d = s["divergence"]
    assert d is None, (
        f"{name} diverges from the model (seed {s['seed']}, sender {d.get('sender')}): "
        f"{d['description']}\nprogram: {json.dumps(d['program'])}"
    )
    assert all(v["programs"] > 0 for v in s["layers"].values()), s


def test_recovery_stream_accepted_by_every_host() -> None:
    """All pairs: each host sends, every host reloads; each step compared with the model."""
    names = runnable()
    m = host_campaign.recovery_matrix(names, samples=6, seed=2)
    REPORT["recovery matrix"] = (
        f"{len(names)} hosts, {m['pairs']} sender/receiver pairs, {m['accepted']} reloads "
        f"accepted, {m['rejected']} damaged or resized streams rejected, in {m['seconds']} s"
    )
    assert not m["problems"], "\n".join(m["problems"][:20])
    assert m["pairs"] == 6 * len(names) ** 2
    assert m["accepted"] > 0 and m["rejected"] > 0


def _golden_stream(vector: dict[str, Any], bits_per_long: int) -> str:
    by_bpl = vector.get("stream_by_bpl")
    return str(by_bpl[str(bits_per_long)] if by_bpl else vector["stream"])


def test_golden_recovery_streams_on_every_host() -> None:
    """The hand-written streams of vectors/recovery_stream_v1.json, sent and reloaded."""
    golden = json.loads((VECTORS / "recovery_stream_v1.json").read_text())
    tp = TargetPage.fixed(int(golden["target_page_bits"]))
    page = tp.qemu_target_page_size()
    checked = 0
    for name in runnable():
        with hosts.host_driver(name) as d:
            for v in golden["vectors"]:
                d.ask("reset")
                used, size = v["nbits"] * page, v["max_pages"] * page
                dst = driver_context(d, tp, checked=True)
                rb = dst.ram_block_add("pc.ram", used, size)
                dst.ramblock_recv_map_init()
                received = range(v["nbits"]) if v["set_bits"] == "all" else v["set_bits"]
                for bit in [*received, *v["tail_bits"]]:
                    dst.ramblock_recv_bitmap_set(rb, rb.host + bit * page)
                stream, ret = dst.ramblock_recv_bitmap_send("pc.ram")
                want = _golden_stream(v, d.layout.bits_per_long)
                assert (stream.hex(), ret) == (want, v["ret"]), f"{name}: {v['name']}"
                checked += 1
                if v["nbits"] == 0:
                    continue  # reloading no page is outside QEMU's domain
                src = driver_context(d, tp, side=Side.SOURCE)
                model = RamContext(
                    tp, side=Side.SOURCE, layout=d.layout, pointer_bits=src.pointer_bits
                )
                crb = src.ram_block_add("pc.ram", used, size)
                mrb = model.ram_block_add("pc.ram", used, size)
                pairs: list[tuple[Any, Any]] = [(src, crb), (model, mrb)]
                for c, b in pairs:
                    c.ram_list_init_bitmaps()
                    assert c.ram_dirty_bitmap_reload(b, bytes.fromhex(want)) == 0
                assert crb.bmap is not None and mrb.bmap is not None
                assert crb.bmap.image() == mrb.bmap.image(), f"{name}: {v['name']}"
            for bad in golden["malformed"]:
                d.ask("reset")
                src = driver_context(d, tp, side=Side.SOURCE)
                b = src.ram_block_add("pc.ram", bad["nbits"] * page)
                src.ram_list_init_bitmaps()
                if bad["ret"] == 0:  # bytes after the end mark: QEMU does not read them
                    assert src.ram_dirty_bitmap_reload(b, bytes.fromhex(bad["stream"])) == 0
                    checked += 1
                    continue
                with pytest.raises(RecoveryError) as err:
                    src.ram_dirty_bitmap_reload(b, bytes.fromhex(bad["stream"]))
                assert err.value.ret == bad["ret"], f"{name}: {bad['name']}"
                checked += 1
    REPORT["golden recovery"] = f"{checked} golden streams checked on {len(runnable())} hosts"


OTHER_SCHEMA = {"recovery_stream_v1.json"}  # the golden streams: their own test above


def vector_cases(files: tuple[str, ...] = ()) -> list[Any]:
    """The recvmap-vectors-v1 cases (of ``files`` only, when given); the one file of
    another schema is skipped by name, so no other file can be skipped silently."""
    cases, other = [], set()
    for path in iter_files([VECTORS]):
        if files and path.name not in files:
            continue
        try:
            cases += load_file(path)
        except VectorError:
            other.add(path.name)
    assert other <= OTHER_SCHEMA, f"vector files that do not load: {other - OTHER_SCHEMA}"
    assert cases, "no recvmap-vectors-v1 file in tests/vectors"
    return cases


def host_divergences(
    name: str, cases: list[Any], pool: hosts.HostPool | None = None, stop: bool = False
) -> tuple[list[Any], list[str]]:
    """Run ``cases`` of host ``name``'s word width on its driver: (cases run, divergences)."""
    subject = hosts.HostSubject(name, pool)
    ran, diverged = [], []
    try:
        for case in cases:
            program = for_layout(case.program, subject.layout)
            if program is None:  # another word width: run on the hosts of that width
                continue
            if case.test["result"] == "invalid":
                program = program.with_ops(program.ops[:-1])
            _, divergence = first_divergence(program, subject)  # type: ignore[arg-type]
            ran.append(case)
            if divergence is not None:
                diverged.append(f"{name}: {case.name}: {divergence.describe()}")
                if stop:
                    break
    finally:
        subject.close()
    return ran, diverged


def test_vectors_on_every_host() -> None:
    """Every regression vector on every host of its word width (byte order retargeted);
    not those that allocate an array: the drivers cannot (tests/test_vectors.py runs them
    on the libraries loaded here)."""
    cases = [c for c in vector_cases() if not any(a.alloc for a in c.program.arrays)]
    ran, problems, covered = 0, [], set()
    for name in runnable():
        done, diverged = host_divergences(name, cases)
        ran += len(done)
        problems += diverged
        covered |= {id(c) for c in done}
    assert problems == [], "\n".join(problems[:20])
    missed = [c.name for c in cases if id(c) not in covered]
    assert missed == [], f"vectors no host ran: {missed[:10]}"
    REPORT["vectors"] = f"{len(cases)} vectors, {ran} runs over {len(runnable())} hosts"


# bitmap_complement keeps the tail bits of its last word: every word width and byte order
BROKEN_C = (
    "bitmap.c",
    "dst[k] = ~src[k] & BITMAP_LAST_WORD_MASK(nbits);",
    "dst[k] = ~src[k];",
)


# bitmap_to_le / bitmap_from_le forget the byte swap: compiled on big-endian hosts only
UNSWAPPED = {
    64: ("bitmap.c", "dst[k] = __builtin_bswap64(src[k]);", "dst[k] = src[k];"),
    32: ("bitmap.c", "dst[k] = __builtin_bswap32(src[k]);", "dst[k] = src[k];"),
}
BIG_ENDIAN = tuple(n for n in FOREIGN + EXTRA if hosts.HOSTS[n].layout.big_endian)


def caught_on_host(
    name: str, plant: tuple[str, str, str], files: tuple[str, ...], plant_c: Any, tmp: Path
) -> list[str]:
    """The clean driver passes ``files``' vectors (the control); the driver built from the
    planted copy diverges on them: its first divergence."""
    require(name)
    cases = vector_cases(files)
    done, diverged = host_divergences(name, cases)
    assert done and diverged == [], diverged[:5]
    exe = hosts.build(name, hosts.DRIVER, out_dir=tmp / name, src=plant_c(*plant))
    done, diverged = host_divergences(name, cases, hosts.HostPool({name: exe}), stop=True)
    print(f"broken driver on {name}: {diverged[:1]}")
    return diverged


@pytest.mark.parametrize("name", FOREIGN + EXTRA)
def test_a_broken_driver_on_the_host_is_caught(name: str, plant_c: Any, tmp_path: Path) -> None:
    """Teeth for the host oracle: the driver cross-built for ``name`` from a copy of the C
    with a planted bug diverges on the bitmap vectors; the clean driver (control) passes."""
    diverged = caught_on_host(name, BROKEN_C, ("bitmap-rules.json",), plant_c, tmp_path)
    assert any("bitmap_complement" in d for d in diverged), diverged


@pytest.mark.parametrize("name", BIG_ENDIAN)
def test_a_byte_order_bug_on_a_big_endian_host_is_caught(
    name: str, plant_c: Any, tmp_path: Path
) -> None:
    """A bug only a big-endian host has (the little-endian map is not swapped): the
    recovery stream vectors catch it on that host."""
    plant = UNSWAPPED[hosts.HOSTS[name].layout.bits_per_long]
    diverged = caught_on_host(name, plant, ("stream-bytes.json",), plant_c, tmp_path)
    assert diverged, f"{name}: an unswapped recovery map went unnoticed"


def test_batch_replay_prints_results_and_final_images() -> None:
    """The batch mode runs a whole JSON program in one exchange, same answers as the model."""
    name = next(n for n in runnable() if n in FOREIGN)
    layout = hosts.HOSTS[name].layout
    bpl = layout.bits_per_long
    program = Program.from_json(
        {
            "layer": "bitmap",
            "bits_per_long": bpl,
            "big_endian": layout.big_endian,
            "arrays": [{"nwords": 3, "words": {"1": hex(1 << (bpl - 1))}}, {"nwords": 3}],
            "ops": [
                ["bitmap_set", ["@0", 3, bpl + 5]],
                ["find_next_zero_bit", ["@0", 3 * bpl, 0]],
                ["bitmap_to_le", ["@1", "@0", 3 * bpl]],
                ["bitmap_count_one", ["@0", 3 * bpl]],
                ["test_and_change_bit", [bpl - 1, "@1"]],
            ],
        }
    )
    model = ModelImpl(layout)
    handles = [model.alloc(a.nwords) for a in program.arrays]
    for k, h in enumerate(handles):
        model.load(h, initial_image(program, k))
    want = [
        model.call(op.name, *[handles[a.index] if isinstance(a, Ref) else a for a in op.args])
        for op in program.ops
    ]
    with hosts.host_driver(name) as driver:
        got = replay(program, driver)
    assert [None if r is None else int(r) for r in got.results] == [
        None if r is None else int(r) for r in want
    ]
    assert got.images == [bytes(model.image(h)) for h in handles]


def replay_sections(argv: list[str], timeout: float = 300) -> dict[str, str]:
    """``recvmap replay --host ...``: each host's part of the output, by host name."""
    from helpers import recvmap

    r = recvmap("replay", *argv, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    parts = re.split(r"^== qemu_ref@(\S+) .*$", r.stdout, flags=re.M)
    if len(parts) == 1:  # one host: no header
        return {argv[argv.index("--host") + 1]: r.stdout}
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _counts(text: str) -> tuple[int, int, int]:
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped", text, re.M)
    assert m, text[-2000:]
    return int(m[1]), int(m[2]), int(m[3])


@pytest.mark.parametrize("name", ["s390x", "ppc64", "s390x-w32"])
def test_big_endian_groups_pass_on_a_big_endian_host(name: str) -> None:
    """The big-endian groups of the vector files (issue 23) on our C built for a
    big-endian host: every one of the host's own word layout runs natively and passes
    (its memory read in its own byte order, no retargeting), at the newest release."""
    require(name)
    from recvmap.pymodel.releases import DEFAULT_RELEASE

    layout = hosts.HOSTS[name].layout
    files = sorted({c.path.name for c in vector_cases() if c.group["big_endian"]})
    own = [
        c
        for c in vector_cases(tuple(files))
        if (c.group["bits_per_long"], c.group["big_endian"]) == (layout.bits_per_long, True)
        and c.covers(DEFAULT_RELEASE)
        and not any(a.alloc is not None for a in c.program.arrays)
        and c.group.get("sender_bits_per_long", layout.bits_per_long) == layout.bits_per_long
    ]
    assert len(own) > 50
    sections = replay_sections(["--host", name, *[str(VECTORS / f) for f in files]])
    passed, failed, _ = _counts(sections[name])
    skipped = set(re.findall(r"^SKIP (\S+):", sections[name], re.M))
    assert failed == 0
    assert not skipped & {c.name for c in own}, sorted(skipped & {c.name for c in own})[:5]
    assert passed >= len(own)
    REPORT[f"big-endian groups on {name}"] = f"{len(own)} of its layout, {passed} passed"


@pytest.mark.slow
def test_replay_host_all_passes_every_vector_on_our_c() -> None:
    """``recvmap replay --host all``, one process: on each host every vector of its word
    width at the newest release passes (the other byte order retargeted), counted from the
    vector files; each other vector is skipped naming both layouts."""
    from recvmap.pymodel.releases import DEFAULT_RELEASE, parse_release

    names = runnable()
    sections = replay_sections(["--host", "all", str(VECTORS)])
    assert sorted(sections) == sorted(names)
    newest = parse_release(DEFAULT_RELEASE)
    cases = [c for c in vector_cases() if c.covers(newest)]
    for name, text in sections.items():
        bits = hosts.HOSTS[name].layout.bits_per_long
        mine = sum(1 for c in cases if c.group["bits_per_long"] == bits)
        passed, failed, _ = _counts(text)
        assert failed == 0, text[-2000:]
        other = re.findall(
            rf"^SKIP \S+: {64 if bits == 32 else 32}-bit \S+ words: host", text, re.M
        )
        # expectations that depend on the byte order run as their twin of the host's;
        # the drivers cannot allocate (the library loaded here can: native and native32)
        twin = re.findall(r"^SKIP \S+: .*depend on the byte order", text, re.M)
        alloc = re.findall(r"^SKIP \S+: .*cannot allocate arrays", text, re.M)
        assert (passed + len(twin) + len(alloc), len(other)) == (mine, len(cases) - mine), name
    REPORT["replay --host all"] = f"{len(sections)} hosts, {len(cases)} vectors each"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--host", "sparc"], "--host sparc: unknown host; choose from native"),
        (["--host", "gone"], "--host gone: qemu-gone-does-not-exist not installed"),
        (["--host", "i686", "--impl", "x.so"], "it excludes --impl"),
        (["--host", "i686", "--word-bits", "32"], "it excludes --word-bits"),
    ],
)
def test_replay_host_usage_errors_are_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from recvmap.fuzz import cli
    from recvmap.pymodel.words import LP64_BE

    gone = hosts.EmulatedHost("gone", LP64_BE, "s390x-linux-gnu", "qemu-gone-does-not-exist")
    monkeypatch.setitem(hosts.HOSTS, "gone", gone)
    assert cli.main(["replay", *argv, str(VECTORS / "bitmap-rules.json")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


def test_a_replay_on_a_host_reports_a_hang_and_a_crash_and_goes_on() -> None:
    """``replay --host`` runs the C in the driver process, not a fork: a driver busy past
    the timeout is killed (HANG), a dead driver is a failing verdict, and the next
    exchange starts a new driver."""
    name = next(n for n in runnable() if n in FOREIGN)
    subject = hosts.HostSubject(name)
    try:
        driver = subject.pool.driver(name)

        def hang() -> tuple[str, str]:
            if not driver.proc.stdout.readline():  # type: ignore[union-attr]
                raise driver._died("waiting")
            return "pass", ""

        assert subject.isolated(hang, timeout=0.5) == (
            "fail",
            f"HANG: qemu_ref@{name} did not finish within 0.5 s",
        )

        def crash() -> str:
            d = subject.pool.driver(name)
            d.proc.kill()
            return d.ask("info")

        status, message = subject.isolated(crash, timeout=30)
        assert status == "fail" and message.startswith(f"qemu_ref@{name} crashed"), message
        assert subject.pool.driver(name).ask("info").startswith("bits=")
    finally:
        subject.close()
