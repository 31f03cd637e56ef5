# SPDX-License-Identifier: GPL-2.0-or-later
"""The ClusterFuzzLite / OSS-Fuzz build (``.clusterfuzzlite/``), in a local imitation.

Containers cannot run here, so the builder is imitated: ``$SRC`` holds a copy of the source
tree in ``$SRC/recvmap`` and ``build.sh`` next to it (what the Dockerfile's COPY lines do),
``$OUT`` is empty, the builder's ``python3``/``pip3`` are a fresh virtualenv (with the build
tools of the Dockerfile's pip line and atheris, which the Python base image has), and
``compile_python_fuzzer`` is a stand-in that does in spirit what OSS-Fuzz's does: a package
of the fuzzer in ``$OUT/NAME.pkg`` and a launcher ``$OUT/NAME`` marked for fuzzer detection
that preloads ``$OUT/sanitizer_with_fuzzer.so`` (ours runs the script with the builder's
python instead of a PyInstaller bundle; the real bundle was built and run by hand, see
.clusterfuzzlite/README.md). Where clang is here, the build is the builder's
``--sanitizer address`` one: ``CC=clang``, its ASan + ``fuzzer-no-link`` CFLAGS, atheris'
``asan_with_fuzzer.so`` in ``$OUT`` (what OSS-Fuzz's ``compile`` does for Python). build.sh
runs unmodified; then every fuzzer it produced runs for a few seconds from another folder,
as ClusterFuzzLite runs them: on its seed corpus, with its options.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CFLITE = ROOT / ".clusterfuzzlite"
LAYERS = ("bitmap", "ram", "recovery")
BUILD_TOOLS = ("meson-python", "pyproject-metadata", "packaging", "atheris")
IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "__pycache__", "*.so", "fuzz-out", ".pytest_cache",
    ".hypothesis", ".mypy_cache", ".ruff_cache", "recvmap-out",
)  # fmt: skip

STUB = r"""#!/bin/bash -eu
# Stand-in for OSS-Fuzz's compile_python_fuzzer FUZZER [PYINSTALLER ARGS...]:
# $OUT/NAME.pkg holds the fuzzer, $OUT/NAME launches it (the real one bundles it with
# PyInstaller; this one runs it with the builder's python).
fuzzer=$1
shift
name=$(basename -s .py "$fuzzer")
mkdir -p "$OUT/$name.pkg"
cp "$fuzzer" "$OUT/$name.pkg/$name.py"
echo "$@" > "$OUT/$name.pkg/pyinstaller-args"
cat > "$OUT/$name" <<EOF
#!/bin/sh
# LLVMFuzzerTestOneInput for fuzzer detection.
this_dir=\$(dirname "\$0")
LD_PRELOAD=\$this_dir/sanitizer_with_fuzzer.so ASAN_OPTIONS=\$ASAN_OPTIONS:detect_leaks=0 \\
exec $(command -v python3) "\$this_dir/$name.pkg/$name.py" "\$@"
EOF
chmod +x "$OUT/$name"
"""

# The builder's flags for FUZZING_LANGUAGE=python, SANITIZER=address, FUZZING_ENGINE=libfuzzer
ASAN_CFLAGS = (
    "-O1 -fno-omit-frame-pointer -gline-tables-only -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION "
    "-fsanitize=address -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link "
    "-fno-sanitize=function,leak,vptr"
)

pytestmark = [
    pytest.mark.skipif(shutil.which("gcc") is None, reason="the C reference needs a compiler"),
    pytest.mark.skipif(
        shutil.which("meson") is None and not (Path(sys.executable).parent / "meson").exists(),
        reason="meson builds the C reference",
    ),
]


def sanitizer_build() -> tuple[str, Path] | None:
    """clang and atheris' ASan runtime, for the builder's address build; None: a plain build."""
    from recvmap.fuzz.subjects.native import NativeError, clang, sanitizer_runtime

    cc = clang()
    try:
        return (cc, sanitizer_runtime()) if cc else None
    except NativeError:
        return None


def copy_distribution(name: str, site: Path) -> bool:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    for f in dist.files or []:
        if ".." in f.parts or "__pycache__" in f.parts:
            continue
        (site / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(str(dist.locate_file(f))), site / f)
    return True


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """$OUT after build.sh, and the builder's environment (``RECVMAP_SANITIZED`` set in it
    when the build is the sanitizer one)."""
    tmp = tmp_path_factory.mktemp("cflite")
    src, out, work, tools = tmp / "src", tmp / "out", tmp / "work", tmp / "tools"
    for d in (src, out, work, tools):
        d.mkdir()
    shutil.copytree(ROOT, src / "recvmap", ignore=IGNORE)  # COPY . $SRC/recvmap
    shutil.copy2(CFLITE / "build.sh", src / "build.sh")  # COPY .clusterfuzzlite/build.sh $SRC/
    venv = tmp / "builder-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    for name in BUILD_TOOLS:
        if not copy_distribution(name, site) and name == "atheris":
            pytest.skip("needs the 'fuzz' extra (atheris, part of the builder image)")
    for exe in ("meson", "ninja"):  # the executables of the Dockerfile's pip line
        found = shutil.which(exe, path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        assert found, exe
        (tools / exe).symlink_to(found)
    (tools / "compile_python_fuzzer").write_text(STUB)
    (tools / "compile_python_fuzzer").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECVMAP_", "PYTHON"))}
    env.update(
        SRC=str(src),
        OUT=str(out),
        WORK=str(work),
        PATH=f"{venv / 'bin'}:{tools}:/usr/local/bin:/usr/bin:/bin",
    )
    sanitizer = sanitizer_build()
    if sanitizer is not None:  # OSS-Fuzz's compile: flags, and the runtime the launchers preload
        env.update(CC=sanitizer[0], CFLAGS=ASAN_CFLAGS, RECVMAP_SANITIZED="1")
        shutil.copy2(sanitizer[1], out / "sanitizer_with_fuzzer.so")
    proc = subprocess.run(
        ["bash", "-eu", str(src / "build.sh")],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(site.glob("recvmap/qemu_ref/libqemuref64.so")), "recvmap not in the builder"
    shutil.rmtree(src)  # the runner has $OUT, not the sources: the fuzzers must not need them
    return out, env


@pytest.mark.slow
def test_build_sh_produces_a_fuzzer_per_harness(built: tuple[Path, dict[str, str]]) -> None:
    out, _ = built
    for layer in LAYERS:
        name = f"recvmap_{layer}_fuzzer"
        launcher = out / name
        assert os.access(launcher, os.X_OK), launcher
        assert "LLVMFuzzerTestOneInput" in launcher.read_text()
        assert (out / f"{name}.pkg" / "pyinstaller-args").read_text().split() == [
            "--collect-all",
            "recvmap",
        ]
        with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
            assert len(z.namelist()) == 32 and all(len(z.read(n)) >= 64 for n in z.namelist())
        opts = configparser.ConfigParser()
        opts.read(out / f"{name}.options")
        assert opts["libfuzzer"]["max_len"] == "1024"


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS)
def test_each_fuzzer_runs_a_few_seconds(
    built: tuple[Path, dict[str, str]], layer: str, tmp_path: Path
) -> None:
    out, env = built
    name = f"recvmap_{layer}_fuzzer"
    corpus = tmp_path / "corpus"
    with zipfile.ZipFile(out / f"{name}_seed_corpus.zip") as z:
        z.extractall(corpus)
    run = subprocess.run(
        [str(out / name), "-max_total_time=4", "-max_len=1024", "-len_control=0", str(corpus)],
        cwd=tmp_path,
        env={**env, "PATH": "/usr/local/bin:/usr/bin:/bin"},  # the runner has no builder tools
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done " in run.stderr and "cov: " in run.stderr
    if env.get("RECVMAP_SANITIZED"):  # libFuzzer counts the instrumented C's edges too
        assert re.search(r"INFO: Loaded [1-9]\d* modules", run.stderr), run.stderr[-3000:]
    assert not (tmp_path / "fuzz-out").exists()  # no divergence on our own C
