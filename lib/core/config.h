// Strict JSON configuration: a schema declared in C++ (types, ranges, allowed values, defaults and a line of
// documentation per key), resolution of a user's JSON plus `key.path=value` overrides against it, JSON file
// loading with line/column errors, and a markdown rendering of the schema for the docs.
//
// Strictness is the point: a typo in a key of a long training run must stop it before the first step, not
// silently fall back to a default. Every error names the source, the JSON path and what was expected.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace race {

// One node of a schema: a typed value with a default and a description, or an object of named fields.
// Built with the static factories and refined with the chainable qualifiers, e.g.
//   Schema::object("Attention.", {
//       {"kind", Schema::string("race", "Attention kernel.").one_of({"race", "softmax"})},
//       {"tables", Schema::integer(32, "Hash tables per head.").min(1)},
//   })
// Schema mistakes (a default outside its own range, a bound on a string, a duplicate field) are programming
// errors and throw race::Error when the schema is built, so they surface in the first test that builds it.
class Schema {
 public:
  enum class Type { boolean, integer, number, string, object, array };
  using Field = std::pair<std::string, Schema>;

  static Schema boolean(bool default_value, std::string description);
  static Schema integer(std::int64_t default_value, std::string description);
  static Schema number(double default_value, std::string description);
  static Schema string(std::string default_value, std::string description);
  // An object's default is its fields' defaults; fields keep their declared order in the docs.
  static Schema object(std::string description, std::vector<Field> fields);
  // default_value must be a JSON array whose elements satisfy `element`.
  static Schema array(Schema element, nlohmann::json default_value, std::string description);

  // Inclusive bounds for integer and number schemas (integer bounds must be integral).
  [[nodiscard]] Schema min(double bound) const;
  [[nodiscard]] Schema max(double bound) const;
  // Allowed values of a string schema.
  [[nodiscard]] Schema one_of(std::vector<std::string> choices) const;

  Type type() const { return type_; }
  const std::string& description() const { return description_; }
  // The resolved default: for an object, the object of its fields' defaults.
  nlohmann::json default_value() const;
  const std::vector<Field>& fields() const { return fields_; }
  // The element schema of an array (RACE_CHECK otherwise).
  const Schema& element() const;
  const std::vector<std::string>& choices() const { return choices_; }
  // Bounds as JSON numbers: integers for integer schemas, floats for number schemas.
  const std::optional<nlohmann::json>& lower_bound() const { return lower_; }
  const std::optional<nlohmann::json>& upper_bound() const { return upper_; }

 private:
  Schema(Type type, nlohmann::json default_value, std::string description);
  [[nodiscard]] Schema bounded(double bound, bool lower) const;

  Type type_;
  nlohmann::json default_;
  std::string description_;
  std::vector<Field> fields_;
  std::shared_ptr<const Schema> element_;
  std::vector<std::string> choices_;
  std::optional<nlohmann::json> lower_;
  std::optional<nlohmann::json> upper_;
};

// Returns the full config: `user_config` checked against `schema` (an object schema), missing keys filled
// with defaults, then each override "a.b.c=value" applied in order (later ones win). An override value is
// parsed as JSON when it parses (numbers, true/false, "quoted strings", arrays, objects) and is otherwise
// taken as a plain string; an object value replaces the whole object (its missing keys take defaults).
// Overrides address object keys only; to change an array, set the whole array.
//
// Integers: a JSON number with no fractional part (3.0, 1e6) is accepted for an integer key and stored as
// an integer, so large counts can be written in exponent form; 3.5 is rejected. Number keys given an
// integer store it as a float.
//
// Errors: race::Error for the config, prefixed with `source` (e.g. the file name), and race::UsageError for
// an override, prefixed with `override "a.b=v"`; both name the JSON path, e.g.
//   config.json: model.attention.tables: expected an integer >= 1, got 0
//   override "model.atention.tables=3": model.atention: unknown key; did you mean "attention"?
nlohmann::json resolve(const Schema& schema, const nlohmann::json& user_config,
                       const std::vector<std::string>& overrides = {}, std::string_view source = "config");

// Parses a JSON file. Errors name the file, and for a syntax error the line and column:
//   run.json:3:14: invalid JSON: syntax error while parsing object - unexpected '}'; expected string literal
nlohmann::json load_json_file(const std::filesystem::path& path);

// load_json_file then resolve, with the file name as the source of errors.
nlohmann::json load_config(const Schema& schema, const std::filesystem::path& path,
                           const std::vector<std::string>& overrides = {});

// The schema as a markdown table (key path, type, default, allowed values, description), one row per key in
// declaration order; fields of array elements that are objects appear as `path[].field`.
std::string schema_markdown(const Schema& schema);

}  // namespace race
