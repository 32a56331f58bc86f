// The run directory of one training run (DESIGN section 4), runs/<name>/:
//   config.json    the resolved config, written once when the run is created
//   metrics.jsonl  one JSON object per logged step, each with an integer "step"; appended and flushed a line
//                  at a time, so a crash loses at most the line being written
//   log            the log file (its path only: init_logging writes it)
//   checkpoints/   the checkpoint files (checkpoint.h)
//
// A run directory exists under its real name only once it is complete: create() builds it under a hidden
// temporary name (.<name>.partial-XXXXXX, beside it) and renames it into place after config.json is on disk,
// so a failed or interrupted start never leaves a directory that a resume would misread. A crash in that
// window can leave a .partial directory behind; nothing reads those, and they may be deleted by hand.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string_view>

namespace race::train {

class RunDirectory {
 public:
  // Creates `<root>/<name>` (and `root` if needed) holding config.json (`resolved_config`, pretty-printed),
  // an empty metrics.jsonl and an empty checkpoints/. `name` must be a single non-empty path component that
  // does not start with '.'. An existing `<root>/<name>` is an error that points to resuming instead.
  static RunDirectory create(const std::filesystem::path& root, std::string_view name,
                             const nlohmann::json& resolved_config);

  // Opens an existing run directory to continue it: `path` must be a directory with a config.json that parses
  // as a JSON object (its config() is the stored config) and a checkpoints/ directory. A missing
  // metrics.jsonl is recreated by the first append. Errors name the path and what is missing.
  static RunDirectory open_for_resume(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const nlohmann::json& config() const { return config_; }
  std::filesystem::path config_path() const { return path_ / "config.json"; }
  std::filesystem::path metrics_path() const { return path_ / "metrics.jsonl"; }
  std::filesystem::path log_path() const { return path_ / "log"; }
  std::filesystem::path checkpoint_dir() const { return path_ / "checkpoints"; }

  // For a resume from the checkpoint of `step`: rewrites metrics.jsonl (temporary file, then rename) without
  // the lines whose step is greater, so that the resumed run appends exactly what an uninterrupted run would
  // have logged. A partial last line (no newline: a crash mid-write) is dropped with a warning; any other
  // line that is not a JSON object with an integer "step" is an error naming metrics.jsonl and the line
  // number. Pass -1 to drop every line (a restart with no checkpoint).
  void truncate_metrics_after(std::int64_t step);

  // Appends `record` (a JSON object with an integer "step" >= 0) as one line and flushes it.
  void append_metrics(const nlohmann::json& record);

 private:
  RunDirectory(std::filesystem::path path, nlohmann::json config);

  std::filesystem::path path_;
  nlohmann::json config_;
  std::ofstream metrics_;  // opened (appending) on the first append_metrics
};

}  // namespace race::train
