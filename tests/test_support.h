// Small helpers shared by the GoogleTest suites in tests/: fp32 Gaussian inputs (normal), fp32 -> fp64
// copies (widen), the relative RMS error the kernels are held to (relative_rms), NaN-filled outputs
// (nan_filled), exact comparison (bit_equal), race::Error checks (expect_error, error_of), substring tests
// (contains), and a fixture that gives each test a fresh temporary directory (TempDirTest).
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace race::test {

// n draws from N(mean, scale^2), rounded to fp32.
inline std::vector<float> normal(std::mt19937_64& rng, std::int64_t n, double scale = 1.0,
                                 double mean = 0.0) {
  std::normal_distribution<double> dist(mean, scale);
  std::vector<float> out(static_cast<std::size_t>(n));
  for (auto& x : out) x = static_cast<float>(dist(rng));
  return out;
}

inline std::vector<double> widen(const std::vector<float>& x) { return {x.begin(), x.end()}; }

namespace detail {
template <typename T>
double relative_rms(const std::vector<T>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}
}  // namespace detail

// ||got - want|| / ||want|| (||got - want|| when want is all zero), with a failure if the sizes differ;
// NaN anywhere gives NaN, which fails every bound.
inline double relative_rms(const std::vector<float>& got, const std::vector<double>& want) {
  return detail::relative_rms(got, want);
}
inline double relative_rms(const std::vector<double>& got, const std::vector<double>& want) {
  return detail::relative_rms(got, want);
}

inline std::vector<float> nan_filled(std::int64_t n) {
  return std::vector<float>(static_cast<std::size_t>(n), std::numeric_limits<float>::quiet_NaN());
}

// Same size and the same bits (so -0 != +0, and a NaN equals the same NaN).
inline bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// A test failure unless f throws a race::Error whose message contains needle.
inline void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no race::Error; expected one mentioning '" << needle << "'";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// The message of the race::Error that `body` throws, or a test failure (and "") if it throws none.
template <typename Body>
std::string error_of(Body&& body) {
  try {
    body();
  } catch (const race::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a race::Error";
  return "";
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A fixture whose dir_ is a fresh directory, temp_directory_path()/race_test_<tag>_XXXXXX, removed with all
// it holds after each test. A derived SetUp that does more must call TempDirTest::SetUp() first.
class TempDirTest : public ::testing::Test {
 protected:
  explicit TempDirTest(std::string tag) : tag_(std::move(tag)) {}

  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / ("race_test_" + tag_ + "_XXXXXX")).string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;

 private:
  std::string tag_;
};

}  // namespace race::test
