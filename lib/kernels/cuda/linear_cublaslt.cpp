// GemmContext: the linear layer's three products through cuBLASLt. fp32 operands: CUBLAS_COMPUTE_32F (fp32,
// no TF32) or CUBLAS_COMPUTE_32F_FAST_16BF (bf16 tensor cores, fp32 sums), per GemmPrecision. bf16 operands:
// A and B CUDA_R_16BF, C and D CUDA_R_32F, CUBLAS_COMPUTE_32F with fp32 alpha and beta: products of the
// stored bf16 values with fp32 sums (on the tensor cores where the layout allows; the heuristic chooses). The
// bias and the outputs are fp32 in both.
// Each call describes its product with gemm_layout.h's column-major mapping, asks cuBLASLt's heuristic for
// an algorithm the first time it sees that shape, layout, operand type and pointer alignment, and reuses the
// answer from then on; the descriptors themselves are rebuilt per call (small host objects, microseconds).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "core/error.h"
#include "kernels/cuda/column_sums_cuda.h"
#include "kernels/cuda/cublaslt_api.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise_cuda.h"
#include "kernels/cuda/gemm_layout.h"
#include "kernels/cuda/linear_cuda.h"

namespace race::kernels::cuda {
namespace {

// What to try when a cuBLASLt call fails.
const char* cublas_hint(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "cuBLASLt could not start: check nvidia-smi, and that the libcublasLt.so.13 the loader finds "
             "is CUDA 13's (scripts/gpu-check.sh run takes the pip package nvidia-cublas's)";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "out of memory inside cuBLASLt: reduce the batch size or the sequence length";
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "cuBLASLt does not support this product (shape, alignment, bias epilogue) on this GPU: report "
             "the shape";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "a cuBLASLt kernel failed (an earlier kernel's fault shows here too): rerun under "
             "compute-sanitizer";
    default:
      return "cuBLASLt rejected an argument, a bug in linear_cublaslt.cpp's descriptors: report it with "
             "the shape";
  }
}

void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  fail("{}:{}: {} failed: {} ({}); hint: {}", file, line, call, cublaslt().GetStatusName(status),
       cublaslt().GetStatusString(status), cublas_hint(status));
}

#define RACE_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)

// Owners of cuBLASLt's descriptors, so an exception between creation and use leaks nothing.
struct MatmulDescDeleter {
  void operator()(cublasLtMatmulDesc_t d) const { cublaslt().MatmulDescDestroy(d); }
};
struct LayoutDeleter {
  void operator()(cublasLtMatrixLayout_t d) const { cublaslt().MatrixLayoutDestroy(d); }
};
struct PreferenceDeleter {
  void operator()(cublasLtMatmulPreference_t d) const { cublaslt().MatmulPreferenceDestroy(d); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, MatmulDescDeleter>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutDeleter>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, PreferenceDeleter>;

template <class T>
void set_attribute(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  RACE_CUBLAS_CHECK(cublaslt().MatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}
template <class T>
void set_preference(cublasLtMatmulPreference_t preference, cublasLtMatmulPreferenceAttributes_t attribute,
                    const T& value) {
  RACE_CUBLAS_CHECK(cublaslt().MatmulPreferenceSetAttribute(preference, attribute, &value, sizeof(value)));
}

// A column-major (rows, cols) matrix of `type` with leading dimension ld (in elements).
Layout layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld) {
  cublasLtMatrixLayout_t raw = nullptr;
  RACE_CUBLAS_CHECK(cublaslt().MatrixLayoutCreate(&raw, type, static_cast<uint64_t>(rows),
                                               static_cast<uint64_t>(cols), ld));
  return Layout(raw);
}

cudaDataType_t data_type(DType type) { return type == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

uint32_t alignment_of(const void* p) { return gemm::alignment_bytes(reinterpret_cast<uintptr_t>(p)); }

constexpr uint32_t kBiasEpilogueAlignment = 16;

// 32 MiB: what NVIDIA suggests for cuBLASLt on Hopper; split-K algorithms keep their partial products here.
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// Split-K algorithms may only reduce their partial products in the workspace, in a separate step (the
// COMPUTE_TYPE and OUTPUT_TYPE schemes, identical in fp32), or not split at all. INPLACE, which reduces in
// the output buffer ordered by counters, is excluded: with a fixed algorithm per shape the rest is
// run-to-run deterministic (cuBLAS guarantees bitwise reproducibility for one toolkit, architecture and SM
// count on one stream), and splitting stays available for dW, whose k = N is long while out x in is small.
constexpr uint32_t kReductionSchemes = CUBLASLT_REDUCTION_SCHEME_NONE |
                                       CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE |
                                       CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;

}  // namespace

struct GemmContext::State {
  // What the heuristic's answer depends on: the product (transposes, sizes, leading dimensions), the
  // operands' type (which sets A's and B's types and the compute type), whether the bias epilogue runs, and
  // the alignments of A, B, C (= D) and the bias.
  using Key = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, DType, bool,
                         uint32_t, uint32_t, uint32_t, uint32_t>;

  cublasComputeType_t fp32_compute_type = CUBLAS_COMPUTE_32F;  // for fp32 operands, per GemmPrecision
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;  // (kWorkspaceBytes) bytes
  std::map<Key, cublasLtMatmulAlgo_t> algorithms;

  ~State() {
    // Errors are ignored: a destructor cannot throw, and a failed free after a fault changes nothing.
    if (workspace != nullptr) cudaFree(workspace);
    if (handle != nullptr) cublaslt().Destroy(handle);
  }

  // c (m, n) fp32 = a b + beta c, column-major as `g` describes, a and b of type `operands`, plus the fp32
  // bias (m) when given.
  void matmul(const gemm::ColumnMajorGemm& g, const void* a, const void* b, DType operands, float beta, float* c,
              const float* bias) {
    // bf16 operands need no FAST_16BF: plain 32F compute with bf16 A and B is cuBLASLt's bf16 tensor-core
    // product with fp32 sums (its table of supported types: A, B CUDA_R_16BF; C, D CUDA_R_32F; scale 32F).
    const cublasComputeType_t compute_type = operands == DType::bf16 ? CUBLAS_COMPUTE_32F : fp32_compute_type;
    cublasLtMatmulDesc_t raw_desc = nullptr;
    RACE_CUBLAS_CHECK(cublaslt().MatmulDescCreate(&raw_desc, compute_type, CUDA_R_32F));
    const MatmulDesc desc(raw_desc);
    set_attribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSA, g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N);
    set_attribute(desc.get(), CUBLASLT_MATMUL_DESC_TRANSB, g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N);
    if (bias != nullptr) {
      set_attribute(desc.get(), CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
      set_attribute(desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
      // The default (-1) already means D's type, fp32; said explicitly so bf16 A and B cannot change it.
      set_attribute(desc.get(), CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, static_cast<int32_t>(CUDA_R_32F));
    }
    const cudaDataType_t ab_type = data_type(operands);
    const Layout a_layout = layout(ab_type, g.a_rows(), g.a_cols(), g.lda),
                 b_layout = layout(ab_type, g.b_rows(), g.b_cols(), g.ldb),
                 c_layout = layout(CUDA_R_32F, g.m, g.n, g.ldc);

    const uint32_t align_a = alignment_of(a), align_b = alignment_of(b), align_c = alignment_of(c);
    const Key key = std::make_tuple(g.transpose_a, g.transpose_b, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, operands,
                                    bias != nullptr, align_a, align_b, align_c, alignment_of(bias));
    auto found = algorithms.find(key);
    if (found == algorithms.end()) {
      cublasLtMatmulPreference_t raw_preference = nullptr;
      RACE_CUBLAS_CHECK(cublaslt().MatmulPreferenceCreate(&raw_preference));
      const Preference preference(raw_preference);
      set_preference(preference.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{kWorkspaceBytes});
      set_preference(preference.get(), CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, kReductionSchemes);
      set_preference(preference.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
      set_preference(preference.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
      set_preference(preference.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c);
      set_preference(preference.get(), CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c);
      cublasLtMatmulHeuristicResult_t result{};
      int count = 0;
      RACE_CUBLAS_CHECK(cublaslt().MatmulAlgoGetHeuristic(handle, desc.get(), a_layout.get(), b_layout.get(),
                                                       c_layout.get(), c_layout.get(), preference.get(), 1,
                                                       &result, &count));
      if (count == 0) {
        const bool fp32 = operands == DType::f32 && compute_type == CUBLAS_COMPUTE_32F;
        fail(
            "cuBLASLt has no {} algorithm for the column-major product m = {}, n = {}, k = {} (op(A) {}, "
            "op(B) {}, bias {}, alignments {}/{}/{} bytes); hint: report the shape, or try --precision {}",
            operands == DType::bf16 ? "bf16-operand" : (fp32 ? "fp32" : "bf16"), g.m, g.n, g.k,
            g.transpose_a ? "T" : "N", g.transpose_b ? "T" : "N", bias != nullptr ? "yes" : "no", align_a,
            align_b, align_c, fp32 ? "bf16" : "fp32");
      }
      found = algorithms.emplace(key, result.algo).first;
    }
    const float alpha = 1.f;
    RACE_CUBLAS_CHECK(cublaslt().Matmul(handle, desc.get(), &alpha, a, a_layout.get(), b, b_layout.get(), &beta,
                                     c, c_layout.get(), c, c_layout.get(), &found->second, workspace,
                                     kWorkspaceBytes, nullptr));
  }
};

GemmContext::GemmContext(GemmPrecision precision) : state_(std::make_unique<State>()) {
  state_->fp32_compute_type = precision == GemmPrecision::bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
  RACE_CUBLAS_CHECK(cublaslt().Create(&state_->handle));
  RACE_CUDA_CHECK(cudaMalloc(&state_->workspace, kWorkspaceBytes));
}

GemmContext::~GemmContext() = default;

void GemmContext::linear_forward(float* y, const void* x, const void* weight, DType operands, const float* bias,
                                 int64_t rows, int64_t in, int64_t out) {
  if (const std::string error = gemm::size_error("linear_forward", rows, in, out); !error.empty())
    throw Error(error);
  if (rows == 0) return;
  if (y == nullptr || x == nullptr || weight == nullptr)
    fail("linear_forward (CUDA): y, x and weight must not be null");
  // cuBLASLt's bias epilogue wants an aligned vector (16 bytes is safe on every GPU), and a bias inside the
  // parameter arena can start anywhere: a misaligned one goes into y first and the product adds onto it.
  if (bias != nullptr && alignment_of(bias) < kBiasEpilogueAlignment) {
    broadcast_rows(y, bias, rows, out);                                                    // y (N, out) = b
    state_->matmul(gemm::forward_gemm(rows, in, out), weight, x, operands, 1.f, y, nullptr);  // y^T += W x^T
    return;
  }
  state_->matmul(gemm::forward_gemm(rows, in, out), weight, x, operands, 0.f, y, bias);  // y^T (out, N) = W x^T + b
}

void GemmContext::linear_backward(float* dx, float* dweight, float* dbias, const void* dy, const void* x,
                                  const void* weight, DType operands, int64_t rows, int64_t in, int64_t out) {
  if (const std::string error = gemm::size_error("linear_backward", rows, in, out); !error.empty())
    throw Error(error);
  if (rows == 0) return;
  if (dy == nullptr) fail("linear_backward (CUDA): dy is null");
  if (dx != nullptr) {
    if (weight == nullptr) fail("linear_backward (CUDA): weight is null (needed for dx)");
    state_->matmul(gemm::input_grad_gemm(rows, in, out), weight, dy, operands, 0.f, dx, nullptr);  // dx^T = W^T dy^T
  }
  if (dweight != nullptr) {
    if (x == nullptr) fail("linear_backward (CUDA): x is null (needed for dweight)");
    state_->matmul(gemm::weight_grad_gemm(rows, in, out), x, dy, operands, 1.f, dweight, nullptr);  // dW^T += x^T dy
  }
  if (dbias != nullptr) column_sums(dbias, dy, operands, rows, out);
}

}  // namespace race::kernels::cuda
