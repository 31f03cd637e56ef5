#!/bin/bash -eu
# SPDX-License-Identifier: GPL-2.0-or-later
# Build the ClusterFuzzLite fuzzers of this checkout the way the Python builder image does,
# without Docker: a throwaway virtualenv stands for the image's python3 (PyInstaller, atheris,
# meson-python), a stand-in compile_python_fuzzer makes the same one-file PyInstaller bundle
# and launcher as OSS-Fuzz's, and the environment is the builder's for --sanitizer address
# (clang, ASan + fuzzer-no-link CFLAGS, atheris' asan_with_fuzzer.so in $OUT as
# sanitizer_with_fuzzer.so). build.sh runs unmodified. Needs python3 >= 3.11, clang and pip
# access to PyInstaller, atheris and meson-python (README.md in this folder).
#
#   .clusterfuzzlite/local-bundle.sh DIR          # DIR/out: the fuzzers, as in $OUT
#   SANITIZER=none .clusterfuzzlite/local-bundle.sh DIR   # the C built without sanitizers
#
# Run one from any folder: DIR/out/recvmap_bitmap_fuzzer -max_total_time=20 CORPUS_DIR
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:?usage: $0 DIR}")
sanitizer=${SANITIZER:-address}
rm -rf "$dir/src" "$dir/out" "$dir/work" "$dir/tools"
mkdir -p "$dir/src/recvmap" "$dir/out" "$dir/work" "$dir/tools"

if [ ! -x "$dir/builder/bin/python3" ]; then
  python3 -m venv "$dir/builder"
  "$dir/builder/bin/python3" -m pip install -q --disable-pip-version-check \
    pyinstaller 'atheris==3.0.0' 'meson-python>=0.15' 'meson>=1.1' ninja
fi

# The Dockerfile's COPY lines: the checkout (what git knows of) and build.sh beside it
(cd "$here" && git ls-files -co --exclude-standard -z | xargs -0 tar cf -) |
  tar xf - -C "$dir/src/recvmap"
cp "$here/.clusterfuzzlite/build.sh" "$dir/src/build.sh"

# compile_python_fuzzer FUZZER [PYINSTALLER ARGS...]: $OUT/NAME.pkg, a one-file bundle kept
# non-executable (executables in $OUT are taken for fuzzers), and $OUT/NAME, which preloads
# the sanitizer runtime and runs the bundle with the fuzzer's arguments.
cat > "$dir/tools/compile_python_fuzzer" <<'STANDIN'
#!/bin/bash -eu
fuzzer=$1
shift
name=$(basename -s .py "$fuzzer")
rm -rf "$SRC/pyfuzzworkdir"
mkdir -p "$SRC/pyfuzzworkdir/$name"
pyinstaller --distpath "$OUT" --workpath "$SRC/pyfuzzworkdir/$name" --onefile \
  --name "$name.pkg" "$@" "$fuzzer"
chmod -x "$OUT/$name.pkg"
cat > "$OUT/$name" <<LAUNCHER
#!/bin/sh
# LLVMFuzzerTestOneInput for fuzzer detection.
this_dir=\$(dirname "\$0")
chmod +x "\$this_dir/$name.pkg"
LD_PRELOAD=\$this_dir/sanitizer_with_fuzzer.so \
ASAN_OPTIONS=\$ASAN_OPTIONS:symbolize=1:external_symbolizer_path=\$this_dir/llvm-symbolizer:detect_leaks=0 \
exec "\$this_dir/$name.pkg" "\$@"
LAUNCHER
chmod +x "$OUT/$name"
STANDIN
chmod +x "$dir/tools/compile_python_fuzzer"

export SRC="$dir/src" OUT="$dir/out" WORK="$dir/work"
export FUZZING_LANGUAGE=python FUZZING_ENGINE=libfuzzer ARCHITECTURE=x86_64
export PATH="$dir/builder/bin:$dir/tools:/usr/local/bin:/usr/bin:/bin"
unset VIRTUAL_ENV PYTHONPATH
if [ "$sanitizer" = address ]; then
  export SANITIZER=address
  for cc in clang-16 clang-17 clang-18 clang-19 clang; do
    if command -v "$cc" > /dev/null; then export CC=$cc; break; fi
  done
  : "${CC:?no clang found for the address build (SANITIZER=none builds without)}"
  export CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only \
-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -fsanitize=address \
-fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link -fno-sanitize=function,leak,vptr"
  runtime=$(python3 -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so
  cp "$runtime" "$OUT/sanitizer_with_fuzzer.so"
  # the launcher names $OUT/llvm-symbolizer for ASan's stack traces, as the builder ships it
  symbolizer=$(command -v llvm-symbolizer || command -v "llvm-symbolizer-${CC#clang-}" || true)
  if [ -n "$symbolizer" ]; then cp "$symbolizer" "$OUT/llvm-symbolizer"; fi
else
  export SANITIZER=none
fi
cd "$SRC"
bash -eux "$SRC/build.sh"
ls -l "$OUT"
