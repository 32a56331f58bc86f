// Tests of lib/core/config: schema defaults, strict checking with path-naming errors, overrides, JSON file
// loading errors, and the markdown schema table.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/config.h"
#include "core/error.h"

namespace race {
namespace {

using nlohmann::json;

Schema test_schema() {
  return Schema::object(
      "Root.",
      {
          {"name", Schema::string("run", "Run name.")},
          {"model",
           Schema::object(
               "The network.",
               {
                   {"attention",
                    Schema::object(
                        "Attention.",
                        {
                            {"kind", Schema::string("race", "Kernel.").one_of({"race", "softmax"})},
                            {"tables", Schema::integer(32, "Hash tables.").min(1)},
                            {"bins", Schema::integer(8, "Bins.").min(2).max(64)},
                        })},
                   {"dropout", Schema::number(0.0, "Dropout | rate.").min(0).max(1)},
                   {"layers", Schema::array(Schema::string("race", "Layer kind.").one_of({"race", "softmax"}),
                                            {"race", "race"}, "Attention per layer.")},
                   {"tied", Schema::boolean(true, "Tie embeddings.")},
               })},
          {"data",
           Schema::object("Data.",
                          {
                              {"split", Schema::string("bucket", "Split mode.").one_of({"bucket", "ratio"})},
                              {"steps", Schema::integer(1000, "Steps.").min(0)},
                              {"lr", Schema::number(3e-4, "Learning rate.").min(0)},
                          })},
          {"blocks", Schema::array(Schema::object("A block.", {{"width", Schema::integer(4, "Width.").min(1)},
                                                               {"label", Schema::string("b", "Label.")}}),
                                   json::parse(R"([{"width": 2}])"), "Blocks.")},
      });
}

// The message of the race::Error that `body` throws, or a test failure if it throws none.
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

std::string config_error(const json& user) {
  return error_of([&] { resolve(test_schema(), user, {}, "config.json"); });
}

std::string override_error(const std::string& text) {
  const Schema schema = test_schema();
  try {
    resolve(schema, json::object(), {text}, "config.json");
  } catch (const UsageError& e) {
    return e.what();
  } catch (const Error& e) {
    ADD_FAILURE() << "override errors should be UsageError: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a UsageError for " << text;
  return "";
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "race_test_config_XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path write(const std::string& name, const std::string& text) const {
    const auto file = path_ / name;
    std::ofstream(file) << text;
    return file;
  }

 private:
  std::filesystem::path path_;
};

TEST(Config, DefaultsFillAnEmptyConfig) {
  const json config = resolve(test_schema(), json::object());
  EXPECT_EQ(config["name"], "run");
  EXPECT_EQ(config["model"]["attention"]["kind"], "race");
  EXPECT_EQ(config["model"]["attention"]["tables"], 32);
  EXPECT_EQ(config["model"]["layers"], json({"race", "race"}));
  EXPECT_EQ(config["model"]["tied"], true);
  EXPECT_DOUBLE_EQ(config["data"]["lr"].get<double>(), 3e-4);
  // Object elements of an array default get their own defaults filled in.
  EXPECT_EQ(config["blocks"], json::parse(R"([{"width": 2, "label": "b"}])"));
  EXPECT_EQ(config, test_schema().default_value());
}

TEST(Config, UserValuesOverrideDefaultsInNestedObjects) {
  const json user = json::parse(R"({"model": {"attention": {"tables": 4}, "dropout": 0.1},
                                    "blocks": [{"width": 5}, {"label": "x"}]})");
  const json config = resolve(test_schema(), user);
  EXPECT_EQ(config["model"]["attention"]["tables"], 4);
  EXPECT_EQ(config["model"]["attention"]["bins"], 8);
  EXPECT_EQ(config["model"]["attention"]["kind"], "race");
  EXPECT_DOUBLE_EQ(config["model"]["dropout"].get<double>(), 0.1);
  EXPECT_EQ(config["data"]["steps"], 1000);
  EXPECT_EQ(config["blocks"], json::parse(R"([{"width": 5, "label": "b"}, {"width": 4, "label": "x"}])"));
  // Resolving is idempotent, so a resolved config (e.g. from a checkpoint) can be fed back in.
  EXPECT_EQ(resolve(test_schema(), config), config);
}

TEST(Config, IntegerBelowMinimum) {
  EXPECT_EQ(config_error({{"model", {{"attention", {{"tables", 0}}}}}}),
            "config.json: model.attention.tables: expected an integer >= 1, got 0");
}

TEST(Config, IntegerOutsideRange) {
  EXPECT_EQ(config_error({{"model", {{"attention", {{"bins", 100}}}}}}),
            "config.json: model.attention.bins: expected an integer in [2, 64], got 100");
}

TEST(Config, IntegralFloatsAreAcceptedAsIntegers) {
  const json config = resolve(
      test_schema(), json::parse(R"({"data": {"steps": 3.0}, "model": {"attention": {"tables": 1e2}}})"));
  EXPECT_TRUE(config["data"]["steps"].is_number_integer());
  EXPECT_EQ(config["data"]["steps"], 3);
  EXPECT_EQ(config["model"]["attention"]["tables"], 100);
}

TEST(Config, NonIntegralOrNonNumericIntegersAreRejected) {
  EXPECT_EQ(config_error(json::parse(R"({"data": {"steps": 3.5}})")),
            "config.json: data.steps: expected an integer >= 0, got 3.5");
  EXPECT_EQ(config_error(json::parse(R"({"data": {"steps": true}})")),
            "config.json: data.steps: expected an integer >= 0, got true");
  EXPECT_EQ(config_error(json::parse(R"({"data": {"steps": "7"}})")),
            "config.json: data.steps: expected an integer >= 0, got \"7\"");
  EXPECT_EQ(config_error(json::parse(R"({"data": {"steps": 18446744073709551615}})")),
            "config.json: data.steps: expected an integer >= 0, got 18446744073709551615");
  EXPECT_EQ(config_error(json::parse(R"({"data": {"steps": 1e300}})")),
            "config.json: data.steps: expected an integer >= 0, got 1e+300");
}

TEST(Config, NumbersAcceptIntegersAndCheckRange) {
  const json config = resolve(test_schema(), json::parse(R"({"model": {"dropout": 1}})"));
  EXPECT_TRUE(config["model"]["dropout"].is_number_float());
  EXPECT_DOUBLE_EQ(config["model"]["dropout"].get<double>(), 1.0);
  EXPECT_EQ(config_error(json::parse(R"({"model": {"dropout": 1.5}})")),
            "config.json: model.dropout: expected a number in [0.0, 1.0], got 1.5");
  EXPECT_EQ(config_error(json::parse(R"({"data": {"lr": -1}})")),
            "config.json: data.lr: expected a number >= 0.0, got -1");
  EXPECT_EQ(config_error(json::parse(R"({"data": {"lr": null}})")),
            "config.json: data.lr: expected a number >= 0.0, got null");
}

TEST(Config, WrongTypes) {
  EXPECT_EQ(config_error({{"name", 3}}), "config.json: name: expected a string, got 3");
  EXPECT_EQ(config_error({{"model", {{"tied", "yes"}}}}),
            "config.json: model.tied: expected a boolean, got \"yes\"");
  EXPECT_EQ(config_error({{"model", 3}}), "config.json: model: expected an object, got 3");
  EXPECT_EQ(config_error(json::array({1, 2})), "config.json: expected an object, got [1,2]");
  EXPECT_EQ(config_error({{"model", {{"layers", "race"}}}}),
            "config.json: model.layers: expected an array, got \"race\"");
}

TEST(Config, LongValuesAreShortenedInMessages) {
  const std::string message = config_error({{"model", std::string(500, 'x')}});
  EXPECT_LT(message.size(), 120u);
  EXPECT_NE(message.find("..."), std::string::npos);
}

TEST(Config, EnumValues) {
  EXPECT_EQ(config_error({{"data", {{"split", "ratios"}}}}),
            "config.json: data.split: expected one of \"bucket\", \"ratio\", got \"ratios\"");
  EXPECT_EQ(config_error({{"data", {{"split", 1}}}}),
            "config.json: data.split: expected one of \"bucket\", \"ratio\", got 1");
}

TEST(Config, ArrayElementsAreCheckedWithTheirIndex) {
  EXPECT_EQ(config_error({{"model", {{"layers", {"race", "soft"}}}}}),
            "config.json: model.layers[1]: expected one of \"race\", \"softmax\", got \"soft\"");
  EXPECT_EQ(config_error(json::parse(R"({"blocks": [{"width": 1}, {"widht": 3}]})")),
            "config.json: blocks[1].widht: unknown key; did you mean \"width\"?");
}

TEST(Config, UnknownKeySuggestsTheNearestKey) {
  EXPECT_EQ(config_error({{"model", {{"atention", json::object()}}}}),
            "config.json: model.atention: unknown key; did you mean \"attention\"?");
  EXPECT_EQ(config_error({{"model", {{"attetnion", json::object()}}}}),
            "config.json: model.attetnion: unknown key; did you mean \"attention\"?");
  EXPECT_EQ(config_error({{"Model", json::object()}}),
            "config.json: Model: unknown key; did you mean \"model\"?");
}

TEST(Config, UnknownKeyFarFromAnyListsTheValidKeys) {
  EXPECT_EQ(config_error({{"model", {{"zzzzzz", 1}}}}),
            "config.json: model.zzzzzz: unknown key; valid keys are \"attention\", \"dropout\", \"layers\", "
            "\"tied\"");
}

TEST(Config, ConfigErrorsAreNotUsageErrors) {
  EXPECT_THROW(
      {
        try {
          resolve(test_schema(), {{"name", 3}});
        } catch (const UsageError&) {
          FAIL() << "a config error must not be a UsageError";
        }
      },
      Error);
}

TEST(Config, DefaultSourceName) {
  EXPECT_EQ(error_of([] {
              resolve(test_schema(), {{"name", 3}});
            }),
            "config: name: expected a string, got 3");
}

TEST(ConfigOverrides, ValuesAreParsedAsJsonOrTakenAsStrings) {
  const json config =
      resolve(test_schema(), json::object(),
              {"model.attention.tables=64", "model.attention.kind=softmax", "name=\"42\"", "data.lr=1e-3",
               "model.tied=false", R"(model.layers=["softmax"])", "data.steps=2.0"});
  EXPECT_EQ(config["model"]["attention"]["tables"], 64);
  EXPECT_EQ(config["model"]["attention"]["kind"], "softmax");
  EXPECT_EQ(config["name"], "42");
  EXPECT_DOUBLE_EQ(config["data"]["lr"].get<double>(), 1e-3);
  EXPECT_EQ(config["model"]["tied"], false);
  EXPECT_EQ(config["model"]["layers"], json({"softmax"}));
  EXPECT_EQ(config["data"]["steps"], 2);
}

TEST(ConfigOverrides, UnparseableTextAndEmptyValuesAreStrings) {
  const json config =
      resolve(test_schema(), json::object(), {"name=hello world", "model.attention.kind=race"});
  EXPECT_EQ(config["name"], "hello world");
  EXPECT_EQ(resolve(test_schema(), json::object(), {"name="})["name"], "");
  EXPECT_EQ(resolve(test_schema(), json::object(), {"name=a=b"})["name"], "a=b");
}

TEST(ConfigOverrides, ApplyOverTheUserConfigInOrder) {
  const json user = {{"model", {{"attention", {{"tables", 16}}}}}};
  const json config = resolve(test_schema(), user, {"model.attention.tables=2", "model.attention.tables=3"});
  EXPECT_EQ(config["model"]["attention"]["tables"], 3);
  EXPECT_EQ(config["model"]["attention"]["bins"], 8);
}

TEST(ConfigOverrides, AnObjectValueReplacesTheWholeObject) {
  const json user = {{"model", {{"attention", {{"tables", 16}}}}}};
  const json config = resolve(test_schema(), user, {R"(model.attention={"kind": "softmax"})"});
  EXPECT_EQ(config["model"]["attention"]["kind"], "softmax");
  EXPECT_EQ(config["model"]["attention"]["tables"], 32);
}

TEST(ConfigOverrides, MalformedOverrides) {
  EXPECT_EQ(override_error("model.attention.tables"),
            "override \"model.attention.tables\": expected key.path=value (no '=')");
  EXPECT_EQ(override_error("=3"), "override \"=3\": expected key.path=value (empty key)");
  EXPECT_EQ(override_error("model..tables=3"),
            "override \"model..tables=3\": empty key segment in \"model..tables\"");
  EXPECT_EQ(override_error("model.=3"), "override \"model.=3\": empty key segment in \"model.\"");
}

TEST(ConfigOverrides, UnknownPathsSuggestTheNearestKey) {
  EXPECT_EQ(override_error("model.atention.tables=3"),
            "override \"model.atention.tables=3\": model.atention: unknown key; did you mean \"attention\"?");
  EXPECT_EQ(override_error("nmae=x"), "override \"nmae=x\": nmae: unknown key; did you mean \"name\"?");
  EXPECT_EQ(override_error("name.first=x"),
            "override \"name.first=x\": name: not an object, so it has no key \"first\"");
}

TEST(ConfigOverrides, ValuesAreCheckedAgainstTheSchema) {
  EXPECT_EQ(override_error("model.attention.tables=0"),
            "override \"model.attention.tables=0\": model.attention.tables: expected an integer >= 1, got 0");
  EXPECT_EQ(override_error("model.attention.tables=many"),
            "override \"model.attention.tables=many\": model.attention.tables: expected an integer >= 1, got "
            "\"many\"");
  EXPECT_EQ(
      override_error("data.split=ratios"),
      "override \"data.split=ratios\": data.split: expected one of \"bucket\", \"ratio\", got \"ratios\"");
  EXPECT_EQ(override_error(R"(model.attention={"tabels": 2})"),
            "override \"model.attention={\"tabels\": 2}\": model.attention.tabels: unknown key; did you mean "
            "\"tables\"?");
}

TEST(ConfigFiles, LoadsValidJson) {
  const TempDir dir;
  const auto file = dir.write("ok.json", R"({"model": {"attention": {"tables": 7}}})");
  EXPECT_EQ(load_json_file(file)["model"]["attention"]["tables"], 7);
  const json config = load_config(test_schema(), file, {"name=x"});
  EXPECT_EQ(config["model"]["attention"]["tables"], 7);
  EXPECT_EQ(config["name"], "x");
}

TEST(ConfigFiles, MissingFileOrDirectory) {
  const TempDir dir;
  const std::string missing = (dir.path() / "missing.json").string();
  EXPECT_EQ(error_of([&] { load_json_file(missing); }), missing + ": no such file");
  EXPECT_EQ(error_of([&] { load_json_file(dir.path()); }),
            dir.path().string() + ": is a directory, not a JSON file");
}

TEST(ConfigFiles, UnreadableFile) {
  if (geteuid() == 0) GTEST_SKIP() << "root can read any file";
  const TempDir dir;
  const auto file = dir.write("secret.json", "{}");
  std::filesystem::permissions(file, std::filesystem::perms::none);
  EXPECT_EQ(error_of([&] { load_json_file(file); }), file.string() + ": cannot open: Permission denied");
}

TEST(ConfigFiles, SyntaxErrorsNameLineAndColumn) {
  const TempDir dir;
  const auto file = dir.write("bad.json", "{\n  \"a\": 1,\n  \"b\": tru\n}\n");
  const std::string message = error_of([&] { load_json_file(file); });
  EXPECT_EQ(message.rfind(
                file.string() + ":3:11: invalid JSON: syntax error while parsing value - invalid literal", 0),
            0u)
      << message;

  const auto trailing = dir.write("trailing.json", "{\"a\": 1,}");
  EXPECT_EQ(error_of([&] { load_json_file(trailing); }).rfind(trailing.string() + ":1:9: invalid JSON: ", 0),
            0u);

  const auto empty = dir.write("empty.json", "");
  EXPECT_EQ(error_of([&] { load_json_file(empty); }).rfind(empty.string() + ":1:1: invalid JSON: ", 0), 0u);
}

TEST(ConfigFiles, LoadConfigNamesTheFileInSchemaErrors) {
  const TempDir dir;
  const auto file = dir.write("config.json", R"({"model": {"attention": {"tables": 0}}})");
  EXPECT_EQ(error_of([&] { load_config(test_schema(), file); }),
            file.string() + ": model.attention.tables: expected an integer >= 1, got 0");
}

TEST(ConfigSchema, MistakesInTheSchemaFailWhenBuilt) {
  EXPECT_THROW(Schema::integer(0, "x").min(1), Error);
  EXPECT_THROW(Schema::integer(5, "x").max(4), Error);
  EXPECT_THROW(Schema::integer(5, "x").min(1.5), Error);
  EXPECT_THROW(Schema::integer(5, "x").min(6).max(2), Error);
  EXPECT_THROW(Schema::string("a", "x").min(1), Error);
  EXPECT_THROW(Schema::string("c", "x").one_of({"a", "b"}), Error);
  EXPECT_THROW(Schema::integer(1, "x").one_of({"a"}), Error);
  EXPECT_THROW(Schema::object("x", {{"a", Schema::boolean(true, "")}, {"a", Schema::boolean(true, "")}}),
               Error);
  EXPECT_THROW(Schema::object("x", {{"a.b", Schema::boolean(true, "")}}), Error);
  EXPECT_THROW(Schema::array(Schema::integer(1, "x").min(0), {1, -1}, "x"), Error);
  EXPECT_THROW(Schema::array(Schema::integer(1, "x"), 3, "x"), Error);
  EXPECT_THROW(Schema::integer(1, "x").element(), Error);
  EXPECT_THROW(resolve(Schema::integer(1, "x"), json::object()), Error);
}

TEST(ConfigSchema, Introspection) {
  const Schema tables = Schema::integer(32, "Hash tables.").min(1);
  EXPECT_EQ(tables.type(), Schema::Type::integer);
  EXPECT_EQ(tables.description(), "Hash tables.");
  EXPECT_EQ(tables.default_value(), 32);
  ASSERT_TRUE(tables.lower_bound().has_value());
  EXPECT_EQ(*tables.lower_bound(), 1);
  EXPECT_FALSE(tables.upper_bound().has_value());
  const Schema schema = test_schema();
  ASSERT_EQ(schema.fields().size(), 4u);
  EXPECT_EQ(schema.fields()[1].first, "model");
  EXPECT_EQ(schema.fields()[3].second.element().type(), Schema::Type::object);
}

TEST(ConfigSchema, MarkdownTable) {
  const std::string table = schema_markdown(test_schema());
  EXPECT_EQ(table.rfind("| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n", 0), 0u);
  EXPECT_NE(table.find("| `model` | object |  |  | The network. |\n"), std::string::npos) << table;
  EXPECT_NE(table.find("| `model.attention.tables` | integer | `32` | >= 1 | Hash tables. |\n"),
            std::string::npos);
  EXPECT_NE(table.find("| `model.attention.bins` | integer | `8` | in [2, 64] | Bins. |\n"),
            std::string::npos);
  EXPECT_NE(
      table.find("| `model.attention.kind` | string | `\"race\"` | `\"race\"`, `\"softmax\"` | Kernel. |\n"),
      std::string::npos);
  EXPECT_NE(table.find("| `model.dropout` | number | `0.0` | in [0.0, 1.0] | Dropout \\| rate. |\n"),
            std::string::npos);
  EXPECT_NE(
      table.find("| `model.layers` | array of string | `[\"race\",\"race\"]` | `\"race\"`, `\"softmax\"` |"),
      std::string::npos);
  EXPECT_NE(table.find("| `blocks[].width` | integer | `4` | >= 1 | Width. |\n"), std::string::npos);
  // Declaration order, not alphabetical: "name" was declared before "model".
  EXPECT_LT(table.find("`name`"), table.find("`model`"));
}

}  // namespace
}  // namespace race
