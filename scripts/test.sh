#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: installs dependencies, builds every target (the
# CUDA ones too when the CUDA toolkit is installed), runs every test under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# A CUDA toolkit in its default place but not on PATH still gets its targets built.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
# One test process at a time: each already uses every core through OpenMP, and two would oversubscribe them.
ctest --test-dir build --output-on-failure
