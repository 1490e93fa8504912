// A reader for safetensors files (reference/formats.md 4.3): memory-mapped read-only, every header field checked
// when the file is opened, tensors copied out of the mapping on request.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace th {

// Header length limit of the reference implementation (safetensors' MAX_HEADER_SIZE).
constexpr uint64_t kSafetensorsMaxHeader = 100000000;
// Most dimensions a tensor may have. The format sets no limit, but no model weight has more than 5, and torch's
// element-wise kernels refuse tensors of more than 25 (a file could otherwise list a million dimensions of 1).
constexpr size_t kSafetensorsMaxRank = 16;

class SafetensorsFile {
 public:
  struct Entry {
    std::string dtype;  // as written: "F32", "BF16", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte range in the data buffer (which starts after the header)
  };

  // Maps and validates the whole header; throws FileError naming the file and the problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names in data-offset order.
  const std::vector<std::string>& names() const { return order_; }
  bool contains(const std::string& name) const { return entries_.count(name) > 0; }
  const Entry& entry(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // A copy of the tensor that owns its memory (it outlives this object). Floating-point tensors are converted to
  // `float_dtype` when given; integer and bool tensors keep their type. Throws FileError for dtypes libtorch has
  // no type for here (unsigned above 8 bits, float8, sub-byte floats, complex).
  torch::Tensor load(const std::string& name, std::optional<torch::ScalarType> float_dtype = std::nullopt) const;

 private:
  [[noreturn]] void fail(const std::string& problem) const;
  void parse();

  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  const uint8_t* data_ = nullptr;  // the byte buffer
  uint64_t data_size_ = 0;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> order_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a file, copied (see SafetensorsFile::load).
std::map<std::string, torch::Tensor> read_safetensors(const std::string& path,
                                                      std::optional<torch::ScalarType> float_dtype = std::nullopt);

}  // namespace th
