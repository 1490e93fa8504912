#include "json_strict.h"

#include <cmath>
#include <set>
#include <vector>

namespace th {
namespace {

using json = nlohmann::json;

struct TooDeep {};

// Cuts `s` to at most `n` bytes without splitting a UTF-8 sequence.
size_t utf8_cut(const std::string& s, size_t n) {
  if (s.size() <= n) return s.size();
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

std::string dump_string(const std::string& s) {
  // replace: a cut string, or one from a file that did not go through the parser, may hold invalid UTF-8.
  return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Depth is bounded by the constant below, not by the value: at most 3 levels of recursion.
void render(const json& v, int level, size_t max_chars, std::string& out) {
  constexpr int kLevels = 2;
  constexpr size_t kItems = 3;
  switch (v.type()) {
    case json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      const size_t cut = utf8_cut(s, max_chars);
      out += dump_string(s.substr(0, cut));
      if (cut < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
      break;
    }
    case json::value_t::array: {
      if (v.empty()) {
        out += "[]";
        break;
      }
      if (level >= kLevels) {
        out += "[...]";
        break;
      }
      out += "[";
      size_t i = 0;
      for (const json& e : v) {
        if (i == kItems) {
          out += ", ...";
          break;
        }
        if (i++) out += ", ";
        render(e, level + 1, max_chars / 2, out);
      }
      out += "]";
      break;
    }
    case json::value_t::object: {
      if (v.empty()) {
        out += "{}";
        break;
      }
      if (level >= kLevels) {
        out += "{...}";
        break;
      }
      out += "{";
      size_t i = 0;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (i == kItems) {
          out += ", ...";
          break;
        }
        if (i++) out += ", ";
        const size_t cut = utf8_cut(it.key(), max_chars / 2);
        out += dump_string(it.key().substr(0, cut)) + (cut < it.key().size() ? "...: " : ": ");
        render(it.value(), level + 1, max_chars / 2, out);
      }
      out += "}";
      break;
    }
    case json::value_t::discarded:
      out += "<discarded>";
      break;
    case json::value_t::number_float:
      // 1e999 parses to infinity, which dump() would write as null.
      if (!std::isfinite(v.get<double>())) {
        out += v.get<double>() > 0 ? "a number beyond the double range" : "a negative number beyond the double range";
        break;
      }
      out += v.dump();
      break;
    default:  // null, boolean, integers: short by nature
      out += v.dump();
  }
}

}  // namespace

bool parse_json(const std::string& text, json& out, std::string& error, const JsonOptions& options) {
  std::vector<std::set<std::string>> keys;  // one set per object being parsed
  std::string duplicate;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        // `depth` counts the containers around this one; the callback runs before the new one is built.
        if (depth >= options.max_depth) throw TooDeep{};
        if (ev == json::parse_event_t::object_start && options.reject_duplicate_keys) keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (options.reject_duplicate_keys && !keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (options.reject_duplicate_keys && !keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    out = json::parse(text, cb);
  } catch (const TooDeep&) {
    error = "arrays and objects are nested more than " + std::to_string(options.max_depth) + " levels deep";
    return false;
  } catch (const json::exception& e) {
    // The parser quotes the last token it read, which can be a whole (long) string.
    error = bounded_name(e.what(), 240);
    return false;
  }
  if (!duplicate.empty()) {
    error = "duplicate key '" + bounded_name(duplicate) + "'";
    return false;
  }
  return true;
}

std::string describe_json(const json& v, size_t max_chars) {
  std::string out;
  render(v, 0, max_chars, out);
  if (v.is_array() && v.size() > 3) out += " (an array of " + std::to_string(v.size()) + ")";
  if (v.is_object() && v.size() > 3) out += " (an object of " + std::to_string(v.size()) + " keys)";
  return out;
}

std::string bounded_name(const std::string& s, size_t max_chars) {
  const size_t cut = utf8_cut(s, max_chars);
  if (cut == s.size()) return s;
  return s.substr(0, cut) + "... (" + std::to_string(s.size()) + " bytes)";
}

}  // namespace th
