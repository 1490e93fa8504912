#include "safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.h"
#include "format.h"
#include "json_strict.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader copies bytes as they are and needs a little-endian host"
#endif

namespace th {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  const char* name;
  int bits;
  std::optional<torch::ScalarType> torch_type;  // none: known to the format, not loadable here
};

// Every dtype string of the format (safetensors/src/tensor.rs), with its width.
const DtypeInfo kDtypes[] = {
    {"BOOL", 8, torch::kBool},      {"U8", 8, torch::kByte},        {"I8", 8, torch::kChar},
    {"I16", 16, torch::kShort},     {"U16", 16, std::nullopt},      {"F16", 16, torch::kHalf},
    {"BF16", 16, torch::kBFloat16}, {"I32", 32, torch::kInt},       {"U32", 32, std::nullopt},
    {"F32", 32, torch::kFloat},     {"F64", 64, torch::kDouble},    {"I64", 64, torch::kLong},
    {"U64", 64, std::nullopt},      {"F8_E5M2", 8, std::nullopt},   {"F8_E4M3", 8, std::nullopt},
    {"F8_E4M3FNUZ", 8, std::nullopt}, {"F8_E5M2FNUZ", 8, std::nullopt}, {"F8_E8M0", 8, std::nullopt},
    {"F4", 4, std::nullopt},        {"F6_E2M3", 6, std::nullopt},   {"F6_E3M2", 6, std::nullopt},
    {"C64", 64, std::nullopt},
};

const DtypeInfo* find_dtype(const std::string& s) {
  for (const auto& d : kDtypes) {
    if (s == d.name) return &d;
  }
  return nullptr;
}

// A non-negative integer that fits in uint64 (nlohmann parses larger ones as floats, and negatives as signed).
bool as_u64(const json& v, uint64_t& out) {
  if (!v.is_number_unsigned()) return false;
  out = v.get<uint64_t>();
  return true;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) throw FileError("safetensors file '" + path + "' does not exist");
    throw FileError("safetensors file '" + path + "' cannot be opened: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FileError("'" + path + "' is not a regular file; expected a safetensors file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (m == MAP_FAILED) throw FileError("safetensors file '" + path + "' cannot be mapped: " + std::strerror(err));
    map_ = static_cast<const uint8_t*>(m);
  } else {
    ::close(fd);
  }
  try {
    parse();
  } catch (...) {
    if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

void SafetensorsFile::fail(const std::string& problem) const {
  throw FileError("'" + path_ + "' is not a valid safetensors file: " + problem);
}

void SafetensorsFile::parse() {
  if (size_ < 8) fail("it is " + std::to_string(size_) + " bytes long, shorter than the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, map_, 8);
  if (n > kSafetensorsMaxHeader) {
    fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kSafetensorsMaxHeader) + " bytes");
  }
  if (n > size_ - 8) {
    fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size_) + " bytes)");
  }
  data_ = map_ + 8 + n;
  data_size_ = size_ - 8 - n;

  const std::string text(reinterpret_cast<const char*>(map_ + 8), n);
  if (text.empty() || text[0] != '{') fail("the header does not start with '{' (it must be a JSON object)");
  json header;
  std::string error;
  if (!parse_json_strict(text, header, error)) fail("the header is not valid JSON: " + error);
  if (!header.is_object()) fail("the header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) fail("__metadata__ must be an object of strings, got " + describe_json(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value '" + bounded_name(m.key()) + "' is not a string, got " + describe_json(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + bounded_name(key) + "'";
    if (!v.is_object()) fail(what + " is not described by an object");
    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(what + " has no dtype string");
    const DtypeInfo* info = find_dtype(dt->get<std::string>());
    if (!info) fail(what + " has unknown dtype '" + bounded_name(dt->get<std::string>(), 40) + "'");
    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(what + " has no shape array");
    if (sh->size() > kSafetensorsMaxRank) {
      fail(what + " has " + std::to_string(sh->size()) + " dimensions; at most " + std::to_string(kSafetensorsMaxRank) + " are read");
    }
    Entry e;
    e.dtype = info->name;
    // numel is what the byte count must match; `extent` (zero dims counted as 1) is what torch multiplies to make the
    // strides, which must stay an int64 even for an empty tensor such as [0, 2^40, 2^40].
    uint64_t numel = 1, extent = 1;
    for (const json& d : *sh) {
      uint64_t dim = 0;
      if (!as_u64(d, dim) || dim > static_cast<uint64_t>(INT64_MAX)) {
        fail(what + " has a shape entry that is not a non-negative integer: " + describe_json(d));
      }
      if (__builtin_mul_overflow(numel, dim, &numel) || __builtin_mul_overflow(extent, std::max<uint64_t>(dim, 1), &extent) ||
          extent > static_cast<uint64_t>(INT64_MAX)) {
        fail(what + " has a shape whose element count overflows a 64-bit integer");
      }
      e.shape.push_back(static_cast<int64_t>(dim));
    }
    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !as_u64((*off)[0], e.begin) || !as_u64((*off)[1], e.end)) {
      fail(what + " needs data_offsets [begin, end] of two non-negative integers");
    }
    if (e.begin > e.end) fail(what + " has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "] with begin after end");
    if (e.end > data_size_) {
      fail(what + " ends at byte " + std::to_string(e.end) + ", past the data buffer (" + std::to_string(data_size_) + " bytes)");
    }
    uint64_t bits = 0;
    const bool too_many = __builtin_mul_overflow(numel, static_cast<uint64_t>(info->bits), &bits);
    if (too_many || bits % 8 != 0 || bits / 8 != e.end - e.begin) {
      const std::string need = too_many ? "more than 2^64 bits" : bits % 8 == 0 ? std::to_string(bits / 8) : std::to_string(bits) + " bits (not whole bytes)";
      fail(what + " has " + std::to_string(e.end - e.begin) + " bytes of data but shape " + shape_str(e.shape) + " of " + e.dtype + " needs " + need);
    }
    auto ins = entries_.emplace(key, std::move(e));
    spans.push_back({ins.first->second.begin, ins.first->second.end, &ins.first->first});
  }
  // As the reference implementation: tensors tile the buffer exactly, in offset order, with no gap or overlap, and
  // the file ends where the last tensor does.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t at = 0;
  const std::string* prev = nullptr;
  for (const Span& s : spans) {
    if (s.begin < at) fail("tensors '" + bounded_name(*prev) + "' and '" + bounded_name(*s.name) + "' overlap");
    if (s.begin > at) {
      fail("bytes " + std::to_string(at) + ".." + std::to_string(s.begin) + " of the data buffer belong to no tensor (before '" +
           bounded_name(*s.name) + "')");
    }
    at = s.end;
    prev = s.name;
    order_.push_back(*s.name);
  }
  if (at != data_size_) {
    fail("the tensors cover " + std::to_string(at) + " bytes but the data buffer holds " + std::to_string(data_size_) +
         " (truncated or trailing bytes)");
  }
}

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw FileError("safetensors file '" + path_ + "' has no tensor '" + bounded_name(name) + "'");
  return it->second;
}

torch::Tensor SafetensorsFile::load(const std::string& name, std::optional<torch::ScalarType> float_dtype) const {
  const Entry& e = entry(name);
  const DtypeInfo* info = find_dtype(e.dtype);
  if (!info->torch_type) {
    throw FileError("tensor '" + bounded_name(name) + "' in '" + path_ + "' has dtype " + e.dtype +
                    ", which this reader cannot load (supported: BOOL, U8, I8, I16, I32, I64, F16, BF16, F32, F64)");
  }
  const size_t bytes = static_cast<size_t>(e.end - e.begin);
  const uint8_t* src = data_ + e.begin;
  if (*info->torch_type == torch::kBool) {
    for (size_t i = 0; i < bytes; ++i) {
      if (src[i] > 1) throw FileError("tensor '" + bounded_name(name) + "' in '" + path_ + "' is BOOL but holds a byte other than 0 or 1");
    }
  }
  // memcpy into fresh memory: offsets need not be aligned for the element type, and the result must not point
  // into the mapping, which goes away with this object.
  torch::Tensor out = torch::empty(e.shape, torch::TensorOptions().dtype(*info->torch_type));
  if (bytes > 0) std::memcpy(out.data_ptr(), src, bytes);
  // The pages just read stay mapped into this process (and count in its RSS and peak RSS) until the file is closed:
  // for a multi-gigabyte shard that doubles the loading peak. Drop the whole pages of this tensor's range; the page
  // cache keeps them, and a second read faults them back in. Failure only costs memory.
  if (bytes > 0) {
    const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const uintptr_t lo = (reinterpret_cast<uintptr_t>(src) + page - 1) / page * page;
    const uintptr_t hi = (reinterpret_cast<uintptr_t>(src) + bytes) / page * page;
    if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  }
  if (float_dtype && out.is_floating_point() && out.scalar_type() != *float_dtype) out = out.to(*float_dtype);
  return out;
}

std::map<std::string, torch::Tensor> read_safetensors(const std::string& path, std::optional<torch::ScalarType> float_dtype) {
  SafetensorsFile f(path);
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : f.names()) out.emplace(name, f.load(name, float_dtype));
  return out;
}

}  // namespace th
