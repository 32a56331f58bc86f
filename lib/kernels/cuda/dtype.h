// The element type of a CUDA kernel's tensors where a caller may pass fp32 or bf16 (the attention kernels'
// q, k, v; the model kernels' outputs that only matrix products read, and the products' operands): the
// kernels take such tensors as void pointers with a DType. Device code stores bf16 as __nv_bfloat16,
// rounded to nearest even. No CUDA headers.
#pragma once

namespace race::kernels::cuda {

enum class DType { f32, bf16 };

}  // namespace race::kernels::cuda
