// Tests of lib/train/schedule: each kind at its key steps against the closed forms of schedule.h (warmup,
// cosine midpoint, end at min_lr, wsd plateau and decay, past the end), validation errors naming the key,
// and the config schema fragment resolving to valid options.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include "core/config.h"
#include "core/error.h"
#include "test_support.h"
#include "train/schedule.h"

namespace race::train {
namespace {

using race::test::error_of;

ScheduleOptions options(ScheduleKind kind) {
  ScheduleOptions o;
  o.kind = kind;
  o.lr = 1.0e-3;
  o.min_lr = 1.0e-4;
  o.warmup_steps = 10;
  o.total_steps = 110;
  o.decay_fraction = 0.2;
  return o;
}

TEST(Schedule, WarmupIsLinearFromLrOverWarmup) {
  for (const ScheduleKind kind : {ScheduleKind::cosine, ScheduleKind::linear, ScheduleKind::constant,
                                  ScheduleKind::wsd}) {
    const ScheduleOptions o = options(kind);
    EXPECT_DOUBLE_EQ(learning_rate(o, 0), 1.0e-4);   // lr / warmup
    EXPECT_DOUBLE_EQ(learning_rate(o, 4), 5.0e-4);   // lr * 5 / 10
    EXPECT_EQ(learning_rate(o, 9), 1.0e-3);   // the last warmup step runs at exactly lr
  }
}

TEST(Schedule, CosineMidpointAndEnd) {
  const ScheduleOptions o = options(ScheduleKind::cosine);
  // s = step + 1; p = (s - 10) / 100.
  EXPECT_DOUBLE_EQ(learning_rate(o, 59), 0.5 * (1.0e-3 + 1.0e-4));  // p = 0.5
  const double p = 25.0 / 100.0;
  EXPECT_DOUBLE_EQ(learning_rate(o, 34), 1.0e-4 + 0.9e-3 * 0.5 * (1.0 + std::cos(std::numbers::pi * p)));
  EXPECT_EQ(learning_rate(o, 109), 1.0e-4);  // the last step, total_steps - 1, exactly
  EXPECT_GT(learning_rate(o, 108), 1.0e-4);
  EXPECT_DOUBLE_EQ(learning_rate(o, 110), 1.0e-4);  // past the end stays at min_lr
  EXPECT_DOUBLE_EQ(learning_rate(o, 1000000), 1.0e-4);
}

TEST(Schedule, LinearDecay) {
  const ScheduleOptions o = options(ScheduleKind::linear);
  EXPECT_DOUBLE_EQ(learning_rate(o, 10), 1.0e-3 - 0.9e-3 * 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(o, 59), 5.5e-4);
  EXPECT_EQ(learning_rate(o, 109), 1.0e-4);
  EXPECT_DOUBLE_EQ(learning_rate(o, 500), 1.0e-4);
}

TEST(Schedule, ConstantAfterWarmup) {
  const ScheduleOptions o = options(ScheduleKind::constant);
  EXPECT_DOUBLE_EQ(learning_rate(o, 10), 1.0e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 109), 1.0e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 500), 1.0e-3);
}

TEST(Schedule, WsdPlateauThenLinearDecay) {
  const ScheduleOptions o = options(ScheduleKind::wsd);
  // D = round(0.2 * 110) = 22 decay steps; plateau while s <= 88, i.e. steps 9..87.
  EXPECT_DOUBLE_EQ(learning_rate(o, 10), 1.0e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 87), 1.0e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 88), 1.0e-3 - 0.9e-3 / 22.0);
  EXPECT_DOUBLE_EQ(learning_rate(o, 98), 1.0e-3 - 0.9e-3 * 11.0 / 22.0);
  EXPECT_EQ(learning_rate(o, 109), 1.0e-4);  // exactly
  EXPECT_DOUBLE_EQ(learning_rate(o, 200), 1.0e-4);
}

TEST(Schedule, NoWarmupAndWarmupOverTheWholeRun) {
  ScheduleOptions o = options(ScheduleKind::cosine);
  o.warmup_steps = 0;
  o.total_steps = 4;
  o.min_lr = 0.0;
  // p = s / 4.
  EXPECT_DOUBLE_EQ(learning_rate(o, 0), 1.0e-3 * 0.5 * (1.0 + std::cos(std::numbers::pi * 0.25)));
  EXPECT_DOUBLE_EQ(learning_rate(o, 3), 0.0);
  o.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate(o, 3), 1.0e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 4), 0.0);
  // wsd with the decay filling everything after warmup.
  o.kind = ScheduleKind::wsd;
  o.warmup_steps = 2;
  o.decay_fraction = 0.5;
  EXPECT_DOUBLE_EQ(learning_rate(o, 1), 1.0e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 2), 0.5e-3);
  EXPECT_DOUBLE_EQ(learning_rate(o, 3), 0.0);
}

TEST(Schedule, ValidationErrorsNameTheKey) {
  const auto error = [](auto change) {
    ScheduleOptions o = options(ScheduleKind::wsd);
    change(o);
    return error_of([&] { validate(o, "optim.schedule"); });
  };
  EXPECT_EQ(error([](ScheduleOptions& o) { o.warmup_steps = 111; }),
            "optim.schedule.warmup_steps: expected at most total_steps (110), got 111");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.min_lr = 2.0e-3; }),
            "optim.schedule.min_lr: expected at most lr (0.001), got 0.002");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.lr = -1.0; }),
            "optim.schedule.lr: expected a finite number >= 0, got -1");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.lr = std::numeric_limits<double>::quiet_NaN(); }),
            "optim.schedule.lr: expected a finite number >= 0, got nan");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.min_lr = -1.0e-5; }),
            "optim.schedule.min_lr: expected a finite number >= 0, got -1e-05");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.warmup_steps = -1; }),
            "optim.schedule.warmup_steps: expected an integer >= 0, got -1");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.total_steps = 0; }),
            "optim.schedule.total_steps: expected an integer >= 1, got 0");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.decay_fraction = 0.0; }),
            "optim.schedule.decay_fraction: expected a number in (0, 1], got 0");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.decay_fraction = 1.5; }),
            "optim.schedule.decay_fraction: expected a number in (0, 1], got 1.5");
  EXPECT_EQ(error([](ScheduleOptions& o) { o.decay_fraction = 0.95; }),
            "optim.schedule.decay_fraction: the wsd decay (105 of 110 steps) would start inside the warmup "
            "(10 steps); expected decay_fraction <= 0.9090909090909091");
  EXPECT_EQ(error_of([] { learning_rate(options(ScheduleKind::cosine), -1); }),
            "learning_rate: step -1: expected a step >= 0");
  EXPECT_EQ(error_of([] { parse_schedule_kind("cosin"); }),
            "schedule kind \"cosin\": expected one of cosine, linear, constant, wsd");
}

TEST(Schedule, SchemaResolvesToValidOptions) {
  const Schema schema = Schema::object("Trainer.", {{"schedule", schedule_schema()}});
  const nlohmann::json defaults = resolve(schema, nlohmann::json::object());
  const ScheduleOptions d = schedule_options_from_json(defaults.at("schedule"));
  const ScheduleOptions expected;
  EXPECT_EQ(d.kind, expected.kind);
  EXPECT_EQ(d.lr, expected.lr);
  EXPECT_EQ(d.min_lr, expected.min_lr);
  EXPECT_EQ(d.warmup_steps, expected.warmup_steps);
  EXPECT_EQ(d.total_steps, expected.total_steps);
  EXPECT_EQ(d.decay_fraction, expected.decay_fraction);

  const nlohmann::json user = {{"schedule", {{"kind", "wsd"}, {"lr", 0.01}, {"total_steps", 2000}}}};
  const ScheduleOptions o = schedule_options_from_json(
      resolve(schema, user, {"schedule.warmup_steps=50"}).at("schedule"), "schedule");
  EXPECT_EQ(o.kind, ScheduleKind::wsd);
  EXPECT_EQ(o.lr, 0.01);
  EXPECT_EQ(o.total_steps, 2000);
  EXPECT_EQ(o.warmup_steps, 50);

  // The schema catches types and simple ranges; the cross-key rules come from validate.
  EXPECT_NE(error_of([&] { resolve(schema, {{"schedule", {{"kind", "step"}}}}); }).find("schedule.kind"),
            std::string::npos);
  const nlohmann::json bad = {{"schedule", {{"warmup_steps", 5000}}}};
  EXPECT_EQ(error_of([&] { schedule_options_from_json(resolve(schema, bad).at("schedule")); }),
            "schedule.warmup_steps: expected at most total_steps (1000), got 5000");
}

}  // namespace
}  // namespace race::train
