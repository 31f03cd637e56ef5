#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-or-later
# Build recvmap's fuzzers the way OSS-Fuzz builds Python projects: install the package
# (its C reference is compiled by meson with the builder's CC/CFLAGS), then one fuzzer per
# harness with compile_python_fuzzer (a PyInstaller bundle plus a launcher in $OUT), each
# with a seed corpus and libFuzzer options. The fuzzers are the harness scripts themselves:
# a divergence from the model or a crash of the C is a finding; its input is the crash file
# that `recvmap replay --layer LAYER FILE` turns into a vector.
cd "$SRC/recvmap"
# The builder's CFLAGS instrument the C with AddressSanitizer and libFuzzer's coverage; a
# shared library so built leaves their symbols to the runtime the launcher preloads
# (sanitizer_with_fuzzer.so), which meson's default -Wl,--no-undefined refuses to link.
python3 -m pip install --no-build-isolation --no-deps \
  --config-settings=setup-args=-Db_lundef=false .

harnesses=$(cd / && python3 -c \
  'import pathlib, recvmap.fuzz.campaign as c; print(pathlib.Path(c.__file__).parent)')

for layer in bitmap ram recovery; do
  name="recvmap_${layer}_fuzzer"
  cp "$harnesses/harness_${layer}.py" "$SRC/$name.py"
  # recvmap's model, C libraries, headers and vectors travel inside the bundle
  compile_python_fuzzer "$SRC/$name.py" --collect-all recvmap

  # libFuzzer starts from tiny inputs, which decode to one or two operations: seed it
  # with random inputs long enough for whole programs (what `recvmap fuzz` does too)
  (cd / && python3 - "$OUT/${name}_seed_corpus.zip" "$layer" <<'PY'
import random, sys, zipfile
rng = random.Random(sys.argv[2])
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for i in range(32):
        z.writestr(f"seed-{i:02d}", rng.randbytes(rng.randrange(64, 800)))
PY
  )
  printf '[libfuzzer]\nmax_len = 1024\nlen_control = 0\n' > "$OUT/$name.options"
done
