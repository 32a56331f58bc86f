// Learning-rate schedules (formulas in schedule.h) and their config schema.
#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace race::train {
namespace {

std::int64_t wsd_decay_steps(const ScheduleOptions& options) {
  const auto steps = static_cast<std::int64_t>(
      std::llround(options.decay_fraction * static_cast<double>(options.total_steps)));
  return std::max<std::int64_t>(1, steps);
}

}  // namespace

ScheduleKind parse_schedule_kind(std::string_view name) {
  if (name == "cosine") return ScheduleKind::cosine;
  if (name == "linear") return ScheduleKind::linear;
  if (name == "constant") return ScheduleKind::constant;
  if (name == "wsd") return ScheduleKind::wsd;
  fail("schedule kind \"{}\": expected one of cosine, linear, constant, wsd", name);
}

std::string_view schedule_kind_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::linear: return "linear";
    case ScheduleKind::constant: return "constant";
    case ScheduleKind::wsd: return "wsd";
  }
  fail("schedule kind {}: not a ScheduleKind value", static_cast<int>(kind));
}

void validate(const ScheduleOptions& options, std::string_view path) {
  // Written as !(x >= 0) so that NaN fails too.
  if (!(options.lr >= 0.0) || !std::isfinite(options.lr))
    fail("{}.lr: expected a finite number >= 0, got {}", path, options.lr);
  if (!(options.min_lr >= 0.0) || !std::isfinite(options.min_lr))
    fail("{}.min_lr: expected a finite number >= 0, got {}", path, options.min_lr);
  if (options.min_lr > options.lr)
    fail("{}.min_lr: expected at most lr ({}), got {}", path, options.lr, options.min_lr);
  if (options.warmup_steps < 0)
    fail("{}.warmup_steps: expected an integer >= 0, got {}", path, options.warmup_steps);
  if (options.total_steps < 1)
    fail("{}.total_steps: expected an integer >= 1, got {}", path, options.total_steps);
  if (options.warmup_steps > options.total_steps)
    fail("{}.warmup_steps: expected at most total_steps ({}), got {}", path, options.total_steps,
         options.warmup_steps);
  // Checked for every kind: a value out of range is a mistake in the config even where it is unused.
  if (!(options.decay_fraction > 0.0 && options.decay_fraction <= 1.0))
    fail("{}.decay_fraction: expected a number in (0, 1], got {}", path, options.decay_fraction);
  if (options.kind == ScheduleKind::wsd) {
    const std::int64_t decay = wsd_decay_steps(options);
    if (options.total_steps - decay < options.warmup_steps)
      fail("{}.decay_fraction: the wsd decay ({} of {} steps) would start inside the warmup ({} steps); "
           "expected decay_fraction <= {}",
           path, decay, options.total_steps, options.warmup_steps,
           static_cast<double>(options.total_steps - options.warmup_steps) /
               static_cast<double>(options.total_steps));
  }
}

double learning_rate(const ScheduleOptions& options, std::int64_t step) {
  validate(options);
  if (step < 0) fail("learning_rate: step {}: expected a step >= 0", step);
  const std::int64_t s = step + 1;
  const std::int64_t warmup = options.warmup_steps;
  const std::int64_t total = options.total_steps;
  if (s <= warmup) return options.lr * static_cast<double>(s) / static_cast<double>(warmup);
  if (options.kind == ScheduleKind::constant) return options.lr;
  if (s > total) return options.min_lr;
  const double range = options.lr - options.min_lr;
  if (options.kind == ScheduleKind::wsd) {
    const std::int64_t decay = wsd_decay_steps(options);
    const std::int64_t decay_start = total - decay;
    if (s <= decay_start) return options.lr;
    // Counted from the end, so that the last step lands exactly on min_lr.
    return options.min_lr + range * static_cast<double>(total - s) / static_cast<double>(decay);
  }
  // s > warmup and s <= total here, so total > warmup and the divisions are safe.
  if (options.kind == ScheduleKind::linear)
    return options.min_lr + range * static_cast<double>(total - s) / static_cast<double>(total - warmup);
  const double p = static_cast<double>(s - warmup) / static_cast<double>(total - warmup);
  return options.min_lr + range * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

Schema schedule_schema() {
  const ScheduleOptions defaults;
  return Schema::object(
      "Learning-rate schedule: linear warmup to lr, then decay to min_lr.",
      {
          {"kind", Schema::string(std::string(schedule_kind_name(defaults.kind)),
                                  "Shape after warmup: cosine or linear decay to min_lr at total_steps, "
                                  "constant lr, or wsd (constant, then a linear decay over the last "
                                  "decay_fraction of the run).")
                       .one_of({"cosine", "linear", "constant", "wsd"})},
          {"lr", Schema::number(defaults.lr, "Peak learning rate, reached at the last warmup step.").min(0)},
          {"min_lr", Schema::number(defaults.min_lr,
                                    "Learning rate at the last step (cosine, linear, wsd); at most lr.")
                         .min(0)},
          {"warmup_steps", Schema::integer(defaults.warmup_steps,
                                           "Steps of linear warmup: step i (0-based) runs at "
                                           "lr * (i + 1) / warmup_steps. 0 for none.")
                               .min(0)},
          {"total_steps", Schema::integer(defaults.total_steps,
                                          "Steps in the whole run; the decay ends at min_lr on the last one.")
                              .min(1)},
          {"decay_fraction", Schema::number(defaults.decay_fraction,
                                            "wsd only: the fraction of total_steps, at the end of the run, "
                                            "over which the rate decays linearly to min_lr; in (0, 1].")
                                 .min(0)
                                 .max(1)},
      });
}

ScheduleOptions schedule_options_from_json(const nlohmann::json& resolved, std::string_view path) {
  // The config resolver has already checked types and ranges; this reads the keys it guarantees.
  auto field = [&](const char* key) -> const nlohmann::json& {
    if (!resolved.is_object() || !resolved.contains(key))
      fail("{}.{}: missing; expected a resolved schedule config", path, key);
    return resolved.at(key);
  };
  ScheduleOptions options;
  try {
    options.kind = parse_schedule_kind(field("kind").get<std::string>());
    options.lr = field("lr").get<double>();
    options.min_lr = field("min_lr").get<double>();
    options.warmup_steps = field("warmup_steps").get<std::int64_t>();
    options.total_steps = field("total_steps").get<std::int64_t>();
    options.decay_fraction = field("decay_fraction").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: expected a resolved schedule config: {}", path, e.what());
  }
  validate(options, path);
  return options;
}

}  // namespace race::train
