// Errors the core throws. Each carries a stable code that the binding copies onto the JS Error, so callers can
// branch on `err.code` instead of parsing messages. Messages say what was wrong and what to do about it.
#pragma once

#include <stdexcept>
#include <string>

namespace th {

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message) : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const noexcept { return code_; }

 private:
  std::string code_;
};

// A model file or its config is not something we can use.
struct ConfigError : Error {
  explicit ConfigError(const std::string& m) : Error("ERR_TH_CONFIG", m) {}
};
// Tensor shapes or values given by the caller do not fit the model.
struct ShapeError : Error {
  explicit ShapeError(const std::string& m) : Error("ERR_TH_SHAPE", m) {}
};
// A file is missing, unreadable or not in the expected format.
struct FileError : Error {
  explicit FileError(const std::string& m) : Error("ERR_TH_FILE", m) {}
};
// A device or dtype that does not exist or is not available in this libtorch build.
struct DeviceError : Error {
  explicit DeviceError(const std::string& m) : Error("ERR_TH_DEVICE", m) {}
};
// An argument outside its allowed range (layer index, thread count, ...).
struct ValueError : Error {
  explicit ValueError(const std::string& m) : Error("ERR_TH_VALUE", m) {}
};

}  // namespace th
