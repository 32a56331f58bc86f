// Tests of lib/core/logging and lib/core/main_guard.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/logging.h"
#include "core/main_guard.h"
#include "core/shared_library.h"

namespace race {
namespace {

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "race_test_misc_XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::filesystem::path path_;
};

TEST(Logging, LevelNames) {
  EXPECT_EQ(parse_log_level("debug"), spdlog::level::debug);
  EXPECT_EQ(parse_log_level("error"), spdlog::level::err);
  EXPECT_EQ(parse_log_level("off"), spdlog::level::off);
  try {
    parse_log_level("inf");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "unknown log level \"inf\"; expected one of \"trace\", \"debug\", \"info\", \"warn\", \"error\", \"critical\", \"off\"");
  }
  EXPECT_THROW(init_logging("verbose"), Error);
}

TEST(Logging, ConsoleAndFile) {
  TempDir dir;
  const auto log = dir.path_ / "run" / "log";
  init_logging("info", log);
  testing::internal::CaptureStderr();
  spdlog::info("hello {}", 42);
  spdlog::debug("hidden");
  log_to_file_only(spdlog::level::err, "file only");
  const std::string console = testing::internal::GetCapturedStderr();
  EXPECT_NE(console.find(" I hello 42\n"), std::string::npos) << console;
  EXPECT_EQ(console.find("hidden"), std::string::npos);
  EXPECT_EQ(console.find("file only"), std::string::npos);
  const std::string file = read_file(log);
  EXPECT_NE(file.find(" I hello 42\n"), std::string::npos) << file;
  EXPECT_NE(file.find(" E file only\n"), std::string::npos) << file;
  EXPECT_EQ(file.find("hidden"), std::string::npos);
  // A second setup appends to the same file and replaces the first.
  init_logging("debug", log);
  spdlog::debug("shown");
  EXPECT_NE(read_file(log).find("hello 42"), std::string::npos);
  EXPECT_NE(read_file(log).find(" D shown\n"), std::string::npos);
  init_logging("warn");
  log_to_file_only(spdlog::level::err, "nowhere");
  EXPECT_EQ(read_file(log).find("nowhere"), std::string::npos);
}

TEST(Logging, UnopenableFile) {
  try {
    init_logging("info", std::filesystem::path("/proc/no/such/log"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/proc/no/such/log: cannot open the log file"), std::string::npos) << e.what();
  }
}

int guarded(const std::function<int()>& body, std::string& err) {
  testing::internal::CaptureStderr();
  const int status = run_guarded(body);
  err = testing::internal::GetCapturedStderr();
  return status;
}

TEST(MainGuard, StatusesAndMessages) {
  init_logging("info");
  std::string err;
  EXPECT_EQ(guarded([] { return 3; }, err), 3);
  EXPECT_EQ(err, "");
  EXPECT_EQ(guarded([]() -> int { fail("config.json: x: bad"); }, err), 1);
  EXPECT_EQ(err, "error: config.json: x: bad\n");
  EXPECT_EQ(guarded([]() -> int { throw UsageError("override \"a\": no '='"); }, err), 2);
  EXPECT_EQ(err, "error: override \"a\": no '='\n");
  EXPECT_EQ(guarded([]() -> int { throw std::bad_alloc(); }, err), 1);
  EXPECT_EQ(err, "error: out of memory: std::bad_alloc\n");
  EXPECT_EQ(guarded([]() -> int { throw std::out_of_range("vector"); }, err), 1);
  EXPECT_EQ(err, "error: vector\n");
  EXPECT_EQ(guarded([]() -> int { throw 7; }, err), 1);
  EXPECT_EQ(err, "error: unknown exception\n");
}

TEST(MainGuard, ErrorsReachTheLogFile) {
  TempDir dir;
  init_logging("info", dir.path_ / "log");
  std::string err;
  EXPECT_EQ(guarded([]() -> int { fail("disk on fire"); }, err), 1);
  EXPECT_EQ(err, "error: disk on fire\n");
  EXPECT_NE(read_file(dir.path_ / "log").find(" E disk on fire\n"), std::string::npos);
  init_logging("info");
}

}  // namespace
}  // namespace race

// The run-time loading that keeps cuBLASLt and NCCL out of CPU runs: the first candidate that loads wins, a
// library that none of the candidates names is an error listing each attempt and the hint, and a missing
// function is an error naming the library and the function.
TEST(SharedLibrary, OpensTheFirstCandidateThatLoadsAndNamesWhatIsMissing) {
  const race::SharedLibrary libm({"libnot-a-library.so.7", "libm.so.6"}, "unused");
  EXPECT_EQ(libm.opened(), "libm.so.6");
  const auto cosine = libm.function<double (*)(double)>("cos");
  EXPECT_DOUBLE_EQ(cosine(0.0), 1.0);
  try {
    libm.function<double (*)(double)>("race_no_such_function");
    FAIL() << "expected an error";
  } catch (const race::Error& e) {
    EXPECT_NE(std::string(e.what()).find("libm.so.6 has no function race_no_such_function"), std::string::npos)
        << e.what();
  }
  try {
    const race::SharedLibrary none({"libnot-a-library.so.7", "/nonexistent/libalso-not.so"}, "install it");
    FAIL() << "expected an error";
  } catch (const race::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("libnot-a-library.so.7"), std::string::npos) << what;
    EXPECT_NE(what.find("/nonexistent/libalso-not.so"), std::string::npos) << what;
    EXPECT_NE(what.find("hint: install it"), std::string::npos) << what;
  }
}
