// The one way the core parses JSON from files (config.json, safetensors headers, shard indexes, head configs), and
// the one way it quotes a value from such a file in an error message.
//
// nlohmann's parser keeps its own stack, but much of the rest of the library recurses once per nesting level:
// dump(), copies, comparisons, get<>() of containers. A value nested 100k levels deep (a few hundred KB of '[')
// then exhausts the thread's stack, and Node worker threads have far less of it than a main thread. So nesting is
// bounded while parsing, before a deep value exists, and messages describe values instead of serializing them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace th {

// The deepest nesting of arrays and objects accepted. The files we read nest at most 4 levels (config.json:
// {"rope_scaling": {...}}, or a sub-config holding a list; a safetensors header: {"name": {"shape": [...]}}), so 64
// leaves ample room for files we do not know yet while keeping every recursive nlohmann call a few KB of stack.
constexpr int kJsonMaxDepth = 64;

struct JsonOptions {
  // nlohmann keeps the last of two equal keys silently; for a safetensors header or a shard index that would hide
  // a second definition of a tensor, which the reference implementation rejects. config.json keeps Python's
  // json.load behaviour (the last one wins), as transformers reads it that way.
  bool reject_duplicate_keys = true;
  int max_depth = kJsonMaxDepth;
};

// Parses `text`; on a syntax error, a repeated key (when refused) or nesting deeper than the limit returns false and
// sets `error` to a message of bounded length. Never builds a value deeper than the limit.
bool parse_json(const std::string& text, nlohmann::json& out, std::string& error, const JsonOptions& options = {});

// parse_json with the defaults (duplicate keys refused).
inline bool parse_json_strict(const std::string& text, nlohmann::json& out, std::string& error) {
  return parse_json(text, out, error, JsonOptions{});
}

// A short, bounded description of an untrusted value for an error message: scalars as JSON (strings cut after
// `max_chars` characters), arrays and objects by their first elements and their size, e.g. `[1, 2, 3, ...] (an
// array of 100000)`. Its length and the recursion depth do not depend on the value.
std::string describe_json(const nlohmann::json& v, size_t max_chars = 48);

// A name taken from a file (a tensor name, a key, a file name) for an error message: at most `max_chars` characters,
// with the length given when cut.
std::string bounded_name(const std::string& s, size_t max_chars = 160);

}  // namespace th
