#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine, end to end: installs dependencies, builds, turns the GCIDE
# English dictionary (Debian's dict-gcide) into a byte-level dataset, trains a small GPT with RACE attention
# for a few minutes, evaluates it and prints a sample. The run lands in runs/quickstart (replaced each time).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target race-train race-eval race-bench
if [ ! -f data/gcide.h5 ]; then
  /usr/bin/python3 data/scripts/text_to_h5.py --input /usr/share/dictd/gcide.dict.dz --output data/gcide.h5
fi
rm -rf runs/quickstart
./build/apps/race-train --config configs/quickstart.json
./build/apps/race-eval --checkpoint runs/quickstart
echo "== a sample (prompt: \"Abacus \\\", temperature 0.8, top-k 40)"
./build/apps/race-eval generate --checkpoint runs/quickstart --prompt 'Abacus \' --max-new-tokens 400 \
  --temperature 0.8 --top-k 40 --seed 1
