// Run directories: layout and guarantees in run_directory.h.
#include "train/run_directory.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <stdio.h>  // renameat2
#include <stdlib.h>  // mkdtemp
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>

#include "core/config.h"
#include "core/error.h"

namespace race::train {
namespace {

namespace fs = std::filesystem;

// fsync on a file or directory, so that what a rename publishes is on disk first. False on failure.
bool sync_path(const fs::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  return synced;
}

// Writes `text` to `path` (truncating) and syncs it.
void write_file(const fs::path& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) fail("{}: cannot write: {}", path.string(), std::strerror(errno));
  }
  if (!sync_path(path, O_RDONLY)) fail("{}: cannot sync: {}", path.string(), std::strerror(errno));
}

// Renames directory `from` onto `to` unless `to` exists; a plain rename would replace an empty directory.
void rename_no_replace(const fs::path& from, const fs::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return;
  const int error = errno;
  if (error == EEXIST || error == ENOTEMPTY)
    fail("run directory {} already exists; resume it (--resume {}) or choose another name", to.string(),
         to.string());
  fail("run directory {}: cannot rename {} onto it: {}", to.string(), from.string(), std::strerror(error));
}

// The integer "step" of a metrics record, or an error naming `context`.
std::int64_t step_of(const nlohmann::json& record, std::string_view context) {
  if (!record.is_object()) fail("{}: expected a JSON object, got {}", context, record.dump());
  const auto it = record.find("step");
  if (it == record.end() || !it->is_number_integer())
    fail("{}: expected an integer \"step\", got {}", context, record.dump());
  return it->get<std::int64_t>();
}

}  // namespace

RunDirectory::RunDirectory(fs::path path, nlohmann::json config)
    : path_(std::move(path)), config_(std::move(config)) {}

RunDirectory RunDirectory::create(const fs::path& root, std::string_view name,
                                  const nlohmann::json& resolved_config) {
  if (name.empty() || name.front() == '.' || name.find('/') != std::string_view::npos)
    fail("run name \"{}\": expected a non-empty name without '/' that does not start with '.'", name);
  if (!resolved_config.is_object())
    fail("run {}: the resolved config must be a JSON object, got {}", name, resolved_config.type_name());
  std::string config_text;
  try {
    config_text = resolved_config.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {
    fail("run {}: the resolved config cannot be written as JSON: {}", name, e.what());
  }
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) fail("runs directory {}: cannot create it: {}", root.string(), ec.message());
  const fs::path final_path = root / name;
  // Checked first for a clear message; the no-replace rename below is what makes it safe against a race.
  if (fs::exists(final_path, ec))
    fail("run directory {} already exists; resume it (--resume {}) or choose another name",
         final_path.string(), final_path.string());

  std::string pattern = (root / fmt::format(".{}.partial-XXXXXX", name)).string();
  if (::mkdtemp(pattern.data()) == nullptr)
    fail("runs directory {}: cannot create a temporary directory: {}", root.string(), std::strerror(errno));
  const fs::path temp = pattern;
  try {
    RunDirectory staged(temp, resolved_config);
    fs::create_directory(staged.checkpoint_dir());
    write_file(staged.metrics_path(), "");
    // config.json last: the directory is complete once it is there, and only then takes its real name.
    write_file(staged.config_path(), config_text);
    sync_path(temp, O_RDONLY | O_DIRECTORY);
    rename_no_replace(temp, final_path);
  } catch (const std::exception&) {
    fs::remove_all(temp, ec);
    throw;
  }
  // As in Hdf5Writer::commit: the rename is durable once the parent is synced; some file systems refuse.
  sync_path(root, O_RDONLY | O_DIRECTORY);
  return RunDirectory(final_path, resolved_config);
}

RunDirectory RunDirectory::open_for_resume(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) fail("run directory {}: does not exist or is not a directory", path.string());
  RunDirectory run(path, nlohmann::json());
  if (!fs::is_regular_file(run.config_path(), ec))
    fail("run directory {}: config.json is missing; expected a directory made by race-train", path.string());
  run.config_ = load_json_file(run.config_path());
  if (!run.config_.is_object())
    fail("{}: expected a JSON object, got {}", run.config_path().string(), run.config_.type_name());
  if (!fs::is_directory(run.checkpoint_dir(), ec))
    fail("run directory {}: checkpoints/ is missing; expected a directory made by race-train", path.string());
  return run;
}

void RunDirectory::truncate_metrics_after(std::int64_t step) {
  if (step < -1) fail("truncate_metrics_after: step {}: expected a step >= -1", step);
  const fs::path path = metrics_path();
  metrics_.close();
  std::error_code ec;
  if (!fs::exists(path, ec)) return;

  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();

  std::string kept;
  std::int64_t line_number = 0;
  for (std::size_t start = 0; start < text.size();) {
    ++line_number;
    const std::size_t newline = text.find('\n', start);
    const std::string line = text.substr(start, newline == std::string::npos ? std::string::npos : newline - start);
    start = newline == std::string::npos ? text.size() : newline + 1;
    const std::string context = fmt::format("{}:{}", path.string(), line_number);
    if (newline == std::string::npos) {
      spdlog::warn("{}: dropping a partial last line (no newline) left by an interrupted write", context);
      break;
    }
    if (line.empty()) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", context, e.what());
    }
    if (step_of(record, context) <= step) kept += line + "\n";
  }

  fs::path temp = path;
  temp += ".tmp";
  write_file(temp, kept);
  fs::rename(temp, path, ec);
  if (ec) fail("{}: cannot rename {} onto it: {}", path.string(), temp.string(), ec.message());
}

void RunDirectory::append_metrics(const nlohmann::json& record) {
  const fs::path path = metrics_path();
  const std::int64_t step = step_of(record, fmt::format("{}: metrics record", path.string()));
  if (step < 0) fail("{}: metrics record: expected \"step\" >= 0, got {}", path.string(), step);
  std::string line;
  try {
    line = record.dump();  // no indentation: one line (newlines inside strings are escaped)
  } catch (const nlohmann::json::exception& e) {
    fail("{}: metrics record cannot be written as JSON: {}", path.string(), e.what());
  }
  if (!metrics_.is_open()) {
    metrics_.clear();
    metrics_.open(path, std::ios::binary | std::ios::app);
    if (!metrics_) fail("{}: cannot open for appending: {}", path.string(), std::strerror(errno));
  }
  metrics_ << line << '\n';
  metrics_.flush();
  if (!metrics_) fail("{}: cannot append: {}", path.string(), std::strerror(errno));
}

}  // namespace race::train
