// Small formatting helpers for error messages.
#pragma once

#include <c10/util/ArrayRef.h>

#include <sstream>
#include <string>

namespace th {

// "[2, 3, 64]"
inline std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream o;
  o << "[";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

}  // namespace th
