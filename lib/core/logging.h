// Logging setup over spdlog: one default logger writing to stderr (compact) and, when asked, to a log file
// (full timestamps), so every app logs the same way with plain spdlog::info(...) calls.
#pragma once

#include <spdlog/common.h>

#include <filesystem>
#include <optional>
#include <string_view>

namespace race {

// "trace", "debug", "info", "warn", "error", "critical" or "off"; anything else is a race::Error listing
// them.
spdlog::level::level_enum parse_log_level(std::string_view name);

// Installs the default logger: stderr with the pattern "12:34:56.789 I message", plus `log_file` (created
// with its directories if needed, appended to, "2024-05-01 12:34:56.789 I message") when given. Messages
// below `level` are dropped. Calling it again replaces the previous setup.
void init_logging(std::string_view level,
                  const std::optional<std::filesystem::path>& log_file = std::nullopt);

// Writes `message` to the log file of init_logging only (nothing without one). For errors that are already
// printed on the console, so that the file log still ends with the reason a run stopped.
void log_to_file_only(spdlog::level::level_enum level, std::string_view message);

}  // namespace race
