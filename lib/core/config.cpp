// Schema construction, config resolution and overrides, JSON file loading, and the markdown schema table.
#include "core/config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <system_error>

#include "core/error.h"

namespace race {

using nlohmann::json;

namespace {

// Where a value came from, so that errors can say "config.json: ..." or "override "a=b": ...", and whether
// a mistake there is a usage error (the command line) or a config error.
struct Origin {
  std::string label;
  bool usage = false;

  [[noreturn]] void fail(const std::string& path, const std::string& message) const {
    const std::string text = path.empty() ? fmt::format("{}: {}", label, message)
                                          : fmt::format("{}: {}: {}", label, path, message);
    if (usage) throw UsageError(text);
    throw Error(text);
  }
};

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

// A value as it would appear in JSON, shortened so a large object in the wrong place does not flood the
// terminal; invalid UTF-8 is replaced rather than turned into a second error.
std::string show(const json& value) {
  constexpr std::size_t kMaxChars = 60;
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars - 3) + "...";
  return text;
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "\"" : ", \"") + name + "\"";
  return out;
}

const char* type_name(Schema::Type type) {
  switch (type) {
    case Schema::Type::boolean:
      return "boolean";
    case Schema::Type::integer:
      return "integer";
    case Schema::Type::number:
      return "number";
    case Schema::Type::string:
      return "string";
    case Schema::Type::object:
      return "object";
    case Schema::Type::array:
      return "array";
  }
  return "?";
}

std::string range_text(const Schema& schema) {
  const auto& lo = schema.lower_bound();
  const auto& hi = schema.upper_bound();
  if (lo && hi) return fmt::format("in [{}, {}]", lo->dump(), hi->dump());
  if (lo) return ">= " + lo->dump();
  if (hi) return "<= " + hi->dump();
  return "";
}

// The "expected ..." half of a type error.
std::string expected_text(const Schema& schema) {
  if (!schema.choices().empty()) return "one of " + quoted_list(schema.choices());
  const Schema::Type type = schema.type();
  const bool vowel =
      type == Schema::Type::integer || type == Schema::Type::object || type == Schema::Type::array;
  std::string text = fmt::format("{} {}", vowel ? "an" : "a", type_name(type));
  if (const std::string range = range_text(schema); !range.empty()) text += " " + range;
  return text;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions), case-insensitive: the
// typos people make in keys are dropped, doubled, swapped or miscased letters.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string unknown_key_message(const Schema& object, const std::string& key) {
  // A suggestion is offered only when it is plausibly the same word: one edit per three letters.
  const std::size_t threshold = std::max<std::size_t>(1, key.size() / 3);
  const std::string* best = nullptr;
  std::size_t best_distance = threshold + 1;
  std::vector<std::string> names;
  for (const auto& [name, field] : object.fields()) {
    names.push_back(name);
    if (const std::size_t distance = edit_distance(key, name); distance < best_distance) {
      best_distance = distance;
      best = &name;
    }
  }
  if (best) return fmt::format("unknown key; did you mean \"{}\"?", *best);
  if (names.empty()) return "unknown key; this object takes no keys";
  return "unknown key; valid keys are " + quoted_list(names);
}

const Schema* find_field(const Schema& object, const std::string& key) {
  for (const auto& [name, field] : object.fields()) {
    if (name == key) return &field;
  }
  return nullptr;
}

// A JSON number as int64 when it is one exactly (see resolve() for why 3.0 counts).
std::optional<std::int64_t> exact_integer(const json& value) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<std::int64_t>();
  if (value.is_number_float()) {
    const double d = value.get<double>();
    // 2^63 is exactly representable; every double below it in magnitude converts without overflow.
    constexpr double kLimit = 9223372036854775808.0;
    if (std::isfinite(d) && d == std::trunc(d) && d >= -kLimit && d < kLimit)
      return static_cast<std::int64_t>(d);
  }
  return std::nullopt;
}

[[noreturn]] void mismatch_error(const Schema& schema, const json& value, const std::string& path,
                                 const Origin& origin) {
  origin.fail(path, fmt::format("expected {}, got {}", expected_text(schema), show(value)));
}

json resolve_value(const Schema& schema, const json& value, const std::string& path, const Origin& origin) {
  const auto mismatch = [&] { mismatch_error(schema, value, path, origin); };
  switch (schema.type()) {
    case Schema::Type::boolean:
      if (!value.is_boolean()) mismatch();
      return value;
    case Schema::Type::integer: {
      const auto v = exact_integer(value);
      if (!v) mismatch();
      const auto& lo = schema.lower_bound();
      const auto& hi = schema.upper_bound();
      if ((lo && *v < lo->get<std::int64_t>()) || (hi && *v > hi->get<std::int64_t>())) mismatch();
      return *v;
    }
    case Schema::Type::number: {
      if (!value.is_number()) mismatch();
      const double v = value.get<double>();
      const auto& lo = schema.lower_bound();
      const auto& hi = schema.upper_bound();
      if (std::isnan(v) || (lo && v < lo->get<double>()) || (hi && v > hi->get<double>())) mismatch();
      return v;
    }
    case Schema::Type::string: {
      if (!value.is_string()) mismatch();
      const auto& choices = schema.choices();
      if (!choices.empty() &&
          std::find(choices.begin(), choices.end(), value.get<std::string>()) == choices.end()) {
        mismatch();
      }
      return value;
    }
    case Schema::Type::object: {
      if (!value.is_object()) mismatch();
      for (const auto& [key, unused] : value.items()) {
        if (!find_field(schema, key)) origin.fail(join(path, key), unknown_key_message(schema, key));
      }
      json out = json::object();
      for (const auto& [name, field] : schema.fields()) {
        const auto it = value.find(name);
        out[name] =
            it == value.end() ? field.default_value() : resolve_value(field, *it, join(path, name), origin);
      }
      return out;
    }
    case Schema::Type::array: {
      if (!value.is_array()) mismatch();
      json out = json::array();
      for (std::size_t i = 0; i < value.size(); ++i) {
        out.push_back(resolve_value(schema.element(), value[i], fmt::format("{}[{}]", path, i), origin));
      }
      return out;
    }
  }
  throw Error(fmt::format("unhandled schema type {}", static_cast<int>(schema.type())));
}

void apply_override(const Schema& schema, json& config, const std::string& text) {
  const Origin origin{fmt::format("override \"{}\"", text), true};
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos) origin.fail("", "expected key.path=value (no '=')");
  const std::string key = text.substr(0, eq);
  if (key.empty()) origin.fail("", "expected key.path=value (empty key)");

  const Schema* node = &schema;
  json* target = &config;
  std::string path;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = key.find('.', start);
    const std::string segment = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (segment.empty()) origin.fail("", fmt::format("empty key segment in \"{}\"", key));
    if (node->type() != Schema::Type::object) {
      origin.fail(path, fmt::format("not an object, so it has no key \"{}\"", segment));
    }
    const Schema* field = find_field(*node, segment);
    if (!field) origin.fail(join(path, segment), unknown_key_message(*node, segment));
    path = join(path, segment);
    node = field;
    target = &(*target)[segment];
    if (dot == std::string::npos) break;
    start = dot + 1;
  }

  json value = json::parse(text.substr(eq + 1), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text.substr(eq + 1);
  *target = resolve_value(*node, value, path, origin);
}

std::string markdown_cell(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

void markdown_rows(const Schema& object, const std::string& prefix, std::string& out) {
  for (const auto& [name, field] : object.fields()) {
    const std::string path = join(prefix, name);
    std::string type = type_name(field.type());
    std::string default_text;
    std::string allowed;
    const Schema* described = &field;
    if (field.type() == Schema::Type::array) {
      described = &field.element();
      type += std::string(" of ") + type_name(described->type());
    }
    if (field.type() != Schema::Type::object)
      default_text = fmt::format("`{}`", field.default_value().dump());
    if (!described->choices().empty()) {
      for (const auto& choice : described->choices())
        allowed += (allowed.empty() ? "`\"" : ", `\"") + choice + "\"`";
    } else {
      allowed = range_text(*described);
    }
    out +=
        fmt::format("| `{}` | {} | {} | {} | {} |\n", markdown_cell(path), type, markdown_cell(default_text),
                    markdown_cell(allowed), markdown_cell(field.description()));
    if (field.type() == Schema::Type::object) markdown_rows(field, path, out);
    if (described != &field && described->type() == Schema::Type::object)
      markdown_rows(*described, path + "[]", out);
  }
}

}  // namespace

Schema::Schema(Type type, json default_value, std::string description)
    : type_(type), default_(std::move(default_value)), description_(std::move(description)) {}

Schema Schema::boolean(bool default_value, std::string description) {
  return Schema(Type::boolean, default_value, std::move(description));
}

Schema Schema::integer(std::int64_t default_value, std::string description) {
  return Schema(Type::integer, default_value, std::move(description));
}

Schema Schema::number(double default_value, std::string description) {
  RACE_CHECK(!std::isnan(default_value), "a number default cannot be NaN");
  return Schema(Type::number, default_value, std::move(description));
}

Schema Schema::string(std::string default_value, std::string description) {
  return Schema(Type::string, std::move(default_value), std::move(description));
}

Schema Schema::object(std::string description, std::vector<Field> fields) {
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::string& name = fields[i].first;
    // Overrides address keys as dot-separated paths, so a key cannot contain a dot.
    RACE_CHECK(!name.empty() && name.find_first_of(".=") == std::string::npos, "invalid schema key \"{}\"",
               name);
    for (std::size_t j = 0; j < i; ++j)
      RACE_CHECK(fields[j].first != name, "duplicate schema key \"{}\"", name);
  }
  Schema schema(Type::object, nullptr, std::move(description));
  schema.fields_ = std::move(fields);
  return schema;
}

Schema Schema::array(Schema element, json default_value, std::string description) {
  Schema schema(Type::array, nullptr, std::move(description));
  schema.element_ = std::make_shared<const Schema>(std::move(element));
  // Resolving the default through the schema both checks it and fills in defaults of object elements.
  schema.default_ = resolve_value(schema, default_value, "", Origin{"schema default", false});
  return schema;
}

Schema Schema::bounded(double bound, bool lower) const {
  RACE_CHECK(type_ == Type::integer || type_ == Type::number,
             "bounds apply to integer and number schemas, not {}", type_name(type_));
  Schema out = *this;
  json value;
  if (type_ == Type::integer) {
    const auto exact = exact_integer(bound);
    RACE_CHECK(exact.has_value(), "integer schema bound {} is not an integer", bound);
    value = *exact;
  } else {
    RACE_CHECK(!std::isnan(bound), "a number schema bound cannot be NaN");
    value = bound;
  }
  (lower ? out.lower_ : out.upper_) = value;
  if (out.lower_ && out.upper_) RACE_CHECK(*out.lower_ <= *out.upper_, "empty range {}", range_text(out));
  RACE_CHECK(lower ? default_ >= value : default_ <= value, "default {} is outside the schema range {}",
             default_.dump(), range_text(out));
  return out;
}

Schema Schema::min(double bound) const { return bounded(bound, true); }

Schema Schema::max(double bound) const { return bounded(bound, false); }

Schema Schema::one_of(std::vector<std::string> choices) const {
  RACE_CHECK(type_ == Type::string, "one_of applies to string schemas, not {}", type_name(type_));
  RACE_CHECK(!choices.empty(), "one_of needs at least one choice");
  RACE_CHECK(std::find(choices.begin(), choices.end(), default_.get<std::string>()) != choices.end(),
             "default {} is not one of {}", default_.dump(), quoted_list(choices));
  Schema out = *this;
  out.choices_ = std::move(choices);
  return out;
}

json Schema::default_value() const {
  if (type_ != Type::object) return default_;
  json out = json::object();
  for (const auto& [name, field] : fields_) out[name] = field.default_value();
  return out;
}

const Schema& Schema::element() const {
  RACE_CHECK(type_ == Type::array && element_, "element() of a {} schema", type_name(type_));
  return *element_;
}

json resolve(const Schema& schema, const json& user_config, const std::vector<std::string>& overrides,
             std::string_view source) {
  RACE_CHECK(schema.type() == Schema::Type::object, "the root of a config schema must be an object");
  json config = resolve_value(schema, user_config, "", Origin{std::string(source), false});
  for (const auto& text : overrides) apply_override(schema, config, text);
  return config;
}

json load_json_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) fail("{}: no such file", name);
  if (std::filesystem::is_directory(status)) fail("{}: is a directory, not a JSON file", name);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", name, std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error: {}", name, std::strerror(errno));
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // e.byte counts the characters read up to and including the offending one (1-based).
    const std::size_t offset = std::min(e.byte == 0 ? 0 : e.byte - 1, text.size());
    const std::size_t line =
        1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
    const std::size_t newline = offset == 0 ? std::string::npos : text.rfind('\n', offset - 1);
    const std::size_t column = offset - (newline == std::string::npos ? 0 : newline + 1) + 1;
    // nlohmann's message repeats a prefix and position we already give; keep the part after "column N: ".
    std::string detail = e.what();
    if (const std::size_t at = detail.find("column "); at != std::string::npos) {
      if (const std::size_t colon = detail.find(": ", at); colon != std::string::npos)
        detail = detail.substr(colon + 2);
    }
    fail("{}:{}:{}: invalid JSON: {}", name, line, column, detail);
  }
}

json load_config(const Schema& schema, const std::filesystem::path& path,
                 const std::vector<std::string>& overrides) {
  return resolve(schema, load_json_file(path), overrides, path.string());
}

std::string schema_markdown(const Schema& schema) {
  RACE_CHECK(schema.type() == Schema::Type::object, "the root of a config schema must be an object");
  std::string out = "| Key | Type | Default | Allowed | Description |\n|---|---|---|---|---|\n";
  markdown_rows(schema, "", out);
  return out;
}

}  // namespace race
