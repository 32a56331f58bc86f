// spdlog sinks and patterns for the default logger, and the log-file-only path used by run_guarded.
#include "core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"

namespace race {

namespace {

constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 7> kLevels{{
    {"trace", spdlog::level::trace},
    {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},
    {"error", spdlog::level::err},
    {"critical", spdlog::level::critical},
    {"off", spdlog::level::off},
}};

// The file sink of the current setup, kept apart from the logger so log_to_file_only can bypass the console.
std::mutex file_sink_mutex;
std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file_sink;

}  // namespace

spdlog::level::level_enum parse_log_level(std::string_view name) {
  std::string names;
  for (const auto& [level_name, level] : kLevels) {
    if (level_name == name) return level;
    names += fmt::format("{}\"{}\"", names.empty() ? "" : ", ", level_name);
  }
  fail("unknown log level \"{}\"; expected one of {}", name, names);
}

void init_logging(std::string_view level, const std::optional<std::filesystem::path>& log_file) {
  const spdlog::level::level_enum threshold = parse_log_level(level);
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_pattern("%H:%M:%S.%e %^%L%$ %v");
  std::vector<spdlog::sink_ptr> sinks{console};

  std::shared_ptr<spdlog::sinks::basic_file_sink_mt> file;
  if (log_file) {
    try {
      file = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file->string(), /*truncate=*/false);
    } catch (const spdlog::spdlog_ex& e) {
      fail("{}: cannot open the log file: {}", log_file->string(), e.what());
    }
    file->set_pattern("%Y-%m-%d %H:%M:%S.%e %L %v");
    sinks.push_back(file);
  }

  auto logger = std::make_shared<spdlog::logger>("race", sinks.begin(), sinks.end());
  logger->set_level(threshold);
  // Flushing every line is cheap at the rate apps log, and means a crash cannot swallow the last lines
  // before it, which are the ones needed to understand it.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);

  const std::lock_guard lock(file_sink_mutex);
  file_sink = std::move(file);
}

void log_to_file_only(spdlog::level::level_enum level, std::string_view message) {
  const std::lock_guard lock(file_sink_mutex);
  if (!file_sink) return;
  file_sink->log(
      spdlog::details::log_msg("race", level, spdlog::string_view_t(message.data(), message.size())));
  file_sink->flush();
}

}  // namespace race
