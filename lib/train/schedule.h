// Learning-rate schedules for the trainer: linear warmup, then cosine, linear or no decay, or WSD
// (warmup-stable-decay: a plateau, then a linear decay over the last fraction of the run). Also the config
// schema fragment for these options, so the trainer's config embeds the same keys, defaults and docs.
//
// Steps are 0-based: `step` is the index of the optimizer update about to be taken, and s = step + 1 is the
// number of updates done once it is. With W = warmup_steps and T = total_steps:
//   warmup (s <= W):           lr * s / W              step 0 gets lr / W, step W - 1 gets exactly lr
//   decay  (W < s <= T):       p = (s - W) / (T - W)    p reaches 1 at the last step, step T - 1
//     cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2
//     linear:   min_lr + (lr - min_lr) * (1 - p), computed as (T - s) / (T - W) so that it ends on min_lr
//     constant: lr
//     wsd:      D = max(1, round(decay_fraction * T)) decay steps (halves round away from zero): lr while
//               s <= T - D, then min_lr + (lr - min_lr) * (T - s) / D
//   after the run (s > T):    min_lr (constant: lr), so an extra step never raises the rate again.
// Counting s rather than step makes both ends exact: the warmup's last step runs at lr and the run's last
// step at min_lr, with neither value repeated.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/config.h"

namespace race::train {

enum class ScheduleKind { cosine, linear, constant, wsd };

struct ScheduleOptions {
  ScheduleKind kind = ScheduleKind::cosine;
  double lr = 3e-4;       // peak rate, reached at the end of warmup
  double min_lr = 3e-5;   // final rate of the decaying kinds
  std::int64_t warmup_steps = 100;
  std::int64_t total_steps = 1000;
  double decay_fraction = 0.2;  // wsd: the last fraction of total_steps, in (0, 1]
};

// "cosine", "linear", "constant", "wsd"; anything else is a race::Error listing them.
ScheduleKind parse_schedule_kind(std::string_view name);
std::string_view schedule_kind_name(ScheduleKind kind);

// Throws race::Error naming `path`.key and the expected range for: a negative or non-finite lr or min_lr,
// min_lr > lr, negative warmup_steps, total_steps < 1, warmup_steps > total_steps, decay_fraction outside
// (0, 1], and a wsd decay phase that would start inside the warmup.
void validate(const ScheduleOptions& options, std::string_view path = "schedule");

// The rate for 0-based `step` (formulas above). Validates `options`; a negative step is an error.
double learning_rate(const ScheduleOptions& options, std::int64_t step);

// The object schema of the keys above (kind, lr, min_lr, warmup_steps, total_steps, decay_fraction).
Schema schedule_schema();

// Options from a resolved config object of schedule_schema() (see race::resolve), validated with `path` as
// the prefix of error messages.
ScheduleOptions schedule_options_from_json(const nlohmann::json& resolved, std::string_view path = "schedule");

}  // namespace race::train
