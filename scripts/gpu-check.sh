#!/usr/bin/env bash
# The CUDA checks that need a GPU, in two halves: `build` on a build machine (CUDA toolkit, no GPU needed),
# `run` on a GPU machine that has the NVIDIA driver, the CUDA 13 runtime, python3 and PyTorch but none of
# our other libraries.
#
#   scripts/gpu-check.sh build   Builds for sm_90a only (Hopper: H100/H200) in build-gpu-check/ and collects
#                                build-gpu-check/bundle/: the CUDA test binaries, test_trainer, race-bench,
#                                race-train and race-eval (each xz-compressed: every one holds OpenBLAS's
#                                archive), the shared libraries they need beyond glibc/libstdc++/libgcc (HDF5
#                                and its curl/ssl chain, spdlog, fmt, libgomp, ...) and the PyTorch comparison
#                                script. Not cuBLASLt or NCCL: libcublasLt.so.13 (the linear layer's products,
#                                about 540 MB) and libnccl.so.2 (over 200 MB) are far too large to carry, and
#                                the binaries do not link them: a CUDA run loads them when it starts
#                                (core/shared_library.h), from LD_LIBRARY_PATH or the build's toolkit folder.
#                                Fails if the bundle passes 64 MiB or a binary cannot start here.
#   scripts/gpu-check.sh run [kernels|trainer]
#                                On the GPU machine, from the repository root with the bundle in place: first
#                                finds libcublasLt.so.13 and libnccl.so.2 in PyTorch's pip packages
#                                (nvidia-cublas, nvidia-nccl-cu13; under site-packages/nvidia/) and puts their
#                                folders first on LD_LIBRARY_PATH; a missing one is said and recorded as a failed
#                                step `locate_<library>` (CUDA runs then find it only if the build machine's
#                                toolkit folder exists there too). Then runs one part, each step under a timeout,
#                                and writes into
#                                $OUT (default ./gpu-check-out): gpu-check-<part>.log, steps-<part>.json (each
#                                step's exit status and seconds, rewritten after every step), the most important
#                                results as soon as their step ends, and at the end gpu-check-<part>.tar.gz with
#                                all of them (the device runner returns at most 8 files; a part returns at most 8).
#                                Each part's step limits fit one 10-minute runner call:
#     kernels (550 s of limits)  tests_*.json: gtest reports of test_cuda_device, test_race_attention_cuda and
#                                test_softmax_attention_cuda (the kernels on the GPU against the fp64 CPU
#                                references), test_cuda_ops (every model::Ops method and a tiny Gpt on CUDA
#                                against CpuOps), test_race_tile (host emulation); race_bench_*.json:
#                                race-bench attention --device cuda at B=1 H=4 D=128 L=3 P=3 bf16 causal at
#                                T = 2^20, at T = 20 x 2^20 with --in-place, and a doubling sweep from T = 4096;
#                                ncu_race_64k.csv: Nsight Compute's speed of light per RACE kernel at T = 65536
#                                (racecheck.log and memcheck.log instead when the kernels fail their test);
#                                softmax_bench_sweep.json: our CUDA flash softmax at the same shape; sdpa_flash.json: torch
#                                scaled_dot_product_attention (flash backend) at the same shapes, with the
#                                race-bench timings beside it (scripts/sdpa_bench.py)
#     trainer (525 s of limits)  tests_trainer_cuda.json: CPU against CUDA training (fp32 and bf16 products)
#                                from one initialisation, a CPU checkpoint resumed on CUDA; runs/mqar_64 and
#                                eval_mqar_64.json: MQAR at context 64 (made by build and carried, so the step
#                                needs no Python package there), trained 1200 steps and evaluated on the GPU;
#                                model_*.json: race-bench model (GPT-2 124M shape, bf16 products) tokens/s and
#                                MFU, RACE at 4K (also fp32), 64K and 256K (recomputed), softmax at 4K;
#                                torch_gpt_*.json: the PyTorch reference of the same model
#                                (scripts/torch_gpt_bench.py) at 4K and 64K
#
# build-gpu-check/ is ignored by git (build*/), so a tool that copies only the tracked and untracked-but-not-
# ignored files of the working tree must be told to carry the bundle, e.g. with the device runner:
#   run(command="scripts/gpu-check.sh run kernels", carry=["build-gpu-check/bundle"], timeout_s=600)
#   run(command="scripts/gpu-check.sh run trainer", carry=["build-gpu-check/bundle"], timeout_s=600)
# Both parts at their limits do not fit one 15-minute device session with the machine's start: run the
# kernels part first; the trainer part usually takes far less than its limits, so try it in the time left,
# and otherwise in a later session.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-gpu-check
BUNDLE=$BUILD/bundle
MAX_BUNDLE_BYTES=$((64 * 1024 * 1024))
BINARIES=(tests/test_cuda_device tests/test_race_attention_cuda tests/test_softmax_attention_cuda tests/test_cuda_ops
  tests/test_race_tile tests/test_trainer apps/race-bench apps/race-train apps/race-eval)

# Libraries every Linux machine with a C++ runtime has; the bundle uses the GPU machine's own. build_bundle
# prints the newest glibc and libstdc++ symbol versions the bundle needs from them.
is_system_library() {
  case "$(basename "$1")" in
    libc.so.* | libm.so.* | libstdc++.so.* | libgcc_s.so.* | ld-linux*.so.* | libresolv.so.* | libpthread.so.* | \
      libdl.so.* | librt.so.* | linux-vdso.so.*) return 0 ;;
    *) return 1 ;;
  esac
}


build_bundle() {
  local nvcc=/usr/local/cuda/bin/nvcc
  command -v nvcc >/dev/null 2>&1 && nvcc=$(command -v nvcc)
  # OpenBLAS static: test_cuda_ops runs CpuOps' linear layer, and the shared libopenblas (36 MB) would push the
  # bundle past 64 MiB; the archive adds only the sgemm it calls (about 30 MB).
  # x86-64-v3 (AVX2): the GPU machine's CPU is unknown. row_products.h's 16-wide vectors then pass through
  # functions without AVX-512, which GCC notes as an ABI change (-Wpsabi); every such function is inline
  # in one binary, so there is no ABI to break.
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRACE_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc" \
    -DRACE_CUDA_ARCHITECTURES=90a -DRACE_CPU_ARCH=x86-64-v3 -DCMAKE_CXX_FLAGS=-Wno-psabi -DRACE_OPENBLAS_STATIC=ON
  cmake --build "$BUILD" -j"$(nproc)" --target test_cuda_device test_race_attention_cuda test_softmax_attention_cuda \
    test_cuda_ops test_race_tile test_trainer race-bench race-train race-eval
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
  for b in "${BINARIES[@]}"; do cp "$BUILD/$b" "$BUNDLE/bin/"; done
  cp scripts/sdpa_bench.py "$BUNDLE/"
  # The MQAR data for the trainer part, made here with Debian's python3 and h5py, so that the GPU machine needs
  # none of the generator's packages.
  mkdir -p "$BUNDLE/data"
  /usr/bin/python3 data/scripts/mqar_to_h5.py --output "$BUNDLE/data/mqar_64.h5" --pairs 2,4,8,16 --context 64 \
    --train-examples 80000 --val-examples 512
  local needed
  needed=$(for b in "$BUNDLE"/bin/*; do ldd "$b" | awk '$3 ~ /^\// {print $3}'; done | sort -u)
  local lib
  for lib in $needed; do
    if ! is_system_library "$lib"; then cp -L "$lib" "$BUNDLE/lib/"; fi
  done
  strip --strip-unneeded "$BUNDLE"/bin/* "$BUNDLE"/lib/* 2>/dev/null || true
  local glibc glibcxx
  glibc=$(for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do objdump -T "$f" | grep -o 'GLIBC_[0-9.]*' || true; done | sort -uV | tail -1)
  glibcxx=$(for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do objdump -T "$f" | grep -o 'GLIBCXX_[0-9.]*' || true; done | sort -uV | tail -1)
  echo "gpu-check: the bundle needs $glibc and $glibcxx from the GPU machine"
  # Every binary must start with only the bundle's libraries and the system ones (no GPU needed for this).
  for b in "$BUNDLE"/bin/test_*; do
    LD_LIBRARY_PATH="$BUNDLE/lib" "$b" --gtest_list_tests >/dev/null
  done
  for b in race-bench race-train race-eval; do LD_LIBRARY_PATH="$BUNDLE/lib" "$BUNDLE/bin/$b" --help >/dev/null; done
  # Every binary holds OpenBLAS's archive (about 30 MB, mostly kernels for every x86 CPU): together they
  # would pass 64 MiB many times over. xz shrinks each to a few MB; `run` unpacks them with python3's lzma.
  xz -6 -T"$(nproc)" "$BUNDLE"/bin/* "$BUNDLE/data/mqar_64.h5"
  local bytes
  bytes=$(du -sb "$BUNDLE" | cut -f1)
  echo "gpu-check: bundle $BUNDLE: $((bytes / 1024 / 1024)) MiB ($bytes bytes), $(ls "$BUNDLE/lib" | wc -l) libraries"
  if [ "$bytes" -gt "$MAX_BUNDLE_BYTES" ]; then
    echo "gpu-check: the bundle is over 64 MiB: too large to carry" >&2
    exit 1
  fi
  echo "gpu-check: every binary starts; carry $BUNDLE to the GPU machine and run: scripts/gpu-check.sh run"
}

# python3 -c "$UNXZ" SOURCE TARGET: unpacks an .xz file (the GPU machine may have no xz; python3 has lzma).
UNXZ='import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))'

# record NAME STATUS SECONDS: one entry of steps.json.
STEPS=()
record() {
  # 124: timeout stopped the step; 137: it did not stop and --kill-after killed it.
  local timed_out=false
  if [ "$2" = 124 ] || [ "$2" = 137 ]; then timed_out=true; fi
  STEPS+=("{\"step\": \"$1\", \"status\": $2, \"seconds\": $3, \"timed_out\": $timed_out}")
  echo "gpu-check: $1: status $2 in ${3}s"
  # Rewritten after every step, so a run cut short by the runner's own limit still brings back what ran.
  (
    IFS=,
    echo "[${STEPS[*]}]"
  ) >"$out/steps-$part.json"
}

# keep FILE: copies one result to $OUT at once, for the same reason (the archive is packed at the end).
keep() {
  if [ -f "$1" ]; then cp "$1" "$out/"; fi
}

# step NAME SECONDS COMMAND...: runs COMMAND with a timeout, recording its status and time in steps.json; the
# status is also left in LAST_STATUS.
LAST_STATUS=0
step() {
  local name=$1 limit=$2
  shift 2
  local start status=0
  start=$(date +%s%N)
  echo "gpu-check: $name (at most ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" || status=$?
  record "$name" "$status" "$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
  LAST_STATUS=$status
}

# pip_library_dir NAME: prints the folder holding NAME (libcublasLt.so.13, libnccl.so.2) in the GPU machine's
# pip packages (nvidia-cublas, nvidia-nccl-cu13: the ones PyTorch loads), or fails. They live under
# site-packages/nvidia/ (a namespace package), e.g. nvidia/cu13/lib or nvidia/cublas/lib; every nvidia/
# folder python3 knows is searched, in its import order, so a layout change inside a package does not matter.
pip_library_dir() {
  python3 - "$1" <<'PY'
import glob, os, site, sys, sysconfig

roots = []
try:
    import nvidia
    roots += list(nvidia.__path__)
except ImportError:
    pass
for folder in site.getsitepackages() + [site.getusersitepackages(), sysconfig.get_paths()["purelib"]]:
    roots.append(os.path.join(folder, "nvidia"))
for root in roots:
    hits = sorted(glob.glob(os.path.join(root, "**", sys.argv[1]), recursive=True))
    if hits:
        print(os.path.dirname(os.path.abspath(hits[0])))
        sys.exit(0)
sys.exit(1)
PY
}

# The attention kernels (issue 5): CUDA tests against the fp64 CPU references, race-bench sweeps and PyTorch's
# scaled_dot_product_attention at the same shapes. When the kernels match the references: the 20M-token layer
# and Nsight Compute's speed-of-light figures per kernel at 64K; when they do not: compute-sanitizer's
# racecheck and memcheck on small cases with every feature, to find what the host emulation cannot (shared-
# memory races, out-of-bounds accesses). 550 s of step limits either way.
kernels_checks() {
  local bin=$1 work=$2
  local shape=(-B 1 -H 4 -D 128 -L 3 -P 3 --causal --device cuda --dtype bf16 --repeats 5)
  step test_cuda_device 30 "$bin/test_cuda_device" --gtest_output="json:$work/tests_cuda_device.json"
  step test_race_attention_cuda 100 "$bin/test_race_attention_cuda" \
    --gtest_output="json:$work/tests_race_attention_cuda.json"
  local attention_status=$LAST_STATUS
  keep "$work/tests_race_attention_cuda.json"
  step test_softmax_attention_cuda 40 "$bin/test_softmax_attention_cuda" \
    --gtest_output="json:$work/tests_softmax_attention_cuda.json"
  step test_cuda_ops 20 "$bin/test_cuda_ops" --gtest_output="json:$work/tests_cuda_ops.json"
  step test_race_tile 30 "$bin/test_race_tile" --gtest_output="json:$work/tests_race_tile.json"
  step race_bench_1m 60 "$bin/race-bench" attention "${shape[@]}" -T 1048576 --json "$work/race_bench_1m.json"
  keep "$work/race_bench_1m.json"
  if [ "$attention_status" = 0 ]; then
    # One layer at 20M tokens (20 x 2^20), gradients written over the inputs: about 102 GB of the H200's 141.
    step race_bench_20m 60 "$bin/race-bench" attention "${shape[@]}" --in-place -T 20971520 \
      --json "$work/race_bench_20m.json"
    keep "$work/race_bench_20m.json"
    # Duration, memory and compute throughput (% of peak) of each RACE kernel's first forward and backward.
    step ncu_race_64k 30 ncu --clock-control none --target-processes all --kernel-name regex:'span|scan|backward|dbeta' \
      --launch-count 8 --section SpeedOfLight --csv --log-file "$work/ncu_race_64k.csv" \
      "$bin/race-bench" attention "${shape[@]}" -T 65536
    keep "$work/ncu_race_64k.csv"
  else
    local small='Cases/RaceAttentionCuda.MatchesTheFp64Reference/T150_D24_L2P4_*_mask_seg_perhead_learned_B2H3_*'
    step racecheck 50 compute-sanitizer --tool racecheck --error-exitcode 86 --log-file "$work/racecheck.log" \
      "$bin/test_race_attention_cuda" --gtest_filter="$small"
    step memcheck 40 compute-sanitizer --tool memcheck --error-exitcode 86 --log-file "$work/memcheck.log" \
      "$bin/test_race_attention_cuda" --gtest_filter="$small"
  fi
  step race_bench_sweep 70 "$bin/race-bench" attention "${shape[@]}" --sweep --t-min 4096 --max-seconds 50 \
    --json "$work/race_bench_sweep.json"
  step softmax_bench_sweep 40 "$bin/race-bench" attention --impl softmax -B 1 -H 4 -D 128 --causal --device cuda \
    --dtype bf16 --repeats 3 --sweep --t-min 4096 --max-seconds 30 --json "$work/softmax_bench_sweep.json"
  step sdpa_flash 70 python3 "$BUNDLE/sdpa_bench.py" --t-min 4096 --t-max 1048576 --max-seconds 55 \
    --race-json "$work/race_bench_sweep.json" --json "$work/sdpa_flash.json"
  keep "$work/sdpa_flash.json"
}

# The trainer on CUDA (issues 6 and 7): CPU against CUDA training and the device errors (test_trainer), MQAR
# at context 64 trained and evaluated on the GPU (the CPU's numbers are in docs/experiments.md), and
# race-bench model's tokens/s and MFU for the GPT-2 124M shape, beside the PyTorch reference of the same model
# (scripts/torch_gpt_bench.py, SDPA flash, bf16 autocast). race-bench model runs bf16 products (its default on
# CUDA), and once fp32 at 4K for the difference. 525 s of step limits.
trainer_checks() {
  local bin=$1 work=$2
  step test_trainer_cuda 80 "$bin/test_trainer" --gtest_filter='Trainer.Cuda*:Trainer.Device*' \
    --gtest_output="json:$work/tests_trainer_cuda.json"
  keep "$work/tests_trainer_cuda.json"
  mkdir -p "$work/data"
  step mqar_data 20 python3 -c "$UNXZ" "$BUNDLE/data/mqar_64.h5.xz" "$work/data/mqar_64.h5"
  step train_mqar_64 90 "$bin/race-train" --config configs/mqar_64.json --device cuda \
    --set data.path="$work/data/mqar_64.h5" --set run.root="$work/runs"
  step eval_mqar_64 20 "$bin/race-eval" --checkpoint "$work/runs/mqar_64" --device cuda \
    --json "$work/eval_mqar_64.json"
  local model=(--device cuda --layers 12 --d-model 768 --heads 12)
  step model_race_4k 45 "$bin/race-bench" model "${model[@]}" -T 4096 -B 8 --steps 3 --profile \
    --json "$work/model_race_4k.json"
  keep "$work/model_race_4k.json"
  step model_race_4k_fp32 35 "$bin/race-bench" model "${model[@]}" --precision fp32 -T 4096 -B 8 --steps 2 \
    --json "$work/model_race_4k_fp32.json"
  step model_softmax_4k 45 "$bin/race-bench" model "${model[@]}" --attention softmax -T 4096 -B 8 --steps 3 \
    --json "$work/model_softmax_4k.json"
  step model_race_64k 45 "$bin/race-bench" model "${model[@]}" -T 65536 -B 1 --steps 2 --profile \
    --json "$work/model_race_64k.json"
  keep "$work/model_race_64k.json"
  step model_race_256k 55 "$bin/race-bench" model "${model[@]}" -T 262144 -B 1 --recompute --steps 2 \
    --json "$work/model_race_256k.json"
  step torch_gpt_4k 40 python3 scripts/torch_gpt_bench.py -T 4096 -B 8 --warmup 2 --steps 5 \
    --json "$work/torch_gpt_4k.json"
  step torch_gpt_64k 50 python3 scripts/torch_gpt_bench.py -T 65536 -B 1 --warmup 2 --steps 3 \
    --json "$work/torch_gpt_64k.json"
  keep "$work/torch_gpt_64k.json"
}

run_checks() {
  local part=${1:-kernels}
  case "$part" in
    kernels | trainer) ;;
    *)
      echo "gpu-check: run takes 'kernels' (the default) or 'trainer', not '$part'" >&2
      exit 2
      ;;
  esac
  if [ ! -f "$BUNDLE/bin/race-bench.xz" ]; then
    echo "gpu-check: no bundle at $BUNDLE: run 'scripts/gpu-check.sh build' on a build machine and carry it here" >&2
    exit 1
  fi
  # At most 8 files come back from the GPU machine's $OUT: the results are gathered in a work folder and
  # packed into one archive, beside this part's log and steps.
  local out=${OUT:-gpu-check-out}
  mkdir -p "$out"
  exec 3>&1 4>&2 > >(tee "$out/gpu-check-$part.log") 2>&1
  local work
  work=$(mktemp -d)
  export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cuBLASLt and NCCL are not in the bundle (build_bundle): the pip packages' go first on the loader's path.
  local name dir
  for name in libcublasLt.so.13 libnccl.so.2; do
    if dir=$(pip_library_dir "$name"); then
      echo "gpu-check: $name from $dir"
      export LD_LIBRARY_PATH="$dir:$LD_LIBRARY_PATH"
      record "locate_$name" 0 0
    else
      echo "gpu-check: no $name under python3's site-packages/nvidia (pip packages nvidia-cublas," \
        "nvidia-nccl-cu13): CUDA runs find it only in the build machine's toolkit folder; install the package," \
        "or put its folder on LD_LIBRARY_PATH" >&2
      record "locate_$name" 1 0
    fi
  done
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$work/nvidia_smi.csv" 2>&1 || true
  # The binaries travel xz-compressed (build_bundle); unpack them outside the bundle, which may be read-only.
  # One that fails to unpack fails its steps, and the other steps still run.
  local bin
  bin=$(mktemp -d)
  for packed in "$BUNDLE"/bin/*.xz; do
    name=$(basename "$packed" .xz)
    if python3 -c "$UNXZ" "$packed" "$bin/$name"; then
      chmod +x "$bin/$name"
    else
      echo "gpu-check: could not unpack $packed" >&2
    fi
  done
  "${part}_checks" "$bin" "$work"
  (
    IFS=,
    echo "[${STEPS[*]}]"
  ) >"$work/steps.json"
  cp "$work/steps.json" "$out/steps-$part.json"
  # The dataset is the bundle's and would only crowd the 16 MiB a file may bring back.
  tar -C "$work" --exclude=./data -czf "$out/gpu-check-$part.tar.gz" .
  echo "gpu-check: results in $out/gpu-check-$part.tar.gz"
  # Let tee write the log's last lines before the runner collects $OUT.
  exec 1>&3 2>&4 3>&- 4>&-
  wait
}

case "${1:-}" in
  build) build_bundle ;;
  run) run_checks "${2:-kernels}" ;;
  *)
    echo "usage: scripts/gpu-check.sh build | run [kernels|trainer] (see the comment at the top of this script)" >&2
    exit 2
    ;;
esac
