// Tests of lib/core/hdf5_io: dataset and attribute round trips, conversions and range checks on read, errors
// naming file and dataset, and the atomic temp-file-then-rename write. Files that our writer cannot produce
// (float64, int16, fixed-length strings, ...) are made with the HDF5 C API directly, as h5py would.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/hdf5_io.h"

namespace race {
namespace {

namespace fs = std::filesystem;

class Hdf5Io : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "race_test_hdf5_XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path path(const std::string& name) const { return dir_ / name; }

  // A file holding one dataset of any storage type, written with the C API.
  fs::path raw_dataset(const std::string& file_name, const char* dataset, hid_t file_type, hid_t memory_type,
                       const std::vector<hsize_t>& dims, const void* data) const {
    const fs::path file = path(file_name);
    const hid_t f = H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t d = H5Dcreate2(f, dataset, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    EXPECT_GE(H5Dwrite(d, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(d);
    H5Sclose(space);
    H5Fclose(f);
    return file;
  }

  fs::path dir_;
};

template <typename Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a race::Error";
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST_F(Hdf5Io, DatasetsRoundTripEveryType) {
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, std::numeric_limits<float>::max(), -1e-30f};
  const std::vector<std::int32_t> i32 = {std::numeric_limits<std::int32_t>::min(), -1, 0, 7};
  const std::vector<std::int64_t> i64 = {std::numeric_limits<std::int64_t>::min(),
                                         std::numeric_limits<std::int64_t>::max()};
  const std::vector<std::uint8_t> u8 = {0, 1, 255};
  const std::vector<std::uint16_t> u16 = {0, 65535};
  const std::vector<std::uint32_t> u32 = {0, 4294967295u};
  const std::vector<std::uint64_t> u64 = {0, std::numeric_limits<std::uint64_t>::max(), 1, 2, 3, 4};
  const std::vector<float> scalar = {42.0f};
  const std::vector<float> empty;
  {
    Hdf5Writer writer = Hdf5Writer::create(path("rt.h5"));
    writer.write("f32", {2, 3}, f32);
    writer.write("/ints/i32", {4}, i32);
    writer.write("ints/i64", {2}, i64);
    writer.write("/ints/small/u8", {3}, u8);
    writer.write("u16", {2}, u16);
    writer.write("u32", {1, 2}, u32);
    writer.write("u64", {3, 1, 2}, u64);
    writer.write("scalar", {}, scalar);
    writer.write("empty", {0, 4}, empty);
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("rt.h5"));
  EXPECT_EQ(file.name(), path("rt.h5").string());

  const auto f = file.read_float32("f32");
  EXPECT_EQ(f.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f.values, f32);
  EXPECT_EQ(file.read_int32("/ints/i32").values, i32);
  EXPECT_EQ(file.read_int64("ints/i64").values, i64);
  EXPECT_EQ(file.read_uint8("ints/small/u8").values, u8);
  EXPECT_EQ(file.read_uint16("u16").values, u16);
  const auto u = file.read_uint32("u32");
  EXPECT_EQ(u.shape, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(u.values, u32);
  EXPECT_EQ(file.read_uint64("u64").shape, (std::vector<std::int64_t>{3, 1, 2}));
  EXPECT_EQ(file.read_uint64("u64").values, u64);
  const auto s = file.read_float32("scalar");
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.values, scalar);
  const auto e = file.read_float32("empty");
  EXPECT_EQ(e.shape, (std::vector<std::int64_t>{0, 4}));
  EXPECT_TRUE(e.values.empty());
}

TEST_F(Hdf5Io, DatasetInfo) {
  {
    Hdf5Writer writer = Hdf5Writer::create(path("info.h5"));
    writer.write("/tokens", {5}, std::vector<std::uint16_t>(5, 1));
    writer.write("/w", {2, 3}, std::vector<float>(6, 0.5f));
    writer.write("/i", {}, std::vector<std::int32_t>{-3});
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("info.h5"));
  const DatasetInfo tokens = file.dataset_info("tokens");
  EXPECT_EQ(tokens.shape, (std::vector<std::int64_t>{5}));
  EXPECT_EQ(tokens.element_class, ElementClass::integer);
  EXPECT_EQ(tokens.element_size, 2);
  EXPECT_FALSE(tokens.is_signed);
  EXPECT_EQ(tokens.type_name, "uint16");
  EXPECT_EQ(tokens.num_elements(), 5);
  const DatasetInfo w = file.dataset_info("/w");
  EXPECT_EQ(w.element_class, ElementClass::floating);
  EXPECT_EQ(w.element_size, 4);
  EXPECT_EQ(w.type_name, "float32");
  EXPECT_EQ(w.num_elements(), 6);
  const DatasetInfo i = file.dataset_info("/i");
  EXPECT_TRUE(i.shape.empty());
  EXPECT_TRUE(i.is_signed);
  EXPECT_EQ(i.num_elements(), 1);
}

TEST_F(Hdf5Io, ExistenceChecks) {
  {
    Hdf5Writer writer = Hdf5Writer::create(path("exist.h5"));
    writer.write("/params/layer0/w", {1}, std::vector<float>{1.0f});
    writer.write_int64_attribute("/params", "count", 1);
    EXPECT_TRUE(writer.has_dataset("/params/layer0/w"));
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("exist.h5"));
  EXPECT_TRUE(file.has_dataset("/params/layer0/w"));
  EXPECT_TRUE(file.has_dataset("params/layer0/w"));
  EXPECT_FALSE(file.has_dataset("/params/layer0"));
  EXPECT_FALSE(file.has_dataset("/params/layer1/w"));
  EXPECT_FALSE(file.has_dataset("/params/layer0/w/deeper"));
  EXPECT_FALSE(file.has_dataset("nothing"));
  EXPECT_TRUE(file.has_group("/params/layer0"));
  EXPECT_TRUE(file.has_group("/"));
  EXPECT_FALSE(file.has_group("/params/layer0/w"));
  EXPECT_TRUE(file.has_attribute("/params", "count"));
  EXPECT_FALSE(file.has_attribute("/params", "other"));
  EXPECT_FALSE(file.has_attribute("/", "count"));
  EXPECT_FALSE(file.has_attribute("/missing/group", "count"));
}

TEST_F(Hdf5Io, AttributesRoundTripOnRootGroupsAndDatasets) {
  const std::string config(100000, 'c');  // larger than the 64 KiB limit of compact attribute storage
  {
    Hdf5Writer writer = Hdf5Writer::create(path("attr.h5"));
    writer.write("/params/w", {1}, std::vector<float>{1.0f});
    writer.write_string_attribute("/", "format", "race-checkpoint");
    writer.write_string_attribute("", "config", config);
    writer.write_string_attribute("/", "unicode", "naïve ✓");
    writer.write_string_attribute("/", "empty", "");
    writer.write_int64_attribute("/", "step", std::numeric_limits<std::int64_t>::min());
    writer.write_double_attribute("/", "lr", 3e-4);
    writer.write_int64_attribute("/tokenizer", "vocab_size", 256);  // group created on demand
    writer.write_string_attribute("/tokenizer/special", "kind", "bytes");
    writer.write_double_attribute("/params/w", "scale", -0.5);
    writer.write_int64_attribute("/", "replaced", 1);
    writer.write_string_attribute("/", "replaced", "now a string");
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("attr.h5"));
  EXPECT_EQ(file.read_string_attribute("/", "format"), "race-checkpoint");
  EXPECT_EQ(file.read_string_attribute("/", "config"), config);
  EXPECT_EQ(file.read_string_attribute("/", "unicode"), "naïve ✓");
  EXPECT_EQ(file.read_string_attribute("/", "empty"), "");
  EXPECT_EQ(file.read_int64_attribute("/", "step"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(file.read_double_attribute("/", "lr"), 3e-4);
  EXPECT_EQ(file.read_int64_attribute("/tokenizer", "vocab_size"), 256);
  EXPECT_TRUE(file.has_group("/tokenizer/special"));
  EXPECT_EQ(file.read_string_attribute("tokenizer/special", "kind"), "bytes");
  EXPECT_EQ(file.read_double_attribute("/params/w", "scale"), -0.5);
  EXPECT_EQ(file.read_string_attribute("/", "replaced"), "now a string");
  // An integer attribute reads as a double too.
  EXPECT_EQ(file.read_double_attribute("/tokenizer", "vocab_size"), 256.0);
}

TEST_F(Hdf5Io, AttributeErrors) {
  {
    Hdf5Writer writer = Hdf5Writer::create(path("IN.h5"));
    writer.write_string_attribute("/", "kind", "bytes");
    writer.write_int64_attribute("/", "n", 3);
    EXPECT_TRUE(contains(error_of([&] { writer.write_string_attribute("/", "bad", std::string("a\0b", 3)); }),
                         "IN.h5: attribute \"bad\" of \"/\": string values cannot contain NUL characters"));
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("IN.h5"));
  EXPECT_TRUE(contains(error_of([&] { file.read_string_attribute("/", "nope"); }),
                       "IN.h5: attribute \"nope\" of \"/\" not found"));
  EXPECT_TRUE(contains(error_of([&] { file.read_int64_attribute("/group", "n"); }),
                       "IN.h5: attribute \"n\" of \"/group\": no object \"/group\" in the file"));
  EXPECT_TRUE(contains(error_of([&] { file.read_int64_attribute("/", "kind"); }),
                       "IN.h5: attribute \"kind\" of \"/\": expected an integer, got string"));
  EXPECT_TRUE(contains(error_of([&] { file.read_string_attribute("/", "n"); }),
                       "IN.h5: attribute \"n\" of \"/\": expected a string, got integer (int64)"));
  EXPECT_TRUE(contains(error_of([&] { file.read_double_attribute("/", "kind"); }),
                       "IN.h5: attribute \"kind\" of \"/\": expected a number, got string"));
}

TEST_F(Hdf5Io, AttributesWrittenByOtherTools) {
  const fs::path name = path("other.h5");
  {
    const hid_t f = H5Fcreate(name.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hid_t scalar = H5Screate(H5S_SCALAR);
    const auto fixed_string = [&](const char* attribute, const char* value, std::size_t size, H5T_str_t pad) {
      const hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, size);
      H5Tset_strpad(type, pad);
      std::vector<char> buffer(size, pad == H5T_STR_SPACEPAD ? ' ' : '\0');
      std::memcpy(buffer.data(), value, std::strlen(value));
      const hid_t a = H5Acreate2(f, attribute, type, scalar, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(a, type, buffer.data());
      H5Aclose(a);
      H5Tclose(type);
    };
    fixed_string("nullterm", "bpe", 8, H5T_STR_NULLTERM);
    fixed_string("spacepad", "bytes", 10, H5T_STR_SPACEPAD);
    const std::uint64_t huge = std::numeric_limits<std::uint64_t>::max();
    const hid_t a = H5Acreate2(f, "huge", H5T_STD_U64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT64, &huge);
    H5Aclose(a);
    const std::int16_t small = -7;
    const hid_t b = H5Acreate2(f, "small", H5T_STD_I16BE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(b, H5T_NATIVE_INT16, &small);
    H5Aclose(b);
    const hsize_t two = 2;
    const hid_t pair_space = H5Screate_simple(1, &two, nullptr);
    const std::int32_t pair[2] = {1, 2};
    const hid_t c = H5Acreate2(f, "pair", H5T_STD_I32LE, pair_space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(c, H5T_NATIVE_INT32, pair);
    H5Aclose(c);
    H5Sclose(pair_space);
    H5Sclose(scalar);
    H5Fclose(f);
  }
  const Hdf5File file = Hdf5File::open(name);
  EXPECT_EQ(file.read_string_attribute("/", "nullterm"), "bpe");
  EXPECT_EQ(file.read_string_attribute("/", "spacepad"), "bytes");
  EXPECT_EQ(file.read_int64_attribute("/", "small"), -7);
  EXPECT_TRUE(
      contains(error_of([&] { file.read_int64_attribute("/", "huge"); }),
               "attribute \"huge\" of \"/\": stored value 18446744073709551615 does not fit in int64"));
  EXPECT_TRUE(contains(error_of([&] { file.read_int64_attribute("/", "pair"); }),
                       "attribute \"pair\" of \"/\": expected a single value, got 2 values"));
}

TEST_F(Hdf5Io, Float64IsConvertedToFloat32) {
  const std::vector<double> values = {0.1,
                                      -2.5,
                                      1e-3,
                                      123456.789,
                                      std::numeric_limits<double>::infinity(),
                                      -std::numeric_limits<double>::infinity()};
  const fs::path file_name =
      raw_dataset("f64.h5", "x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {6}, values.data());
  const Hdf5File file = Hdf5File::open(file_name);
  EXPECT_EQ(file.dataset_info("x").type_name, "float64");
  const auto x = file.read_float32("x");
  ASSERT_EQ(x.values.size(), values.size());
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(x.values[i], static_cast<float>(values[i]));

  const std::vector<double> nan = {std::numeric_limits<double>::quiet_NaN()};
  EXPECT_TRUE(std::isnan(
      Hdf5File::open(raw_dataset("nan.h5", "x", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, {1}, nan.data()))
          .read_float32("x")
          .values[0]));
}

TEST_F(Hdf5Io, Float64BeyondFloat32RangeIsAnError) {
  const std::vector<double> values = {1.0, 1e300};
  const fs::path file_name =
      raw_dataset("big.h5", "x", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, {2}, values.data());
  const Hdf5File file = Hdf5File::open(file_name);
  EXPECT_TRUE(contains(error_of([&] { file.read_float32("x"); }),
                       "big.h5: dataset \"x\": stored value 1e+300 does not fit in float32"));
  // Infinities in big-endian storage pass through like little-endian ones.
  const std::vector<double> inf = {-std::numeric_limits<double>::infinity()};
  const Hdf5File be =
      Hdf5File::open(raw_dataset("inf.h5", "x", H5T_IEEE_F64BE, H5T_NATIVE_DOUBLE, {1}, inf.data()));
  EXPECT_EQ(be.read_float32("x").values[0], -std::numeric_limits<float>::infinity());
}

TEST_F(Hdf5Io, IntegersConvertBetweenWidthsWithinRange) {
  const std::vector<std::int16_t> values = {-300, 0, 300};
  const fs::path file_name = raw_dataset("i16.h5", "x", H5T_STD_I16BE, H5T_NATIVE_INT16, {3}, values.data());
  const Hdf5File file = Hdf5File::open(file_name);
  EXPECT_EQ(file.read_int32("x").values, (std::vector<std::int32_t>{-300, 0, 300}));
  EXPECT_EQ(file.read_int64("x").values, (std::vector<std::int64_t>{-300, 0, 300}));

  const std::vector<std::uint32_t> tokens = {0, 255, 17};
  const fs::path tokens_file =
      raw_dataset("u32.h5", "t", H5T_STD_U32LE, H5T_NATIVE_UINT32, {3}, tokens.data());
  EXPECT_EQ(Hdf5File::open(tokens_file).read_uint8("t").values, (std::vector<std::uint8_t>{0, 255, 17}));
}

TEST_F(Hdf5Io, IntegersOutOfRangeAreErrors) {
  const std::vector<std::int32_t> values = {1, 300};
  const Hdf5File file =
      Hdf5File::open(raw_dataset("IN.h5", "x", H5T_STD_I32BE, H5T_NATIVE_INT32, {2}, values.data()));
  EXPECT_TRUE(contains(error_of([&] { file.read_uint8("x"); }),
                       "IN.h5: dataset \"x\": stored value 300 does not fit in uint8"));
  EXPECT_EQ(file.read_uint16("x").values, (std::vector<std::uint16_t>{1, 300}));

  const std::vector<std::int64_t> negative = {5, -1};
  const Hdf5File neg =
      Hdf5File::open(raw_dataset("neg.h5", "x", H5T_STD_I64LE, H5T_NATIVE_INT64, {2}, negative.data()));
  EXPECT_TRUE(contains(error_of([&] { neg.read_uint64("x"); }),
                       "neg.h5: dataset \"x\": stored value -1 does not fit in uint64"));
  EXPECT_TRUE(contains(error_of([&] { neg.read_uint32("x"); }), "stored value -1 does not fit in uint32"));

  const std::vector<std::uint64_t> huge = {std::uint64_t{1} << 63};
  const Hdf5File big =
      Hdf5File::open(raw_dataset("huge.h5", "x", H5T_STD_U64LE, H5T_NATIVE_UINT64, {1}, huge.data()));
  EXPECT_TRUE(contains(error_of([&] { big.read_int64("x"); }),
                       "stored value 9223372036854775808 does not fit in int64"));
  EXPECT_TRUE(contains(error_of([&] { big.read_int32("x"); }), "does not fit in int32"));
}

TEST_F(Hdf5Io, WrongElementTypes) {
  {
    Hdf5Writer writer = Hdf5Writer::create(path("IN.h5"));
    writer.write("q", {2}, std::vector<std::int32_t>{1, 2});
    writer.write("f", {2}, std::vector<float>{1, 2});
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("IN.h5"));
  EXPECT_TRUE(contains(error_of([&] { file.read_float32("q"); }),
                       "IN.h5: dataset \"q\": expected float32 or float64, got integer (int32)"));
  EXPECT_TRUE(contains(error_of([&] { file.read_int32("f"); }),
                       "IN.h5: dataset \"f\": expected an integer type, got float (float32)"));

  const std::vector<std::uint16_t> half = {0x3c00};
  const hid_t float16 = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(float16, 15, 10, 5, 0, 10);
  H5Tset_precision(float16, 16);
  H5Tset_size(float16, 2);
  H5Tset_ebias(float16, 15);
  const fs::path f16 = raw_dataset("f16.h5", "h", float16, float16, {1}, half.data());
  H5Tclose(float16);
  EXPECT_TRUE(contains(error_of([&] { Hdf5File::open(f16).read_float32("h"); }),
                       "f16.h5: dataset \"h\": expected float32 or float64, got float (float16)"));
}

TEST_F(Hdf5Io, MissingDatasetsAndGroups) {
  {
    Hdf5Writer writer = Hdf5Writer::create(path("IN.h5"));
    writer.write("/params/w", {1}, std::vector<float>{1});
    writer.commit();
  }
  const Hdf5File file = Hdf5File::open(path("IN.h5"));
  EXPECT_TRUE(contains(error_of([&] { file.read_float32("q"); }), "IN.h5: dataset \"q\" not found"));
  EXPECT_TRUE(contains(error_of([&] { file.read_uint8("/params/x/y"); }),
                       "IN.h5: dataset \"/params/x/y\" not found"));
  EXPECT_TRUE(
      contains(error_of([&] { file.dataset_info("/nothing"); }), "IN.h5: dataset \"/nothing\" not found"));
  EXPECT_TRUE(contains(error_of([&] { file.read_float32("/params"); }),
                       "IN.h5: dataset \"/params\": is a group, not a dataset"));
}

TEST_F(Hdf5Io, OpenErrors) {
  EXPECT_EQ(error_of([&] { Hdf5File::open(path("missing.h5")); }),
            path("missing.h5").string() + ": no such file");
  std::ofstream(path("text.h5")) << "not hdf5 at all\n";
  EXPECT_EQ(error_of([&] { Hdf5File::open(path("text.h5")); }),
            path("text.h5").string() + ": not an HDF5 file");
  EXPECT_EQ(error_of([&] { Hdf5File::open(dir_); }), dir_.string() + ": is a directory, not an HDF5 file");
}

TEST_F(Hdf5Io, WriteErrors) {
  Hdf5Writer writer = Hdf5Writer::create(path("OUT.h5"));
  const std::vector<float> six(6, 1.0f);
  EXPECT_TRUE(contains(error_of([&] {
                         writer.write("w", {2, 2}, six);
                       }),
                       "OUT.h5: dataset \"w\": shape [2, 2] holds 4 values but 6 were given"));
  EXPECT_TRUE(contains(error_of([&] {
                         writer.write("w", {-2, -3}, six);
                       }),
                       "OUT.h5: dataset \"w\": negative dimension in shape [-2, -3]"));
  writer.write("w", {6}, six);
  EXPECT_TRUE(
      contains(error_of([&] { writer.write("w", {6}, six); }), "OUT.h5: dataset \"w\": already exists"));
  EXPECT_TRUE(contains(error_of([&] { writer.write("w/inside", {6}, six); }),
                       "OUT.h5: dataset \"w/inside\": cannot create"));
  EXPECT_TRUE(contains(error_of([&] { Hdf5Writer::create(path("no/such/dir/x.h5")); }), "does not exist"));
}

TEST_F(Hdf5Io, NothingAppearsAtTheRealPathUntilCommit) {
  const fs::path final_path = path("ckpt.h5");
  const fs::path temp_path = path("ckpt.h5.tmp");
  Hdf5Writer writer = Hdf5Writer::create(final_path);
  EXPECT_EQ(writer.temp_path(), temp_path);
  writer.write("/params/w", {3}, std::vector<float>{1, 2, 3});
  EXPECT_FALSE(fs::exists(final_path));
  EXPECT_TRUE(fs::exists(temp_path));
  writer.commit();
  EXPECT_TRUE(fs::exists(final_path));
  EXPECT_FALSE(fs::exists(temp_path));
  EXPECT_EQ(Hdf5File::open(final_path).read_float32("/params/w").values, (std::vector<float>{1, 2, 3}));
  EXPECT_TRUE(contains(error_of([&] { writer.write("more", {1}, std::vector<float>{1}); }),
                       "ckpt.h5: the file is closed"));
  EXPECT_TRUE(contains(error_of([&] { writer.commit(); }), "ckpt.h5: the file is closed"));
}

TEST_F(Hdf5Io, AnExceptionLeavesNoTempFileAndTheOldFileIntact) {
  const fs::path final_path = path("ckpt.h5");
  {
    Hdf5Writer writer = Hdf5Writer::create(final_path);
    writer.write_int64_attribute("/", "step", 1);
    writer.commit();
  }
  EXPECT_THROW(
      {
        Hdf5Writer writer = Hdf5Writer::create(final_path);
        writer.write_int64_attribute("/", "step", 2);
        throw std::runtime_error("crash while writing the checkpoint");
      },
      std::runtime_error);
  EXPECT_FALSE(fs::exists(path("ckpt.h5.tmp")));
  EXPECT_EQ(Hdf5File::open(final_path).read_int64_attribute("/", "step"), 1);
}

TEST_F(Hdf5Io, CommitReplacesAnExistingFile) {
  const fs::path final_path = path("ckpt.h5");
  for (std::int64_t step : {1, 2}) {
    Hdf5Writer writer = Hdf5Writer::create(final_path);
    writer.write_int64_attribute("/", "step", step);
    writer.commit();
  }
  EXPECT_EQ(Hdf5File::open(final_path).read_int64_attribute("/", "step"), 2);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(Hdf5Io, MovedWritersKeepOwnershipOfTheTempFile) {
  const fs::path final_path = path("moved.h5");
  Hdf5Writer target = Hdf5Writer::create(path("other.h5"));
  {
    Hdf5Writer first = Hdf5Writer::create(final_path);
    first.write("/x", {1}, std::vector<std::uint8_t>{9});
    Hdf5Writer second = std::move(first);
    EXPECT_TRUE(fs::exists(path("moved.h5.tmp")));  // the moved-from writer did not delete it
    target = std::move(second);                     // discards other.h5.tmp
  }
  EXPECT_FALSE(fs::exists(path("other.h5.tmp")));
  EXPECT_TRUE(fs::exists(path("moved.h5.tmp")));
  target.commit();
  EXPECT_EQ(Hdf5File::open(final_path).read_uint8("/x").values, (std::vector<std::uint8_t>{9}));
  EXPECT_FALSE(fs::exists(path("moved.h5.tmp")));
}

}  // namespace
}  // namespace race
