#!/usr/bin/env bash
# The CUDA checks that need a GPU, in two halves: `build` on a build machine (CUDA toolkit, no GPU needed),
# `run` on a GPU machine that has the NVIDIA driver, the CUDA 13 runtime, python3 and PyTorch but none of
# our other libraries.
#
#   scripts/gpu-check.sh build   Builds for sm_90a only (Hopper: H100/H200) in build-gpu-check/ and collects
#                                build-gpu-check/bundle/: the CUDA test binaries (test_cuda_ops xz-compressed),
#                                race-bench, the shared libraries they need beyond glibc/libstdc++/libgcc
#                                (HDF5 and its curl/ssl chain, spdlog, fmt, libgomp, ...) and the PyTorch
#                                comparison script. Not cuBLAS: libcublasLt.so.13 (the linear layer's
#                                products, about 540 MB) and libcublas.so.13 are far too large to carry.
#                                Fails if the bundle passes 64 MiB or a binary cannot start here (with the
#                                toolkit's own libcublasLt, wherever ldd finds it).
#   scripts/gpu-check.sh run     On the GPU machine, from the repository root with the bundle in place:
#                                first finds the libcublasLt.so.13 of PyTorch's pip package nvidia-cublas
#                                (CUDA 13; under site-packages/nvidia/, e.g. nvidia/cu13/lib or
#                                nvidia/cublas/lib) and puts its folder first on LD_LIBRARY_PATH; if it is not
#                                there, says so and records a failed step `locate_cublaslt` (the binaries
#                                then start only if the loader finds another libcublasLt.so.13, e.g. in the
#                                build machine's toolkit folder that their RUNPATH names). Then runs
#                                everything below with per-step timeouts (470 s in all, under 8 minutes) and
#                                writes JSON into $OUT (default ./gpu-check-out):
#     tests_*.json               gtest reports: test_cuda_device, test_race_attention_cuda and
#                                test_softmax_attention_cuda (the kernels on the GPU against the fp64 CPU
#                                references), test_cuda_ops (every model::Ops method and a tiny Gpt on CUDA
#                                against CpuOps), test_race_tile (host emulation)
#     race_bench_*.json          race-bench attention --device cuda: B=1 H=4 D=128 L=3 P=3 bf16 causal at
#                                T = 2^20, and a doubling sweep from T = 4096
#     softmax_bench_sweep.json   our CUDA flash softmax at the same shape, doubling from T = 4096
#     sdpa_flash.json            torch scaled_dot_product_attention (flash backend) at the same shapes,
#                                with the race-bench timings beside it (scripts/sdpa_bench.py)
#     steps.json                 each step's exit status and seconds, locate_cublaslt's among them
#
# build-gpu-check/ is ignored by git (build*/), so a tool that copies only the tracked and untracked-but-not-
# ignored files of the working tree must be told to carry the bundle, e.g. with the device runner:
#   run(command="scripts/gpu-check.sh run", carry=["build-gpu-check/bundle"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build-gpu-check
BUNDLE=$BUILD/bundle
MAX_BUNDLE_BYTES=$((64 * 1024 * 1024))
BINARIES=(tests/test_cuda_device tests/test_race_attention_cuda tests/test_softmax_attention_cuda tests/test_cuda_ops
  tests/test_race_tile apps/race-bench)

# Libraries every Linux machine with a C++ runtime has; the bundle uses the GPU machine's own. build_bundle
# prints the newest glibc and libstdc++ symbol versions the bundle needs from them.
is_system_library() {
  case "$(basename "$1")" in
    libc.so.* | libm.so.* | libstdc++.so.* | libgcc_s.so.* | ld-linux*.so.* | libresolv.so.* | libpthread.so.* | \
      libdl.so.* | librt.so.* | linux-vdso.so.*) return 0 ;;
    *) return 1 ;;
  esac
}

# cuBLAS's libraries stay out of the bundle (libcublasLt.so.13 alone is about 540 MB): `run` takes them from
# the GPU machine's pip package nvidia-cublas instead.
is_cublas_library() {
  case "$(basename "$1")" in
    libcublasLt.so.* | libcublas.so.*) return 0 ;;
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
    test_cuda_ops test_race_tile race-bench
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
  for b in "${BINARIES[@]}"; do cp "$BUILD/$b" "$BUNDLE/bin/"; done
  cp scripts/sdpa_bench.py "$BUNDLE/"
  local needed
  needed=$(for b in "$BUNDLE"/bin/*; do ldd "$b" | awk '$3 ~ /^\// {print $3}'; done | sort -u)
  local lib cublaslt_dir=""
  for lib in $needed; do
    if is_cublas_library "$lib"; then
      case "$(basename "$lib")" in libcublasLt.so.*) cublaslt_dir=$(dirname "$lib") ;; esac
    elif ! is_system_library "$lib"; then
      cp -L "$lib" "$BUNDLE/lib/"
    fi
  done
  if [ -z "$cublaslt_dir" ]; then
    echo "gpu-check: no binary needs libcublasLt, or ldd cannot find it here (is the CUDA toolkit's lib64 on the" \
      "loader's path?)" >&2
    exit 1
  fi
  strip --strip-unneeded "$BUNDLE"/bin/* "$BUNDLE"/lib/* 2>/dev/null || true
  local glibc glibcxx
  glibc=$(for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do objdump -T "$f" | grep -o 'GLIBC_[0-9.]*' || true; done | sort -uV | tail -1)
  glibcxx=$(for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do objdump -T "$f" | grep -o 'GLIBCXX_[0-9.]*' || true; done | sort -uV | tail -1)
  echo "gpu-check: the bundle needs $glibc and $glibcxx from the GPU machine"
  # Every binary must start with only the bundle's libraries, the system ones and cuBLASLt (no GPU needed for
  # this); here cuBLASLt is the toolkit's, as `run` will put the pip package's in its place.
  echo "gpu-check: starting the binaries with cuBLASLt from $cublaslt_dir (left out of the bundle)"
  for b in "$BUNDLE"/bin/test_*; do
    LD_LIBRARY_PATH="$BUNDLE/lib:$cublaslt_dir" "$b" --gtest_list_tests >/dev/null
  done
  LD_LIBRARY_PATH="$BUNDLE/lib:$cublaslt_dir" "$BUNDLE/bin/race-bench" --help >/dev/null
  # test_cuda_ops holds OpenBLAS's archive (about 30 MB, mostly kernels for every x86 CPU): the bundle would
  # pass 64 MiB. xz shrinks it to about 3 MB; `run` unpacks it with python3's lzma module.
  xz -6 -T"$(nproc)" "$BUNDLE/bin/test_cuda_ops"
  local bytes
  bytes=$(du -sb "$BUNDLE" | cut -f1)
  echo "gpu-check: bundle $BUNDLE: $((bytes / 1024 / 1024)) MiB ($bytes bytes), $(ls "$BUNDLE/lib" | wc -l) libraries"
  if [ "$bytes" -gt "$MAX_BUNDLE_BYTES" ]; then
    echo "gpu-check: the bundle is over 64 MiB: too large to carry" >&2
    exit 1
  fi
  echo "gpu-check: every binary starts; carry $BUNDLE to the GPU machine and run: scripts/gpu-check.sh run"
}

# record NAME STATUS SECONDS: one entry of steps.json.
STEPS=()
record() {
  STEPS+=("{\"step\": \"$1\", \"status\": $2, \"seconds\": $3, \"timed_out\": $([ "$2" = 124 ] && echo true || echo false)}")
  echo "gpu-check: $1: status $2 in ${3}s"
}

# step NAME SECONDS COMMAND...: runs COMMAND with a timeout, recording its status and time in steps.json.
step() {
  local name=$1 limit=$2
  shift 2
  local start status=0
  start=$(date +%s%N)
  echo "gpu-check: $name (at most ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" || status=$?
  record "$name" "$status" "$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.3f", ns / 1e9 }')"
}

# Prints the folder holding the pip package nvidia-cublas's libcublasLt.so.13 (the one PyTorch loads), or
# fails. The package lives under site-packages/nvidia/ (a namespace package), in nvidia/cu13/lib for the
# CUDA 13 wheels and nvidia/cublas/lib for older ones; every nvidia/ folder python3 knows is searched, in
# its import order, so a layout change inside the package does not matter.
cublaslt_dir() {
  python3 - <<'PY'
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
    hits = sorted(glob.glob(os.path.join(root, "**", "libcublasLt.so.13"), recursive=True))
    if hits:
        print(os.path.dirname(os.path.abspath(hits[0])))
        sys.exit(0)
sys.exit(1)
PY
}

run_checks() {
  if [ ! -x "$BUNDLE/bin/race-bench" ]; then
    echo "gpu-check: no bundle at $BUNDLE: run 'scripts/gpu-check.sh build' on a build machine and carry it here" >&2
    exit 1
  fi
  local out=${OUT:-gpu-check-out}
  mkdir -p "$out"
  export LD_LIBRARY_PATH="$PWD/$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # cuBLASLt is not in the bundle (build_bundle): the pip package's goes first on the loader's path.
  local cublaslt
  if cublaslt=$(cublaslt_dir); then
    echo "gpu-check: cuBLASLt from $cublaslt"
    export LD_LIBRARY_PATH="$cublaslt:$LD_LIBRARY_PATH"
    record locate_cublaslt 0 0
  else
    echo "gpu-check: no libcublasLt.so.13 under python3's site-packages/nvidia (pip package nvidia-cublas):" \
      "the binaries start only if the loader finds another one; install the package, or put a CUDA 13" \
      "libcublasLt's folder on LD_LIBRARY_PATH" >&2
    record locate_cublaslt 1 0
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/nvidia_smi.csv" 2>&1 || true
  local bin=$BUNDLE/bin
  # test_cuda_ops travels xz-compressed (build_bundle); unpack it outside the bundle, which may be read-only.
  # If that fails, its step fails (no binary) and the other steps still run.
  local unpacked
  unpacked=$(mktemp -d)
  if python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$bin/test_cuda_ops.xz" "$unpacked/test_cuda_ops"; then
    chmod +x "$unpacked/test_cuda_ops"
  else
    echo "gpu-check: could not unpack $bin/test_cuda_ops.xz" >&2
  fi
  local shape=(-B 1 -H 4 -D 128 -L 3 -P 3 --causal --device cuda --dtype bf16 --repeats 5)
  step test_cuda_device 30 "$bin/test_cuda_device" --gtest_output="json:$out/tests_cuda_device.json"
  step test_race_attention_cuda 100 "$bin/test_race_attention_cuda" --gtest_output="json:$out/tests_race_attention_cuda.json"
  step test_softmax_attention_cuda 40 "$bin/test_softmax_attention_cuda" \
    --gtest_output="json:$out/tests_softmax_attention_cuda.json"
  step test_cuda_ops 20 "$unpacked/test_cuda_ops" --gtest_output="json:$out/tests_cuda_ops.json"
  step test_race_tile 30 "$bin/test_race_tile" --gtest_output="json:$out/tests_race_tile.json"
  step race_bench_1m 60 "$bin/race-bench" attention "${shape[@]}" -T 1048576 --json "$out/race_bench_1m.json"
  step race_bench_sweep 80 "$bin/race-bench" attention "${shape[@]}" --sweep --t-min 4096 --max-seconds 60 \
    --json "$out/race_bench_sweep.json"
  step softmax_bench_sweep 40 "$bin/race-bench" attention --impl softmax -B 1 -H 4 -D 128 --causal --device cuda \
    --dtype bf16 --repeats 3 --sweep --t-min 4096 --max-seconds 30 --json "$out/softmax_bench_sweep.json"
  step sdpa_flash 70 python3 "$BUNDLE/sdpa_bench.py" --t-min 4096 --t-max 1048576 --max-seconds 55 \
    --race-json "$out/race_bench_sweep.json" --json "$out/sdpa_flash.json"
  (
    IFS=,
    echo "[${STEPS[*]}]"
  ) >"$out/steps.json"
  echo "gpu-check: results in $out"
}

case "${1:-}" in
  build) build_bundle ;;
  run) run_checks ;;
  *)
    echo "usage: scripts/gpu-check.sh build|run (see the comment at the top of this script)" >&2
    exit 2
    ;;
esac
