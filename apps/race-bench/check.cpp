// race-bench check: reading and validating IN.h5, running the CPU kernels once, writing OUT.h5.
// Validation is exhaustive up front because the files come from other programs: a wrong shape must come
// back as a sentence about the file, not as a kernel's internal check or a silent misread.
#include "check.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

#include "core/error.h"
#include "core/hdf5_io.h"
#include "kernels/cpu/race_attention_cpu.h"
#include "kernels/cpu/softmax_attention_cpu.h"
#ifdef RACE_HAVE_CUDA
#include "cuda_check.h"
#endif

namespace race::bench {

namespace {

namespace kernels = race::kernels;
using Shape = std::vector<std::int64_t>;

std::string shape_text(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

constexpr std::string_view kFloatTypes = "float32 or float64";
constexpr int kMaxBits = 12;  // kernels::validate's limit on P

// IN.h5 with checks that phrase every problem in terms of the file's own datasets and attributes.
class Input {
 public:
  explicit Input(const std::filesystem::path& path) : file_(Hdf5File::open(path)) {}

  const Hdf5File& file() const { return file_; }
  bool has(std::string_view dataset) const { return file_.has_dataset(dataset); }

  // A float dataset of the given rank with every dimension >= 1; layout like "[B,H,T,D]" for messages.
  Shape float_dataset(std::string_view dataset, std::size_t rank, std::string_view layout) const {
    return dataset_shape(dataset, {rank}, layout, true);
  }
  // A float dataset of either rank.
  Shape float_dataset(std::string_view dataset, std::size_t rank, std::size_t other_rank,
                      std::string_view layout) const {
    return dataset_shape(dataset, {rank, other_rank}, layout, true);
  }
  Shape integer_dataset(std::string_view dataset, std::size_t rank, std::string_view layout) const {
    return dataset_shape(dataset, {rank}, layout, false);
  }

  void expect_shape(std::string_view dataset, const Shape& shape, const Shape& expected, std::string_view why) const {
    if (shape != expected)
      fail("{}: dataset \"{}\" has shape {}, expected {} ({})", name(), dataset, shape_text(shape),
           shape_text(expected), why);
  }

  // A string attribute of "/" that must be one of `choices`; `fallback` when absent, or required if empty.
  std::string choice(std::string_view attribute, const std::vector<std::string>& choices,
                     const std::string& fallback) const {
    const std::string expected = fmt::format("\"{}\"", fmt::join(choices, "\" or \""));
    if (!file_.has_attribute("/", attribute)) {
      if (fallback.empty()) fail("{}: attribute \"{}\" not found on \"/\", expected {}", name(), attribute, expected);
      return fallback;
    }
    const std::string value = with_expectation(expected, [&] { return file_.read_string_attribute("/", attribute); });
    if (std::find(choices.begin(), choices.end(), value) == choices.end())
      fail("{}: attribute \"{}\" is \"{}\", expected {}", name(), attribute, value, expected);
    return value;
  }

  std::optional<std::int64_t> integer(std::string_view attribute, std::string_view expected) const {
    if (!file_.has_attribute("/", attribute)) return std::nullopt;
    return with_expectation(expected, [&] { return file_.read_int64_attribute("/", attribute); });
  }

  std::optional<double> number(std::string_view attribute, std::string_view expected) const {
    if (!file_.has_attribute("/", attribute)) return std::nullopt;
    return with_expectation(expected, [&] { return file_.read_double_attribute("/", attribute); });
  }

  [[noreturn]] void bad_attribute(std::string_view attribute, const std::string& value,
                                  std::string_view expected) const {
    fail("{}: attribute \"{}\" is {}, expected {}", name(), attribute, value, expected);
  }

  const std::string& name() const { return file_.name(); }

 private:
  Shape dataset_shape(std::string_view dataset, const std::vector<std::size_t>& ranks, std::string_view layout,
                      bool floating) const {
    const std::string_view types = floating ? kFloatTypes : std::string_view("an integer type");
    if (!file_.has_dataset(dataset))
      fail("{}: dataset \"{}\" not found (expected {} {})", name(), dataset, types, layout);
    const DatasetInfo info = file_.dataset_info(dataset);
    const bool type_ok =
        floating ? info.element_class == ElementClass::floating && (info.element_size == 4 || info.element_size == 8)
                 : info.element_class == ElementClass::integer;
    if (!type_ok) fail("{}: dataset \"{}\" has type {}, expected {}", name(), dataset, info.type_name, types);
    if (std::find(ranks.begin(), ranks.end(), info.shape.size()) == ranks.end())
      fail("{}: dataset \"{}\" has shape {}, expected rank {} {}", name(), dataset, shape_text(info.shape),
           fmt::join(ranks, " or "), layout);
    for (const std::int64_t dim : info.shape)
      if (dim < 1)
        fail("{}: dataset \"{}\" has shape {}, expected {} with every dimension >= 1", name(), dataset,
             shape_text(info.shape), layout);
    return info.shape;
  }

  // Adds what was expected to a read error (e.g. an integer attribute stored as a string).
  template <typename Read>
  std::invoke_result_t<Read> with_expectation(std::string_view expected, Read&& read) const {
    try {
      return read();
    } catch (const Error& e) {
      fail("{} (expected {})", e.what(), expected);
    }
  }

  Hdf5File file_;
};

// Everything the kernels need, read and checked.
struct Problem {
  std::string impl;
  bool causal = true;
  std::int64_t B = 0, H = 0, T = 0, D = 0;
  ArrayData<float> q, k, v, dout;  // dout empty without backward
  std::vector<std::uint8_t> key_mask;
  std::vector<std::int32_t> segment_ids;
  // race
  kernels::RaceAttentionShape race_shape;
  kernels::RaceAttentionOptions race_options;
  ArrayData<float> planes;
  std::vector<float> beta;
  // softmax
  kernels::SoftmaxAttentionOptions softmax_options;

  bool backward() const { return !dout.values.empty(); }
};

void read_race_parts(const Input& in, Problem& p) {
  const std::string estimator = in.choice("estimator", {"bucket", "ratio"}, "bucket");
  p.race_options.causal = p.causal;
  p.race_options.estimator = estimator == "ratio" ? kernels::RaceEstimator::ratio : kernels::RaceEstimator::bucket;
  const double eps = in.number("eps", "a number > 0").value_or(1e-6);
  if (!(eps > 0) || !std::isfinite(eps)) in.bad_attribute("eps", fmt::format("{}", eps), "a finite number > 0");
  p.race_options.eps = static_cast<float>(eps);

  const std::string planes_layout = fmt::format("[L,P,{0}] or [{1},L,P,{0}] (D and H of \"q\")", p.D, p.H);
  const Shape planes = in.float_dataset("planes", 3, 4, planes_layout);
  const std::size_t rank = planes.size();
  const bool per_head = rank == 4;
  if (planes.back() != p.D || (per_head && planes.front() != p.H))
    fail("{}: dataset \"planes\" has shape {}, expected {}", in.name(), shape_text(planes), planes_layout);
  const std::int64_t L = planes[rank - 3], P = planes[rank - 2];
  if (P > kMaxBits)
    fail(
        "{}: dataset \"planes\" has shape {}: P = {} hyperplanes per table, expected 1 <= P <= {} "
        "(2^P buckets per table)",
        in.name(), shape_text(planes), P, kMaxBits);
  if (L > std::numeric_limits<int>::max())
    fail("{}: dataset \"planes\" has shape {}: L = {} tables is too many", in.name(), shape_text(planes), L);
  p.race_shape = {p.B, p.H, p.T, p.D, static_cast<int>(L), static_cast<int>(P), per_head};
  p.planes = in.file().read_float32("planes");

  if (in.has("beta")) {
    in.expect_shape("beta", in.float_dataset("beta", 1, fmt::format("[{}] ([H] of \"q\")", p.H)), {p.H},
                    "[H] of \"q\"");
    p.beta = in.file().read_float32("beta").values;
    for (const float b : p.beta)
      if (!std::isfinite(b)) fail("{}: dataset \"beta\" holds {}, expected finite values", in.name(), b);
  } else {
    const double beta = in.number("beta", "a finite number").value_or(1.0);
    if (!std::isfinite(beta)) in.bad_attribute("beta", fmt::format("{}", beta), "a finite number");
    p.beta.assign(static_cast<std::size_t>(p.H), static_cast<float>(beta));
  }
}

void read_softmax_parts(const Input& in, Problem& p) {
  p.softmax_options.causal = p.causal;
  const std::int64_t window = in.integer("window", "an integer >= 0").value_or(0);
  if (window < 0) in.bad_attribute("window", std::to_string(window), "an integer >= 0 (0 = full attention)");
  p.softmax_options.window = window;
  const double scale = in.number("scale", "a number >= 0").value_or(0.0);
  if (!(scale >= 0) || !std::isfinite(scale))
    in.bad_attribute("scale", fmt::format("{}", scale), "a finite number >= 0 (0 = 1/sqrt(D))");
  p.softmax_options.scale = static_cast<float>(scale);
}

Problem read_problem(const Input& in) {
  Problem p;
  p.impl = in.choice("impl", {"race", "softmax"}, "");
  const auto causal = in.integer("causal", "0 or 1");
  if (!causal) fail("{}: attribute \"causal\" not found on \"/\", expected 0 or 1", in.name());
  if (*causal != 0 && *causal != 1) in.bad_attribute("causal", std::to_string(*causal), "0 or 1");
  p.causal = *causal == 1;

  const Shape shape = in.float_dataset("q", 4, "[B,H,T,D]");
  p.B = shape[0], p.H = shape[1], p.T = shape[2], p.D = shape[3];
  for (const char* name : {"k", "v"})
    in.expect_shape(name, in.float_dataset(name, 4, "[B,H,T,D]"), shape, "same as \"q\"");
  if (in.has("dout")) in.expect_shape("dout", in.float_dataset("dout", 4, "[B,H,T,D]"), shape, "same as \"q\"");
  const Shape bt{p.B, p.T};
  const std::string bt_layout = fmt::format("{} ([B,T] of \"q\")", shape_text(bt));
  if (in.has("key_mask"))
    in.expect_shape("key_mask", in.integer_dataset("key_mask", 2, bt_layout), bt, "[B,T] of \"q\"");
  if (in.has("segment_ids"))
    in.expect_shape("segment_ids", in.integer_dataset("segment_ids", 2, bt_layout), bt, "[B,T] of \"q\"");

  if (p.impl == "race")
    read_race_parts(in, p);
  else
    read_softmax_parts(in, p);

  // Shapes are settled; only now read the (possibly large) tensors.
  p.q = in.file().read_float32("q");
  p.k = in.file().read_float32("k");
  p.v = in.file().read_float32("v");
  if (in.has("dout")) p.dout = in.file().read_float32("dout");
  if (in.has("key_mask"))
    for (const std::int64_t m : in.file().read_int64("key_mask").values) p.key_mask.push_back(m != 0);
  if (in.has("segment_ids")) p.segment_ids = in.file().read_int32("segment_ids").values;
  return p;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

template <typename T>
const T* or_null(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

}  // namespace

CheckSummary run_check(const std::filesystem::path& in_path, const std::filesystem::path& out_path,
                       const std::string& device) {
  const Problem p = read_problem(Input(in_path));
  if (device == "cuda" && p.impl != "race")
    fail("race-bench check --device cuda: {}: impl \"{}\" has no CUDA kernel (only race does)", in_path.string(), p.impl);
  CheckSummary summary{p.impl, device, p.causal, p.B, p.H, p.T, p.D, {}, 0, 0};
  const std::size_t n = p.q.values.size();
  const Shape bhtd{p.B, p.H, p.T, p.D};
  std::vector<float> out(n), dq, dk, dv, dbeta, lse;
  if (p.backward()) dq.resize(n), dk.resize(n), dv.resize(n);

  if (p.impl == "race" && device == "cuda") {
#ifdef RACE_HAVE_CUDA
    const kernels::RaceAttentionInputs inputs{p.q.values.data(),      p.k.values.data(), p.v.values.data(),
                                              p.planes.values.data(), p.beta.data(),     or_null(p.key_mask),
                                              or_null(p.segment_ids)};
    if (p.backward()) dbeta.resize(static_cast<std::size_t>(p.H));
    const CudaCheckTimes times =
        race_check_cuda(p.race_shape, p.race_options, inputs, p.backward() ? p.dout.values.data() : nullptr,
                        out.data(), {dq.data(), dk.data(), dv.data(), p.backward() ? dbeta.data() : nullptr});
    summary.forward_seconds = times.forward_seconds;
    summary.backward_seconds = times.backward_seconds;
#else
    fail("race-bench check --device cuda: this build has no CUDA backend (configure with the CUDA toolkit installed)");
#endif
  } else if (p.impl == "race") {
    const kernels::RaceAttentionInputs inputs{p.q.values.data(),      p.k.values.data(), p.v.values.data(),
                                              p.planes.values.data(), p.beta.data(),     or_null(p.key_mask),
                                              or_null(p.segment_ids)};
    auto start = std::chrono::steady_clock::now();
    kernels::cpu::race_attention_forward(p.race_shape, p.race_options, inputs, out.data());
    summary.forward_seconds = seconds_since(start);
    if (p.backward()) {
      dbeta.resize(static_cast<std::size_t>(p.H));
      start = std::chrono::steady_clock::now();
      kernels::cpu::race_attention_backward(p.race_shape, p.race_options, inputs, p.dout.values.data(),
                                            {dq.data(), dk.data(), dv.data(), dbeta.data()});
      summary.backward_seconds = seconds_since(start);
    }
  } else {
    const kernels::SoftmaxAttentionShape shape{p.B, p.H, p.T, p.D};
    const kernels::SoftmaxAttentionInputs inputs{p.q.values.data(), p.k.values.data(), p.v.values.data(),
                                                 or_null(p.key_mask), or_null(p.segment_ids)};
    lse.resize(static_cast<std::size_t>(p.B * p.H * p.T));
    auto start = std::chrono::steady_clock::now();
    kernels::cpu::softmax_attention_forward(shape, p.softmax_options, inputs, out.data(), lse.data());
    summary.forward_seconds = seconds_since(start);
    if (p.backward()) {
      start = std::chrono::steady_clock::now();
      kernels::cpu::softmax_attention_backward(shape, p.softmax_options, inputs, out.data(), lse.data(),
                                               p.dout.values.data(), {dq.data(), dk.data(), dv.data()});
      summary.backward_seconds = seconds_since(start);
    }
  }

  Hdf5Writer writer = Hdf5Writer::create(out_path);
  auto write = [&](const char* name, const Shape& shape, const std::vector<float>& values) {
    writer.write(name, shape, std::span<const float>(values));
    summary.written.emplace_back(name);
  };
  write("out", bhtd, out);
  if (!lse.empty()) write("lse", {p.B, p.H, p.T}, lse);
  if (p.backward()) {
    write("dq", bhtd, dq);
    write("dk", bhtd, dk);
    write("dv", bhtd, dv);
    if (!dbeta.empty()) write("dbeta", {p.H}, dbeta);
  }
  writer.write_double_attribute("/", "seconds", summary.forward_seconds + summary.backward_seconds);
  writer.write_double_attribute("/", "forward_seconds", summary.forward_seconds);
  writer.write_double_attribute("/", "backward_seconds", summary.backward_seconds);
  writer.write_string_attribute("/", "impl", p.impl);
  writer.write_int64_attribute("/", "causal", p.causal ? 1 : 0);
  writer.write_string_attribute("/", "device", device);
  writer.commit();
  return summary;
}

}  // namespace race::bench
