// JSON parsing that refuses duplicate object keys. nlohmann keeps the last of two equal keys silently; for a
// safetensors header or a shard index that would hide a second definition of a tensor, which the reference
// implementation rejects.
#pragma once

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

namespace th {

// Parses `text`; on a syntax error or a repeated key returns false and sets `error` (the duplicated key is named).
inline bool parse_json_strict(const std::string& text, nlohmann::json& out, std::string& error) {
  using json = nlohmann::json;
  std::vector<std::set<std::string>> keys;  // one set per object being parsed
  std::string duplicate;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
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
  } catch (const json::exception& e) {
    error = e.what();
    return false;
  }
  if (!duplicate.empty()) {
    error = "duplicate key '" + duplicate + "'";
    return false;
  }
  return true;
}

}  // namespace th
