// Checks shared by every Ops implementation.
#include "model/ops.h"

#include "core/error.h"

namespace race::model {

int64_t element_bytes(ElementType type) { return type == ElementType::bf16 ? 2 : 4; }

const char* element_type_name(ElementType type) { return type == ElementType::bf16 ? "bf16" : "fp32"; }

const float* fp32_data(Operand x, const char* what) {
  if (x.type != ElementType::fp32)
    fail("{} is a {} operand where this backend computes in fp32 only; hint: use --precision fp32", what,
         element_type_name(x.type));
  return static_cast<const float*>(x.data);
}

float* fp32_data(OperandOut x, const char* what) {
  return const_cast<float*>(fp32_data(Operand(x), what));
}

kernels::RaceAttentionInputs fp32_data(const RaceOperands& x, const char* what) {
  return {fp32_data(x.q, what), fp32_data(x.k, what), fp32_data(x.v, what), x.planes, x.beta, x.key_mask,
          x.segment_ids};
}

kernels::RaceAttentionGradients fp32_data(const RaceGradientOperands& x, const char* what) {
  return {fp32_data(x.dq, what), fp32_data(x.dk, what), fp32_data(x.dv, what), x.dbeta};
}

kernels::SoftmaxAttentionInputs fp32_data(const SoftmaxOperands& x, const char* what) {
  return {fp32_data(x.q, what), fp32_data(x.k, what), fp32_data(x.v, what), x.key_mask, x.segment_ids};
}

kernels::SoftmaxAttentionGradients fp32_data(const SoftmaxGradientOperands& x, const char* what) {
  return {fp32_data(x.dq, what), fp32_data(x.dk, what), fp32_data(x.dv, what)};
}

OperandOut OperandOut::at(int64_t index) const {
  return {static_cast<char*>(data) + index * element_bytes(type), type};
}

void check_param_ranges(const std::vector<ParamRange>& ranges) {
  int64_t end = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const ParamRange& r = ranges[i];
    if (r.offset < 0 || r.count < 0)
      fail("adamw: range {} has offset {} and count {}; both must be >= 0", i, r.offset, r.count);
    if (r.offset < end)
      fail("adamw: range {} starts at {}, before the previous range ends ({}); ranges must be in increasing "
           "order and must not overlap",
           i, r.offset, end);
    end = r.offset + r.count;
  }
}

}  // namespace race::model
