#!/usr/bin/env bash
# Set-up and the main job on a fresh Debian 12 machine: installs dependencies, builds, and runs RACE
# attention against softmax attention at the RACE paper's single-layer shape (B=1, H=4, D=128, L=3, P=3,
# causal, forward+backward). The trainer takes this script's place once it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)" --target race-bench
bench=./build/apps/race-bench
shape=(-B 1 -H 4 -D 128)
echo "== softmax (flash-style, O(T^2)) and RACE (O(T)) at T = 16384"
"$bench" attention --impl softmax "${shape[@]}" -T 16384 --repeats 1
"$bench" attention --impl race "${shape[@]}" -L 3 -P 3 -T 16384 --repeats 3
echo "== RACE at T = 262144 (softmax would take about 256x its T = 16384 time)"
"$bench" attention --impl race "${shape[@]}" -L 3 -P 3 -T 262144 --repeats 3
