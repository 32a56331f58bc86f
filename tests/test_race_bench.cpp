// race-bench end to end, as a user runs it ($RACE_APPS/race-bench, in a temporary directory):
// `check` against the fp64 references for RACE and softmax (float32 and float64 inputs), every class of bad
// input file exiting non-zero with a message that names the dataset or attribute, and `attention` writing
// a complete JSON report, stopping a sweep at its budget, and refusing --device cuda clearly; `model` timing
// a tiny GPT's training steps with a report whose rates, FLOPs per token and MFU agree with each other and
// with a hand count, and naming the option of every bad input.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/hdf5_io.h"
#ifdef RACE_HAVE_CUDA
#include "kernels/cuda/device_info.h"
#endif
#include "reference/race_reference.h"
#include "reference/softmax_reference.h"

namespace {

namespace fs = std::filesystem;
namespace ref = race::reference;
namespace kernels = race::kernels;
using Shape = std::vector<int64_t>;

// ---- running the binary -----------------------------------------------------------------------------

struct Outcome {
  int status = -1;  // exit status; -1 if it did not exit normally
  std::string out, err;
};

std::string read_text(const fs::path& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---- input files ------------------------------------------------------------------------------------

enum class Kind { f32, f64, i32, u8 };

struct Dataset {
  Shape shape;
  std::vector<double> values;
  Kind kind = Kind::f32;
};

// An IN.h5 described as data, so that each bad-input case is a one-line change of a valid file.
struct InputSpec {
  std::map<std::string, Dataset> datasets;
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> integers;
  std::map<std::string, double> numbers;
};

int64_t count(const Shape& shape) {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

// Float32 datasets hold float-rounded values, so that the reference sees exactly what the tool reads.
Dataset normal(std::mt19937_64& rng, const Shape& shape, double sigma, Kind kind = Kind::f32) {
  std::normal_distribution<double> dist(0.0, sigma);
  Dataset d{shape, std::vector<double>(static_cast<size_t>(count(shape))), kind};
  for (double& x : d.values) x = kind == Kind::f32 ? static_cast<double>(static_cast<float>(dist(rng))) : dist(rng);
  return d;
}

Dataset integers(const Shape& shape, std::vector<double> values, Kind kind) { return {shape, std::move(values), kind}; }

// Everything but float64 goes through Hdf5Writer; float64 datasets (which it cannot write) are added with
// the HDF5 C API afterwards, as h5py would store them.
void write_input(const fs::path& path, const InputSpec& spec) {
  {
    race::Hdf5Writer writer = race::Hdf5Writer::create(path);
    for (const auto& [name, d] : spec.datasets) {
      if (d.kind == Kind::f32) {
        const std::vector<float> v(d.values.begin(), d.values.end());
        writer.write(name, d.shape, std::span<const float>(v));
      } else if (d.kind == Kind::i32) {
        std::vector<int32_t> v;
        for (const double x : d.values) v.push_back(static_cast<int32_t>(x));
        writer.write(name, d.shape, std::span<const int32_t>(v));
      } else if (d.kind == Kind::u8) {
        std::vector<uint8_t> v;
        for (const double x : d.values) v.push_back(static_cast<uint8_t>(x));
        writer.write(name, d.shape, std::span<const uint8_t>(v));
      }
    }
    for (const auto& [name, value] : spec.strings) writer.write_string_attribute("/", name, value);
    for (const auto& [name, value] : spec.integers) writer.write_int64_attribute("/", name, value);
    for (const auto& [name, value] : spec.numbers) writer.write_double_attribute("/", name, value);
    writer.commit();
  }
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  for (const auto& [name, d] : spec.datasets) {
    if (d.kind != Kind::f64) continue;
    const std::vector<hsize_t> dims(d.shape.begin(), d.shape.end());
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t set = H5Dcreate2(file, name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(H5Dwrite(set, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d.values.data()), 0);
    H5Dclose(set);
    H5Sclose(space);
  }
  H5Fclose(file);
}

struct RaceCase {
  int64_t B = 2, H = 2, T = 37, D = 8;
  int L = 3, P = 2;
  bool causal = true;
  std::string estimator = "bucket";
  bool per_head_planes = false;
  bool beta_dataset = false;  // per-head beta as a dataset, else the scalar attribute
  bool masks = false;         // key_mask and segment_ids
  Kind kind = Kind::f32;
};

InputSpec race_input(const RaceCase& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  InputSpec s;
  const Shape bhtd{c.B, c.H, c.T, c.D};
  s.datasets["q"] = normal(rng, bhtd, 0.5, c.kind);
  s.datasets["k"] = normal(rng, bhtd, 0.5, c.kind);
  s.datasets["v"] = normal(rng, bhtd, 1.0, c.kind);
  s.datasets["dout"] = normal(rng, bhtd, 1.0, c.kind);
  s.datasets["planes"] = normal(rng, c.per_head_planes ? Shape{c.H, c.L, c.P, c.D} : Shape{c.L, c.P, c.D}, 1.0, c.kind);
  if (c.beta_dataset)
    s.datasets["beta"] = {{c.H}, {0.8, 1.7}, c.kind};
  else
    s.numbers["beta"] = 1.3;
  if (c.masks) {
    std::vector<double> mask, segments;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.T; ++t) {
        mask.push_back((t * 7 + b) % 5 == 2 ? 0 : 1);
        segments.push_back(t < 11 ? 4 : (t < 12 ? 9 : 2 + static_cast<double>(b)));
      }
    s.datasets["key_mask"] = integers({c.B, c.T}, mask, Kind::u8);
    s.datasets["segment_ids"] = integers({c.B, c.T}, segments, Kind::i32);
  }
  s.strings["impl"] = "race";
  s.strings["estimator"] = c.estimator;
  s.integers["causal"] = c.causal ? 1 : 0;
  s.numbers["eps"] = 1e-6;
  return s;
}

struct SoftmaxCase {
  int64_t B = 2, H = 2, T = 45, D = 8;
  bool causal = true;
  int64_t window = 0;
  bool masks = false;
  double scale = 0;
};

InputSpec softmax_input(const SoftmaxCase& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  InputSpec s;
  const Shape bhtd{c.B, c.H, c.T, c.D};
  s.datasets["q"] = normal(rng, bhtd, 1.0);
  s.datasets["k"] = normal(rng, bhtd, 1.0);
  s.datasets["v"] = normal(rng, bhtd, 1.0);
  s.datasets["dout"] = normal(rng, bhtd, 1.0);
  if (c.masks) {
    std::vector<double> mask, segments;
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t t = 0; t < c.T; ++t) {
        mask.push_back(t % 6 == 3 ? 0 : 1);
        segments.push_back(t < 20 + b ? 1 : 0);
      }
    s.datasets["key_mask"] = integers({c.B, c.T}, mask, Kind::u8);
    s.datasets["segment_ids"] = integers({c.B, c.T}, segments, Kind::i32);
  }
  s.strings["impl"] = "softmax";
  s.integers["causal"] = c.causal ? 1 : 0;
  s.integers["window"] = c.window;
  if (c.scale != 0) s.numbers["scale"] = c.scale;
  return s;
}

// ---- comparisons ------------------------------------------------------------------------------------

double relative_rms(const std::vector<float>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double err = 0, norm = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    err += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return std::sqrt(err / norm);
}

std::vector<float> read_dataset(const fs::path& path, const char* name, const Shape& shape) {
  const race::Hdf5File file = race::Hdf5File::open(path);
  auto data = file.read_float32(name);
  EXPECT_EQ(data.shape, shape) << name;
  EXPECT_EQ(file.dataset_info(name).type_name, "float32") << name;
  return data.values;
}

std::vector<uint8_t> as_u8(const std::vector<double>& v) { return {v.begin(), v.end()}; }
std::vector<int32_t> as_i32(const std::vector<double>& v) { return {v.begin(), v.end()}; }

class RaceBench : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* apps = std::getenv("RACE_APPS");
    ASSERT_NE(apps, nullptr) << "RACE_APPS must name the apps build directory (tests/CMakeLists.txt sets it)";
    bench_ = (fs::path(apps) / "race-bench").string();
    ASSERT_TRUE(fs::exists(bench_)) << bench_ << " does not exist: build the race-bench target";
    std::string pattern = (fs::temp_directory_path() / "race_test_bench_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path path(const std::string& name) const { return dir_ / name; }

  // Runs race-bench with `args` (shell words; the paths used here need no quoting) after the shell
  // commands in `setup`.
  Outcome bench(const std::string& args, const std::string& setup = "") const {
    const std::string command = setup + "'" + bench_ + "' " + args + " > '" + path("stdout").string() + "' 2> '" +
                                path("stderr").string() + "'";
    const int raw = std::system(command.c_str());
    Outcome r;
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = read_text(path("stdout"));
    r.err = read_text(path("stderr"));
    return r;
  }

  Outcome check(const InputSpec& spec) {
    write_input(path("in.h5"), spec);
    return bench("check --in " + path("in.h5").string() + " --out " + path("out.h5").string());
  }

  // Runs `check` on a file that must be rejected; its error must mention every one of `parts`.
  void expect_rejected(const InputSpec& spec, const std::vector<std::string>& parts) {
    const Outcome r = check(spec);
    EXPECT_NE(r.status, 0) << r.out;
    EXPECT_TRUE(contains(r.err, path("in.h5").string() + ": ")) << r.err;
    for (const auto& part : parts) EXPECT_TRUE(contains(r.err, part)) << "missing \"" << part << "\" in: " << r.err;
    EXPECT_FALSE(fs::exists(path("out.h5")));
  }

  void expect_race_matches_reference(const RaceCase& c, uint64_t seed) {
    const InputSpec spec = race_input(c, seed);
    const Outcome r = check(spec);
    ASSERT_EQ(r.status, 0) << r.err;

    kernels::RaceAttentionShape shape;
    shape.batch = c.B, shape.heads = c.H, shape.seq_len = c.T, shape.head_dim = c.D;
    shape.tables = c.L, shape.bits = c.P, shape.planes_per_head = c.per_head_planes;
    kernels::RaceAttentionOptions options;
    options.causal = c.causal;
    options.estimator = c.estimator == "ratio" ? kernels::RaceEstimator::ratio : kernels::RaceEstimator::bucket;
    options.eps = 1e-6f;
    ref::RaceInputs in;
    in.q = spec.datasets.at("q").values;
    in.k = spec.datasets.at("k").values;
    in.v = spec.datasets.at("v").values;
    in.planes = spec.datasets.at("planes").values;
    in.beta = c.beta_dataset ? spec.datasets.at("beta").values : std::vector<double>(c.H, 1.3);
    if (c.masks) {
      in.key_mask = as_u8(spec.datasets.at("key_mask").values);
      in.segment_ids = as_i32(spec.datasets.at("segment_ids").values);
    }
    const auto out = ref::race_attention_forward(shape, options, in);
    const auto grads = ref::race_attention_backward(shape, options, in, spec.datasets.at("dout").values);

    const Shape bhtd{c.B, c.H, c.T, c.D};
    const fs::path result = path("out.h5");
    EXPECT_LE(relative_rms(read_dataset(result, "out", bhtd), out), 1e-5);
    EXPECT_LE(relative_rms(read_dataset(result, "dq", bhtd), grads.dq), 1e-4);
    EXPECT_LE(relative_rms(read_dataset(result, "dk", bhtd), grads.dk), 1e-4);
    EXPECT_LE(relative_rms(read_dataset(result, "dv", bhtd), grads.dv), 1e-4);
    EXPECT_LE(relative_rms(read_dataset(result, "dbeta", {c.H}), grads.dbeta), 1e-4);
    const race::Hdf5File file = race::Hdf5File::open(result);
    EXPECT_GT(file.read_double_attribute("/", "seconds"), 0.0);
  }

  void expect_softmax_matches_reference(const SoftmaxCase& c, uint64_t seed) {
    const InputSpec spec = softmax_input(c, seed);
    const Outcome r = check(spec);
    ASSERT_EQ(r.status, 0) << r.err;

    const kernels::SoftmaxAttentionShape shape{c.B, c.H, c.T, c.D};
    kernels::SoftmaxAttentionOptions options;
    options.causal = c.causal;
    options.window = c.window;
    options.scale = static_cast<float>(c.scale);
    ref::SoftmaxInputs in;
    in.q = spec.datasets.at("q").values;
    in.k = spec.datasets.at("k").values;
    in.v = spec.datasets.at("v").values;
    if (c.masks) {
      in.key_mask = as_u8(spec.datasets.at("key_mask").values);
      in.segment_ids = as_i32(spec.datasets.at("segment_ids").values);
    }
    const auto forward = ref::softmax_attention_forward(shape, options, in);
    const auto grads = ref::softmax_attention_backward(shape, options, in, spec.datasets.at("dout").values);

    const Shape bhtd{c.B, c.H, c.T, c.D};
    const fs::path result = path("out.h5");
    EXPECT_LE(relative_rms(read_dataset(result, "out", bhtd), forward.out), 1e-5);
    EXPECT_LE(relative_rms(read_dataset(result, "dq", bhtd), grads.dq), 1e-4);
    EXPECT_LE(relative_rms(read_dataset(result, "dk", bhtd), grads.dk), 1e-4);
    EXPECT_LE(relative_rms(read_dataset(result, "dv", bhtd), grads.dv), 1e-4);
    const auto lse = read_dataset(result, "lse", {c.B, c.H, c.T});
    for (size_t i = 0; i < lse.size(); ++i)
      if (std::isfinite(forward.lse[i]))
        EXPECT_NEAR(lse[i], forward.lse[i], 1e-4) << "lse " << i;
      else
        EXPECT_EQ(lse[i], forward.lse[i]) << "lse " << i;
  }

  std::string bench_;
  fs::path dir_;
};

// ---- check: results ---------------------------------------------------------------------------------

TEST_F(RaceBench, CheckRaceCausalBucketMatchesReference) { expect_race_matches_reference({}, 1); }

TEST_F(RaceBench, CheckRaceBidirectionalRatioPerHeadMaskedMatchesReference) {
  RaceCase c;
  c.causal = false;
  c.estimator = "ratio";
  c.per_head_planes = true;
  c.beta_dataset = true;
  c.masks = true;
  expect_race_matches_reference(c, 2);
}

TEST_F(RaceBench, CheckRaceCausalMaskedLearnedBetaMatchesReference) {
  RaceCase c;
  c.masks = true;
  c.beta_dataset = true;
  c.P = 3;
  expect_race_matches_reference(c, 3);
}

TEST_F(RaceBench, CheckRaceAcceptsFloat64Inputs) {
  RaceCase c;
  c.kind = Kind::f64;
  c.beta_dataset = true;
  expect_race_matches_reference(c, 4);
}

TEST_F(RaceBench, CheckSoftmaxCausalMatchesReference) { expect_softmax_matches_reference({}, 5); }

TEST_F(RaceBench, CheckSoftmaxWindowedBidirectionalMaskedMatchesReference) {
  SoftmaxCase c;
  c.causal = false;
  c.window = 7;
  c.masks = true;
  c.scale = 0.3;
  expect_softmax_matches_reference(c, 6);
}

TEST_F(RaceBench, CheckWithoutDoutWritesOnlyTheOutput) {
  InputSpec spec = race_input({}, 7);
  spec.datasets.erase("dout");
  const Outcome r = check(spec);
  ASSERT_EQ(r.status, 0) << r.err;
  const race::Hdf5File file = race::Hdf5File::open(path("out.h5"));
  EXPECT_TRUE(file.has_dataset("out"));
  EXPECT_FALSE(file.has_dataset("dq"));
  EXPECT_FALSE(file.has_dataset("dbeta"));
}

TEST_F(RaceBench, CheckReplacesAnExistingOutputOnlyOnSuccess) {
  write_input(path("out.h5"), softmax_input({}, 8));  // any HDF5 file standing in for an older result
  InputSpec bad = race_input({}, 8);
  bad.datasets.erase("v");
  write_input(path("in.h5"), bad);
  const Outcome failed = bench("check --in " + path("in.h5").string() + " --out " + path("out.h5").string());
  EXPECT_NE(failed.status, 0);
  EXPECT_TRUE(race::Hdf5File::open(path("out.h5")).has_dataset("q")) << "the old OUT.h5 must survive";
  EXPECT_FALSE(fs::exists(path("out.h5.tmp")));

  write_input(path("in.h5"), race_input({}, 8));
  const Outcome ok = bench("check --in " + path("in.h5").string() + " --out " + path("out.h5").string());
  ASSERT_EQ(ok.status, 0) << ok.err;
  const race::Hdf5File file = race::Hdf5File::open(path("out.h5"));
  EXPECT_FALSE(file.has_dataset("q"));
  EXPECT_TRUE(file.has_dataset("out"));
}

// ---- check: bad inputs ------------------------------------------------------------------------------

TEST_F(RaceBench, CheckRejectsAMissingInputFile) {
  const Outcome r = bench("check --in " + path("nope.h5").string() + " --out " + path("out.h5").string());
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.err, "nope.h5: no such file")) << r.err;
}

TEST_F(RaceBench, CheckRejectsAMissingDataset) {
  InputSpec s = race_input({}, 10);
  s.datasets.erase("v");
  expect_rejected(s, {"dataset \"v\" not found", "[B,H,T,D]"});
}

TEST_F(RaceBench, CheckRejectsAWrongRank) {
  InputSpec s = race_input({}, 11);
  s.datasets["q"].shape = {2, 74, 8};
  expect_rejected(s, {"dataset \"q\" has shape [2,74,8], expected rank 4 [B,H,T,D]"});
}

TEST_F(RaceBench, CheckRejectsAWrongType) {
  InputSpec s = race_input({}, 12);
  s.datasets["k"].kind = Kind::i32;
  expect_rejected(s, {"dataset \"k\" has type int32, expected float32 or float64"});
}

TEST_F(RaceBench, CheckRejectsMismatchedShapes) {
  RaceCase c;
  c.B = 1, c.T = 6;
  InputSpec s = race_input(c, 13);
  std::mt19937_64 rng(1);
  s.datasets["k"] = normal(rng, {1, 2, 5, 8}, 1.0);
  expect_rejected(s, {"dataset \"k\" has shape [1,2,5,8], expected [1,2,6,8] (same as \"q\")"});
  s = race_input(c, 13);
  s.datasets["dout"].shape = {1, 2, 8, 6};
  expect_rejected(s, {"dataset \"dout\" has shape [1,2,8,6], expected [1,2,6,8] (same as \"q\")"});
}

TEST_F(RaceBench, CheckRejectsPlanesThatDoNotMatch) {
  InputSpec s = race_input({}, 14);
  s.datasets["planes"].shape = {3, 4, 4};  // same number of values, wrong D
  expect_rejected(s, {"dataset \"planes\" has shape [3,4,4], expected [L,P,8] or [2,L,P,8]"});
  s = race_input({}, 14);
  s.datasets["planes"].shape = {1, 3, 2, 8};  // per-head planes for 1 head, but H = 2
  expect_rejected(s, {"dataset \"planes\" has shape [1,3,2,8], expected [L,P,8] or [2,L,P,8]"});
  s = race_input({}, 14);
  s.datasets["planes"].shape = {48};
  expect_rejected(s, {"dataset \"planes\" has shape [48], expected rank 3 or 4"});
  s = race_input({}, 14);
  s.datasets.erase("planes");
  expect_rejected(s, {"dataset \"planes\" not found"});
}

TEST_F(RaceBench, CheckRejectsTooManyBits) {
  InputSpec s = race_input({}, 15);
  std::mt19937_64 rng(1);
  s.datasets["planes"] = normal(rng, {1, 13, 8}, 1.0);
  expect_rejected(s, {"dataset \"planes\" has shape [1,13,8]: P = 13", "P <= 12"});
}

TEST_F(RaceBench, CheckRejectsBadMasks) {
  RaceCase c;
  c.masks = true;
  InputSpec s = race_input(c, 16);
  s.datasets["key_mask"].shape = {37, 2};
  expect_rejected(s, {"dataset \"key_mask\" has shape [37,2], expected [2,37] ([B,T] of \"q\")"});
  s = race_input(c, 16);
  s.datasets["segment_ids"] = integers({2, 36}, std::vector<double>(72, 1.0), Kind::i32);
  expect_rejected(s, {"dataset \"segment_ids\" has shape [2,36], expected [2,37] ([B,T] of \"q\")"});
  s = race_input(c, 16);
  s.datasets["key_mask"].kind = Kind::f32;
  expect_rejected(s, {"dataset \"key_mask\" has type float32, expected an integer type"});
}

TEST_F(RaceBench, CheckRejectsBadBeta) {
  RaceCase c;
  c.beta_dataset = true;
  InputSpec s = race_input(c, 17);
  s.datasets["beta"] = {{3}, {1, 1, 1}, Kind::f32};
  expect_rejected(s, {"dataset \"beta\" has shape [3], expected [2] ([H] of \"q\")"});
}

TEST_F(RaceBench, CheckRejectsBadAttributes) {
  InputSpec s = race_input({}, 18);
  s.strings["impl"] = "flash";
  expect_rejected(s, {"attribute \"impl\" is \"flash\", expected \"race\" or \"softmax\""});
  s = race_input({}, 18);
  s.strings.erase("impl");
  expect_rejected(s, {"attribute \"impl\" not found"});
  s = race_input({}, 18);
  s.strings["estimator"] = "mean";
  expect_rejected(s, {"attribute \"estimator\" is \"mean\", expected \"bucket\" or \"ratio\""});
  s = race_input({}, 18);
  s.integers["causal"] = 2;
  expect_rejected(s, {"attribute \"causal\" is 2, expected 0 or 1"});
  s = race_input({}, 18);
  s.integers.erase("causal");
  s.strings["causal"] = "yes";
  expect_rejected(s, {"attribute \"causal\"", "expected 0 or 1"});
  s = race_input({}, 18);
  s.numbers["eps"] = 0;
  expect_rejected(s, {"attribute \"eps\" is 0, expected a finite number > 0"});
  s = softmax_input({}, 18);
  s.integers["window"] = -3;
  expect_rejected(s, {"attribute \"window\" is -3, expected an integer >= 0"});
}

// ---- attention ----------------------------------------------------------------------------------------

TEST_F(RaceBench, AttentionWritesAJsonReport) {
  const Outcome r = bench("attention --impl race -B 1 -H 2 -D 16 -L 2 -P 3 -T 300 --repeats 2 --threads 1 --json " +
                          path("report.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "peak/io")) << r.out;
  const auto json = nlohmann::json::parse(read_text(path("report.json")));
  EXPECT_EQ(json.at("tool"), "race-bench attention");
  EXPECT_FALSE(json.at("date").get<std::string>().empty());
  EXPECT_GE(json.at("machine").at("cores").get<int>(), 1);
  EXPECT_EQ(json.at("machine").at("threads"), 1);
  EXPECT_TRUE(json.at("machine").at("cpu_model").is_string());
  const auto& options = json.at("options");
  EXPECT_EQ(options.at("impl"), "race");
  EXPECT_EQ(options.at("causal"), true);
  EXPECT_EQ(options.at("tables"), 2);
  EXPECT_EQ(options.at("seq_len"), 300);
  EXPECT_EQ(options.at("repeats"), 2);
  EXPECT_EQ(options.at("in_place"), false);
  EXPECT_EQ(json.at("stop_reason"), "single");
  ASSERT_EQ(json.at("results").size(), 1u);
  const auto& result = json.at("results")[0];
  EXPECT_EQ(result.at("seq_len"), 300);
  EXPECT_GT(result.at("forward_seconds").get<double>(), 0.0);
  EXPECT_GT(result.at("forward_backward_seconds").get<double>(), 0.0);
  EXPECT_GT(result.at("forward_tokens_per_s").get<double>(), 0.0);
  EXPECT_EQ(result.at("forward_seconds_all").size(), 2u);
  EXPECT_EQ(result.at("io_bytes"), 8 * 2 * 300 * 16 * 4);
  EXPECT_GT(result.at("peak_bytes").get<int64_t>(), result.at("io_bytes").get<int64_t>());
  EXPECT_GT(result.at("peak_io_ratio").get<double>(), 1.0);
}

TEST_F(RaceBench, AttentionJsonOnStdoutKeepsTheTableOnStderr) {
  const Outcome r = bench("attention --impl softmax --bidirectional --window 16 -H 1 -D 8 -T 100 --repeats 1 --json -");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json.at("options").at("impl"), "softmax");
  EXPECT_EQ(json.at("options").at("window"), 16);
  EXPECT_EQ(json.at("options").at("causal"), false);
  EXPECT_TRUE(contains(r.err, "peak/io")) << r.err;
}

TEST_F(RaceBench, AttentionSweepDoublesUntilTheMemoryBudget) {
  const Outcome r = bench("attention --sweep --t-min 512 --max-memory-gb 0.12 -H 1 -D 16 --repeats 1 --json " +
                          path("sweep.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto json = nlohmann::json::parse(read_text(path("sweep.json")));
  EXPECT_EQ(json.at("stop_reason"), "max_memory");
  const auto& results = json.at("results");
  ASSERT_GE(results.size(), 2u);
  int64_t expected = 512;
  for (const auto& result : results) {
    EXPECT_EQ(result.at("seq_len"), expected);
    EXPECT_LE(result.at("peak_bytes").get<double>(), 0.12e9);
    expected *= 2;
  }
  EXPECT_GT(2 * results.back().at("peak_bytes").get<double>(), 0.12e9);
  ASSERT_EQ(json.at("notes").size(), 1u);
  EXPECT_TRUE(contains(json.at("notes")[0], "--max-memory-gb")) << json.at("notes")[0];
}

TEST_F(RaceBench, AttentionSweepStopsAtTheTimeBudget) {
  const Outcome r = bench(
      "attention --impl softmax --sweep --t-min 256 --max-seconds 1 -H 1 -D 16 --repeats 1 "
      "--json " +
      path("sweep.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const auto json = nlohmann::json::parse(read_text(path("sweep.json")));
  EXPECT_EQ(json.at("stop_reason"), "max_seconds");
  EXPECT_GE(json.at("results").size(), 1u);
  EXPECT_EQ(json.at("options").at("max_seconds"), 1.0);
}

// An address-space limit makes allocation fail with std::bad_alloc (rather than the out-of-memory killer),
// so the end of a sweep by memory exhaustion can be tested without exhausting the machine.
TEST_F(RaceBench, AttentionSweepEndsWithANoteWhenAllocationFails) {
  const Outcome r = bench("attention --sweep --t-min 4096 -H 1 -D 64 --repeats 1 --json " + path("oom.json").string(),
                          "ulimit -v 600000; ");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "out of memory")) << r.out;
  const auto json = nlohmann::json::parse(read_text(path("oom.json")));
  EXPECT_EQ(json.at("stop_reason"), "out_of_memory");
  EXPECT_GE(json.at("results").size(), 1u);
  ASSERT_EQ(json.at("notes").size(), 1u);
  EXPECT_TRUE(contains(json.at("notes")[0], "std::bad_alloc")) << json.at("notes")[0];

  const Outcome single = bench("attention -T 10000000 -H 1 -D 64 --repeats 1", "ulimit -v 600000; ");
  EXPECT_EQ(single.status, 1) << "one size that does not fit is a failure";
  EXPECT_TRUE(contains(single.out, "T=10000000: out of memory")) << single.out;
}

// --device cuda where it cannot run says why: no CUDA in this build, or (a CUDA build on a machine without a
// usable GPU) no device and the driver's reason. Both attention and check.
TEST_F(RaceBench, CudaWithoutAUsableGpuSaysWhy) {
#ifdef RACE_HAVE_CUDA
  if (race::kernels::cuda::query_devices().devices.size() > 0) GTEST_SKIP() << "a GPU is present";
  const std::string expected = "race-bench: --device cuda: no usable CUDA device (";
#else
  const std::string expected = "race-bench: --device cuda: this build has no CUDA backend";
#endif
  for (const char* command : {"attention --device cuda -T 64", "attention --device cuda --dtype bf16 --sweep",
                              "attention --impl softmax --window 64 --device cuda -T 64",
                              "check --device cuda --in x.h5 --out y.h5"}) {
    const Outcome r = bench(command);
    EXPECT_NE(r.status, 0) << command;
    EXPECT_TRUE(contains(r.err, expected)) << command << ": " << r.err;
  }
}

TEST_F(RaceBench, DeviceAndDtypeMistakesAreUsageErrors) {
  const Outcome unknown = bench("attention --device tpu -T 64");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(contains(unknown.err, "--device")) << unknown.err;
  const Outcome bad_dtype = bench("attention --dtype fp16 -T 64");
  EXPECT_EQ(bad_dtype.status, 2);
  EXPECT_TRUE(contains(bad_dtype.err, "--dtype")) << bad_dtype.err;
  const Outcome cpu_bf16 = bench("attention --dtype bf16 -T 64");
  EXPECT_EQ(cpu_bf16.status, 2);
  EXPECT_TRUE(contains(cpu_bf16.err, "--dtype bf16 needs --device cuda")) << cpu_bf16.err;
  const Outcome softmax_bf16 = bench("attention --impl softmax --dtype bf16 -T 64");
  EXPECT_EQ(softmax_bf16.status, 2);
  EXPECT_TRUE(contains(softmax_bf16.err, "--dtype bf16 needs --device cuda")) << softmax_bf16.err;
  // Gradients over the inputs are the CUDA RACE kernels' contract, not the CPU's nor softmax's.
  for (const char* command : {"attention --in-place -T 64", "attention --impl softmax --device cuda --in-place -T 64"}) {
    const Outcome in_place = bench(command);
    EXPECT_EQ(in_place.status, 2) << command;
    EXPECT_TRUE(contains(in_place.err, "--in-place needs --device cuda and --impl race")) << command << ": "
                                                                                           << in_place.err;
  }
  const Outcome check = bench("check --device tpu --in x.h5 --out y.h5");
  EXPECT_EQ(check.status, 2);
  EXPECT_TRUE(contains(check.err, "--device")) << check.err;
}

TEST_F(RaceBench, PeakReportsPositiveRatesAsJson) {
  const Outcome r = bench("peak --threads 1 --seconds 0.2 --json -");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json.at("threads"), 1);
  // Any machine that runs the tests multiplies faster than 0.5 GFLOP/s and streams faster than 0.5 GB/s.
  EXPECT_GT(json.at("product_gflops").get<double>(), 0.5);
  EXPECT_GT(json.at("triad_gbytes_per_s").get<double>(), 0.5);
  EXPECT_TRUE(contains(r.err, "GFLOP/s")) << r.err;
}

TEST_F(RaceBench, OptionsTheChosenKernelWouldIgnoreAreErrors) {
  for (const char* args : {"attention --impl softmax -L 4 -T 64", "attention --impl softmax --beta 2 -T 64",
                           "attention --impl race --window 8 -T 64"}) {
    const Outcome r = bench(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.err;
    EXPECT_TRUE(contains(r.err, "applies to --impl")) << args << ": " << r.err;
  }
}

TEST_F(RaceBench, ValuesThatDoNotFitTheKernelsAreNamed) {
  const Outcome tiny_eps = bench("attention -T 64 --eps 1e-50");
  EXPECT_EQ(tiny_eps.status, 2) << tiny_eps.err;
  EXPECT_TRUE(contains(tiny_eps.err, "--eps 1e-50")) << tiny_eps.err;
  const Outcome huge_beta = bench("attention -T 64 --beta 1e300");
  EXPECT_EQ(huge_beta.status, 2) << huge_beta.err;
  EXPECT_TRUE(contains(huge_beta.err, "--beta 1e+300")) << huge_beta.err;
  const Outcome too_big = bench("attention -T 1000000000000 -D 128");
  EXPECT_NE(too_big.status, 0);
  EXPECT_TRUE(contains(too_big.err, "more than this machine")) << too_big.err;
  const Outcome overflow = bench("attention -T 4611686018427387904");
  EXPECT_NE(overflow.status, 0);
  EXPECT_TRUE(contains(overflow.err, "overflows 64 bits")) << overflow.err;
  const Outcome bad_json = bench("attention -T 64 --json /nonexistent-dir/x.json");
  EXPECT_EQ(bad_json.status, 2) << bad_json.err;
  EXPECT_TRUE(contains(bad_json.err, "/nonexistent-dir")) << bad_json.err;
}

TEST_F(RaceBench, UsageErrorsExitWithStatus2AndUsage) {
  for (const char* args : {"attention --impl flash -T 64", "attention", "attention -T 64 --sweep",
                           "attention -T 64 --t-min 8", "check --in x.h5", "peak --seconds 0",
                           "frobnicate"}) {
    const Outcome r = bench(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.err;
    EXPECT_TRUE(contains(r.err, "Usage:")) << args << ": " << r.err;
  }
}

// ---- model --------------------------------------------------------------------------------------------

// The tiny shape of the model tests: 2 layers, C = 32, H = 2 (D = 16), M = 4 C = 128, V = 64, B = 2, T = 64.
const std::string kTinyModel = "model --layers 2 --d-model 32 --heads 2 --vocab 64 -T 64 -B 2 --threads 1 ";

// Training FLOPs per token of the tiny shape by hand: 6 per weight of the matrices qkv (3C x C), proj (C x
// C), fc (M x C) and fc2 (C x M) of each layer and of the tied head (V x C), plus `attention_per_head` per
// head and layer.
double tiny_flops_per_token(double attention_per_head) {
  const double C = 32, M = 128, V = 64, layers = 2, heads = 2;
  return 6.0 * (layers * (3 * C * C + C * C + M * C + C * M) + V * C) + layers * heads * attention_per_head;
}

// The report's figures agree with one another: tokens/s is B*T*steps over the timed seconds, which are the
// sum of the steps, the median is the median, TFLOP/s is FLOPs per token times tokens/s, and each MFU is that
// over its peak. On the CPU the device allocates exactly what the plan counted.
void expect_consistent_model_report(const nlohmann::json& json, int64_t tokens_per_step, int steps) {
  const auto& results = json.at("results");
  EXPECT_EQ(results.at("steps"), steps);
  EXPECT_EQ(results.at("tokens_per_step"), tokens_per_step);
  const auto ms_all = results.at("ms_per_step_all").get<std::vector<double>>();
  ASSERT_EQ(ms_all.size(), static_cast<size_t>(steps));
  double ms_sum = 0.0;
  for (const double ms : ms_all) {
    EXPECT_GT(ms, 0.0);
    ms_sum += ms;
  }
  const double seconds = results.at("seconds").get<double>();
  EXPECT_NEAR(seconds, ms_sum / 1e3, 1e-9 * seconds);
  std::vector<double> sorted = ms_all;
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  const double median = sorted.size() % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  EXPECT_DOUBLE_EQ(results.at("ms_per_step").get<double>(), median);
  const double tokens_per_s = results.at("tokens_per_s").get<double>();
  EXPECT_NEAR(tokens_per_s, static_cast<double>(tokens_per_step * steps) / seconds, 1e-9 * tokens_per_s);
  const double achieved = results.at("achieved_tflops").get<double>();
  EXPECT_NEAR(achieved, json.at("model").at("flops_per_token").get<double>() * tokens_per_s / 1e12,
              1e-9 * achieved);
  ASSERT_EQ(json.at("peaks").size(), 1u) << "on the CPU, one peak: the measured row product";
  const auto& peak = json.at("peaks")[0];
  EXPECT_EQ(peak.at("name"), "cpu_row_product");
  EXPECT_GT(peak.at("tflops").get<double>(), 0.0);
  EXPECT_TRUE(contains(peak.at("source").get<std::string>(), "measured in this run")) << peak.at("source");
  EXPECT_NEAR(peak.at("mfu").get<double>(), achieved / peak.at("tflops").get<double>(), 1e-9);
  const auto& model = json.at("model");
  EXPECT_EQ(model.at("planned_bytes").get<int64_t>(),
            model.at("memory_plan_bytes").get<int64_t>() + model.at("optimizer_bytes").get<int64_t>());
  EXPECT_EQ(model.at("optimizer_bytes").get<int64_t>(), 2 * 4 * model.at("parameters").get<int64_t>());
  EXPECT_EQ(model.at("allocated_bytes"), model.at("planned_bytes"));
  EXPECT_LT(model.at("planned_bytes").get<double>(), model.at("memory_budget_bytes").get<double>());
}

TEST_F(RaceBench, ModelWritesAConsistentJsonReport) {
  const Outcome r = bench(kTinyModel + "--steps 3 --peak-seconds 0.1 --json " + path("model.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "tokens/s")) << r.out;
  EXPECT_TRUE(contains(r.out, "memory plan: ")) << r.out;
  const auto json = nlohmann::json::parse(read_text(path("model.json")));
  EXPECT_EQ(json.at("tool"), "race-bench model");
  EXPECT_FALSE(json.at("date").get<std::string>().empty());
  EXPECT_TRUE(contains(json.at("command").get<std::string>(), "race-bench model --layers 2 --d-model 32"))
      << json.at("command");
  EXPECT_EQ(json.at("machine").at("threads"), 1);
  EXPECT_TRUE(contains(json.at("machine").at("device").get<std::string>(), "CPU")) << json.at("machine");
  const auto& options = json.at("options");
  EXPECT_EQ(options.at("attention"), "race");
  EXPECT_EQ(options.at("task"), "lm");
  EXPECT_EQ(options.at("mlp_hidden"), 128) << "the default is 4 x d_model";
  EXPECT_EQ(options.at("tables"), 3);
  EXPECT_EQ(options.at("bits"), 3);
  EXPECT_EQ(options.at("warmup"), 1);
  // RACE, L = 3, P = 3: S = 24 buckets, 12 S D per head.
  EXPECT_DOUBLE_EQ(json.at("model").at("flops_per_token").get<double>(),
                   tiny_flops_per_token(12.0 * 24 * 16));
  // wte, then per layer ln1, qkv, proj, ln2, fc, fc2 with biases, then lnf.
  EXPECT_EQ(json.at("model").at("parameters"),
            64 * 32 +
                2 * (2 * 32 + 3 * 32 * 32 + 3 * 32 + 32 * 32 + 32 + 2 * 32 + 128 * 32 + 128 + 32 * 128 + 32) +
                2 * 32);
  expect_consistent_model_report(json, 2 * 64, 3);
  // From the initialisation, the loss on random tokens is close to ln V.
  for (const auto& loss : json.at("results").at("losses"))
    EXPECT_NEAR(loss.get<double>(), std::log(64.0), 0.5);
}

// --profile: one more step with each operation timed; the linear layers' FLOPs add up to 6 per matrix weight
// per token (the tied head included), and every operation's time lies within the step's.
TEST_F(RaceBench, ModelProfileTimesEachOperation) {
  const Outcome r = bench(kTinyModel + "--steps 1 --warmup 0 --peak-seconds 0.1 --profile --json -");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "profile of one more step")) << r.err;
  const auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json.at("options").at("profile"), true);
  const auto& profile = json.at("results").at("profile");
  const double step = profile.at("step_seconds").get<double>();
  EXPECT_GT(step, 0.0);
  EXPECT_LE(profile.at("ops_seconds").get<double>(), step);
  double linear_flops = 0.0;
  std::vector<std::string> names;
  for (const auto& op : profile.at("ops")) {
    names.push_back(op.at("op"));
    EXPECT_GE(op.at("calls").get<int64_t>(), 1);
    EXPECT_LE(op.at("seconds").get<double>(), step);
    if (op.contains("flops")) linear_flops += op.at("flops").get<double>();
  }
  for (const std::string op : {"linear_forward", "linear_backward", "race_attention_forward", "adamw"})
    EXPECT_NE(std::find(names.begin(), names.end(), op), names.end()) << op;
  // Weights: per layer qkv, proj, fc, fc2 (4 x 32 x 32 + 2 x 32 x 128); the tied head 64 x 32. B T = 128 rows.
  const double weights = 2 * (3 * 32 * 32 + 32 * 32 + 2 * 32 * 128) + 64 * 32;
  EXPECT_DOUBLE_EQ(linear_flops, 6.0 * weights * 2 * 64);
}

// --precision: an unknown value is a usage error; bf16 on the CPU says why it cannot run and what to use.
TEST_F(RaceBench, ModelPrecisionMistakesAreClearErrors) {
  const Outcome unknown = bench(kTinyModel + "--precision fp16 --steps 1");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(contains(unknown.err, "--precision")) << unknown.err;
  const Outcome bf16_on_cpu = bench(kTinyModel + "--precision bf16 --steps 1");
  EXPECT_EQ(bf16_on_cpu.status, 1);
  EXPECT_TRUE(contains(bf16_on_cpu.err, "--precision = \"bf16\" needs the CUDA device")) << bf16_on_cpu.err;
  EXPECT_TRUE(contains(bf16_on_cpu.err, "--device = \"cuda\"")) << bf16_on_cpu.err;
}

TEST_F(RaceBench, ModelSoftmaxCountsTheKeysEachQuerySees) {
  // Causal, full: T / 2 keys per query on average, 12 (T / 2) D per head.
  const Outcome causal =
      bench(kTinyModel + "--attention softmax --steps 1 --warmup 0 --peak-seconds 0.1 --json -");
  ASSERT_EQ(causal.status, 0) << causal.err;
  const auto causal_json = nlohmann::json::parse(causal.out);
  EXPECT_DOUBLE_EQ(causal_json.at("model").at("flops_per_token").get<double>(),
                   tiny_flops_per_token(12.0 * 32 * 16));
  expect_consistent_model_report(causal_json, 2 * 64, 1);
  EXPECT_TRUE(contains(causal.err, "tokens/s")) << "the summary goes to stderr when the JSON takes stdout";

  // A bidirectional masked LM with a window of 16, recomputing: 12 W D per head.
  const Outcome mlm =
      bench(kTinyModel +
            "--attention softmax --window 16 --task mlm --recompute --steps 2 --peak-seconds 0.1 "
            "--json -");
  ASSERT_EQ(mlm.status, 0) << mlm.err;
  const auto mlm_json = nlohmann::json::parse(mlm.out);
  EXPECT_EQ(mlm_json.at("options").at("task"), "mlm");
  EXPECT_EQ(mlm_json.at("options").at("window"), 16);
  EXPECT_EQ(mlm_json.at("options").at("recompute"), true);
  EXPECT_DOUBLE_EQ(mlm_json.at("model").at("flops_per_token").get<double>(),
                   tiny_flops_per_token(12.0 * 16 * 16));
  expect_consistent_model_report(mlm_json, 2 * 64, 2);
  // Recomputation keeps one layer's activations instead of two.
  EXPECT_LT(mlm_json.at("model").at("memory_plan_bytes").get<int64_t>(),
            causal_json.at("model").at("memory_plan_bytes").get<int64_t>());
}

TEST_F(RaceBench, ModelBadOptionsAreNamed) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"model --d-model 32 --heads 3", "--heads 3 does not divide --d-model 32"},
      {"model --d-model 30 --heads 2", "RoPE needs an even head dimension"},
      {"model --attention softmax --tables 4", "--tables applies to --attention race"},
      {"model --attention softmax -P 2", "--bits applies to --attention race"},
      {"model --window 8", "--window applies to --attention softmax"},
      {"model --peak-tflops 100", "--peak-tflops applies to --device cuda"},
      {"model --fp32-peak-tflops 60", "--fp32-peak-tflops applies to --device cuda"},
      {"model --device cuda --peak-seconds 1", "--peak-seconds applies to --device cpu"},
      {"model --json /nonexistent-dir/m.json", "/nonexistent-dir"},
  };
  for (const auto& [args, message] : cases) {
    const Outcome r = bench(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.err;
    EXPECT_TRUE(contains(r.err, message)) << args << ": " << r.err;
  }
  for (const char* args : {"model --task classify", "model --device tpu", "model --attention flash",
                           "model --heads 0", "model --steps 0"}) {
    const Outcome r = bench(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.err;
    EXPECT_TRUE(contains(r.err, "Usage:")) << args << ": " << r.err;
  }
}

// A plan larger than the memory is refused before anything is allocated: under an address-space limit far
// below the plan, the error is the plan's, not an allocation failure.
TEST_F(RaceBench, ModelPlanLargerThanTheMemoryIsRefusedFirst) {
  const Outcome r =
      bench("model --layers 2 --d-model 32 --heads 2 --vocab 64 -T 1000000000 -B 2", "ulimit -v 2000000; ");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(contains(r.err, "--context 1000000000 x --batch 2: the memory plan needs")) << r.err;
  EXPECT_TRUE(contains(r.err, "this machine's memory")) << r.err;
  EXPECT_TRUE(contains(r.err, "or add --recompute")) << r.err;
}

TEST_F(RaceBench, ModelOnCudaWithoutAUsableGpuSaysWhy) {
#ifdef RACE_HAVE_CUDA
  if (race::kernels::cuda::query_devices().devices.size() > 0) GTEST_SKIP() << "a GPU is present";
  const std::string expected = "--device = \"cuda\": no usable CUDA device (";
#else
  const std::string expected = "--device = \"cuda\": this build of race has no CUDA backend";
#endif
  const Outcome r = bench(kTinyModel + "--device cuda");
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(contains(r.err, expected)) << r.err;
}

}  // namespace
