// Checks of a TorchScript archive made before torch::jit::load sees it. The loader builds each tensor storage with
// the byte count its pickle claims (numel * element size) over a buffer as long as the zip record really is: a record
// cut short loads without complaint and the tensor then reads past its buffer (NaN hidden states, or worse). So the
// archive's zip directory is read here, and every storage the pickles name is checked against its record's size.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace th {

struct ZipEntry {
  std::string name;
  uint64_t size = 0;             // uncompressed
  uint64_t compressed_size = 0;
  uint16_t method = 0;           // 0 stored, 8 deflate
};

// The central directory of a zip file (ZIP64 included), every field bounds-checked against the file. Throws
// FileError naming the file on anything malformed or on a name that appears twice.
std::vector<ZipEntry> read_zip_directory(const std::string& path);

// Throws FileError naming the file and the record when a tensor storage of data.pkl or constants.pkl has no record
// or a record whose size differs from the storage's byte count, or when the pickles cannot be read.
void check_torchscript_records(const std::string& path);

}  // namespace th
