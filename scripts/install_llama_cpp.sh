#!/usr/bin/env bash
# llama.cpp's pieces for `phased-cpt export --to gguf|ollama`, from one pinned llama-cpp-python
# source distribution (it ships llama.cpp whole):
#   - the runtime: llama-cpp-python, built from that sdist for the CPU (portable: GGML_NATIVE=OFF)
#     once, the wheel kept in the cache below and reused by every later install;
#   - the converter: vendor/llama.cpp/convert_hf_to_gguf.py with its conversion/ and gguf-py/,
#     unpacked into PYTHON's environment at share/phased-cpt/llama.cpp (where export looks).
# Usage: scripts/install_llama_cpp.sh [PYTHON]   (default: .venv/bin/python)
# The cache: $PHASED_CPT_WHEEL_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/phased-cpt/llama-cpp-python-VERSION.
# Network is needed only on the first run (the sdist); a machine with the cache filled installs offline.
set -euo pipefail
VERSION=0.3.36
PYTHON=${1:-.venv/bin/python}
CACHE=${PHASED_CPT_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phased-cpt/llama-cpp-python-$VERSION}
SDIST=$CACHE/llama_cpp_python-$VERSION.tar.gz
mkdir -p "$CACHE"
if [ ! -f "$SDIST" ]; then
  "$PYTHON" -m pip download -q --no-deps --no-binary :all: -d "$CACHE" "llama-cpp-python==$VERSION"
fi
wheels=("$CACHE"/llama_cpp_python-"$VERSION"-*.whl)
if [ ! -f "${wheels[0]}" ]; then
  echo "building llama-cpp-python $VERSION for the CPU (once; cached in $CACHE) ..." >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
    "$PYTHON" -m pip wheel -q --no-deps -w "$CACHE" "$SDIST"
  wheels=("$CACHE"/llama_cpp_python-"$VERSION"-*.whl)
fi
"$PYTHON" -m pip install -q --no-deps "${wheels[0]}"

DEST=$("$PYTHON" -c 'import sys; print(sys.prefix)')/share/phased-cpt/llama.cpp
STAGE=$DEST.unpacking
rm -rf "$STAGE"
mkdir -p "$STAGE"
SRC=llama_cpp_python-$VERSION/vendor/llama.cpp
tar -xzf "$SDIST" -C "$STAGE" --strip-components=3 "$SRC/convert_hf_to_gguf.py" "$SRC/conversion" "$SRC/gguf-py"
rm -rf "$DEST"
mv "$STAGE" "$DEST"
echo "llama.cpp: llama-cpp-python $VERSION installed, converter in $DEST" >&2
