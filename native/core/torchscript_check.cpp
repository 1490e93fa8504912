#include "torchscript_check.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/api/compilation_unit.h>
#include <torch/csrc/jit/serialization/storage_context.h>
#include <torch/csrc/jit/serialization/unpickler.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "device.h"
#include "errors.h"
#include "json_strict.h"

namespace th {
namespace {

uint64_t le(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

// Reads byte ranges of a file, refusing any range that does not lie inside it.
class RangeReader {
 public:
  explicit RangeReader(const std::string& path) : path_(path), f_(path, std::ios::binary) {
    if (!f_) throw FileError("model file '" + path + "' cannot be opened for reading");
    f_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(f_.tellg());
  }
  uint64_t size() const { return size_; }
  [[noreturn]] void fail(const std::string& problem) const {
    throw FileError("'" + path_ + "' could not be read as a TorchScript archive (zip): " + problem);
  }
  std::string read(uint64_t offset, uint64_t n, const char* what) {
    if (offset > size_ || n > size_ - offset) {
      fail(std::string(what) + " at byte " + std::to_string(offset) + " (" + std::to_string(n) + " bytes) runs past the end of the file (" +
           std::to_string(size_) + " bytes)");
    }
    std::string out(static_cast<size_t>(n), '\0');
    f_.seekg(static_cast<std::streamoff>(offset));
    if (n > 0) f_.read(out.data(), static_cast<std::streamsize>(n));
    if (!f_) fail(std::string("reading ") + what + " failed");
    return out;
  }

 private:
  std::string path_;
  std::ifstream f_;
  uint64_t size_ = 0;
};

constexpr uint64_t kEocdSize = 22, kMaxComment = 65535, kCentralHeaderSize = 46;
// A central directory this large would list millions of records; a model archive lists a few thousand.
constexpr uint64_t kMaxDirectory = uint64_t{1} << 28;

}  // namespace

std::vector<ZipEntry> read_zip_directory(const std::string& path) {
  RangeReader r(path);
  const uint64_t size = r.size();
  if (size < kEocdSize) r.fail("it is " + std::to_string(size) + " bytes long, too short for a zip directory");
  // The end-of-central-directory record sits at the end, followed only by a comment of at most 64 KB.
  const uint64_t tail_len = std::min(size, kEocdSize + kMaxComment);
  const std::string tail = r.read(size - tail_len, tail_len, "the end of the file");
  uint64_t eocd = UINT64_MAX;
  for (uint64_t i = tail_len - kEocdSize + 1; i-- > 0;) {
    if (tail.compare(i, 4, "PK\x05\x06") == 0 && i + kEocdSize + le(tail, i + 20, 2) <= tail_len) {
      eocd = i;
      break;
    }
  }
  if (eocd == UINT64_MAX) r.fail("no end-of-central-directory record (the file is truncated or not a zip archive)");
  uint64_t entries = le(tail, eocd + 10, 2), dir_size = le(tail, eocd + 12, 4), dir_offset = le(tail, eocd + 16, 4);
  const uint64_t eocd_pos = size - tail_len + eocd;
  // ZIP64 (PyTorch's writer uses it): a locator right before the record points at the 64-bit record.
  if (eocd_pos >= 20) {
    const std::string loc = r.read(eocd_pos - 20, 20, "the ZIP64 locator");
    if (loc.compare(0, 4, "PK\x06\x07") == 0) {
      const std::string rec = r.read(le(loc, 8, 8), 56, "the ZIP64 end-of-central-directory record");
      if (rec.compare(0, 4, "PK\x06\x06") != 0) r.fail("the ZIP64 locator does not point at a ZIP64 end-of-central-directory record");
      entries = le(rec, 32, 8);
      dir_size = le(rec, 40, 8);
      dir_offset = le(rec, 48, 8);
    }
  }
  if (dir_size > kMaxDirectory) r.fail("its central directory claims " + std::to_string(dir_size) + " bytes");
  if (entries > dir_size / kCentralHeaderSize) {
    r.fail("its central directory claims " + std::to_string(entries) + " records in " + std::to_string(dir_size) + " bytes");
  }
  const std::string dir = r.read(dir_offset, dir_size, "the central directory");
  std::vector<ZipEntry> out;
  out.reserve(static_cast<size_t>(entries));
  std::set<std::string> seen;
  uint64_t at = 0;
  for (uint64_t i = 0; i < entries; ++i) {
    const std::string where = "central directory record " + std::to_string(i);
    if (dir_size - at < kCentralHeaderSize || dir.compare(at, 4, "PK\x01\x02") != 0) r.fail(where + " is malformed");
    ZipEntry e;
    e.method = static_cast<uint16_t>(le(dir, at + 10, 2));
    e.compressed_size = le(dir, at + 20, 4);
    e.size = le(dir, at + 24, 4);
    uint64_t local_offset = le(dir, at + 42, 4);
    const uint64_t name_len = le(dir, at + 28, 2), extra_len = le(dir, at + 30, 2), comment_len = le(dir, at + 32, 2);
    const uint64_t total = kCentralHeaderSize + name_len + extra_len + comment_len;
    if (dir_size - at < total) r.fail(where + " runs past the end of the central directory");
    e.name = dir.substr(static_cast<size_t>(at + kCentralHeaderSize), static_cast<size_t>(name_len));
    // ZIP64 extra field: the 64-bit values of the fields saturated above, in this order.
    uint64_t x = at + kCentralHeaderSize + name_len;
    const uint64_t x_end = x + extra_len;
    while (x_end - x >= 4) {
      const uint64_t id = le(dir, x, 2), len = le(dir, x + 2, 2);
      x += 4;
      if (x_end - x < len) r.fail(where + " has an extra field that runs past its end");
      if (id == 1) {
        uint64_t p = x;
        for (uint64_t* field : {&e.size, &e.compressed_size, &local_offset}) {
          if (*field != 0xFFFFFFFFu) continue;
          if (x + len - p < 8) r.fail(where + " has a ZIP64 field too short for its sizes");
          *field = le(dir, p, 8);
          p += 8;
        }
      }
      x += len;
    }
    if (local_offset >= size || e.compressed_size > size) {
      r.fail("record '" + bounded_name(e.name) + "' claims " + std::to_string(e.compressed_size) + " bytes at byte " +
             std::to_string(local_offset) + ", outside the file (" + std::to_string(size) + " bytes)");
    }
    if (!seen.insert(e.name).second) r.fail("record '" + bounded_name(e.name) + "' appears twice");
    out.push_back(std::move(e));
    at += total;
  }
  return out;
}

namespace {

// Unpickles `archive`.pkl as torch::jit::load does, with every class replaced by an empty stand-in and every storage
// left without data, only to learn which storage records it names and how many bytes each one must hold.
std::map<std::string, uint64_t> storage_bytes(caffe2::serialize::PyTorchStreamReader& reader, const std::string& archive) {
  std::map<std::string, uint64_t> out;
  const std::string pickle = archive + ".pkl";
  if (!reader.hasRecord(pickle)) return out;
  at::DataPtr data;
  size_t size = 0;
  std::tie(data, size) = reader.getRecord(pickle);
  const char* bytes = static_cast<const char*>(data.get());
  size_t pos = 0;
  auto read = [&](char* buf, size_t n) -> size_t {
    n = std::min(n, size - pos);
    if (n > 0) std::memcpy(buf, bytes + pos, n);
    pos += n;
    return n;
  };
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  std::map<std::string, c10::StrongTypePtr> classes;
  auto resolve = [&](const c10::QualifiedName& qn) -> c10::StrongTypePtr {
    const std::string name = qn.qualifiedName();
    if (name.rfind("__torch__.", 0) == 0 && name.find('[') == std::string::npos) {
      auto it = classes.find(name);
      if (it == classes.end()) it = classes.emplace(name, c10::StrongTypePtr(cu, c10::ClassType::create(qn, cu))).first;
      return it->second;
    }
    // Container type tags (restore_type_tag): the values are thrown away, only their kind has to fit.
    if (name.rfind("List[", 0) == 0) return c10::StrongTypePtr(cu, c10::ListType::create(c10::AnyType::get()));
    if (name.rfind("Dict[", 0) == 0) return c10::StrongTypePtr(cu, c10::DictType::create(c10::AnyType::get(), c10::AnyType::get()));
    return c10::StrongTypePtr(cu, torch::jit::Unpickler::defaultTypeParser(name));
  };
  auto load_object = [](const c10::StrongTypePtr& type, const c10::IValue&) { return c10::ivalue::Object::create(type, 0); };
  auto record = [](const std::string&) { return at::DataPtr(nullptr, at::Device(at::kCPU)); };
  auto storages = std::make_shared<torch::jit::DeserializationStorageContext>();
  std::vector<std::string> keys;
  auto note = [&](const std::string& key) {
    keys.push_back(key);
    return record(key);
  };
  torch::jit::Unpickler unpickler(read, resolve, load_object, note, at::Device(at::kCPU), false,
                                  torch::jit::Unpickler::defaultTypeParser, storages);
  unpickler.set_version(reader.version());
  unpickler.parse_ivalue();
  for (const std::string& key : keys) out[archive + "/" + key] = storages->getStorage(key).nbytes();
  return out;
}

}  // namespace

void check_torchscript_records(const std::string& path) {
  const std::vector<ZipEntry> entries = read_zip_directory(path);
  if (entries.empty()) throw FileError("'" + path + "' could not be read as a TorchScript archive: the zip archive is empty");
  // PyTorchStreamReader looks records up under the folder of the first entry, the archive's name.
  const std::string& first = entries.front().name;
  const std::string prefix = first.substr(0, first.find('/')) + "/";
  std::map<std::string, uint64_t> record_size;
  for (const ZipEntry& e : entries) {
    if (e.name.rfind(prefix, 0) == 0) record_size[e.name.substr(prefix.size())] = e.size;
  }
  std::map<std::string, uint64_t> needed;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    for (const char* archive : {"data", "constants"}) {
      for (const auto& kv : storage_bytes(reader, archive)) needed.insert(kv);
    }
  } catch (const c10::Error& e) {
    throw FileError("'" + path + "' could not be read as a TorchScript archive: " + bounded_name(torch_message(e), 400));
  } catch (const std::exception& e) {
    throw FileError("'" + path + "' could not be read as a TorchScript archive: " + bounded_name(e.what(), 400));
  }
  for (const auto& [name, bytes] : needed) {
    auto it = record_size.find(name);
    if (it == record_size.end()) {
      throw FileError("'" + path + "' could not be read as a TorchScript archive: it has no record '" + bounded_name(name) + "', which holds a tensor of " +
                      std::to_string(bytes) + " bytes");
    }
    if (it->second != bytes) {
      throw FileError("'" + path + "' could not be read as a TorchScript archive: record '" + bounded_name(name) + "' holds " + std::to_string(it->second) +
                      " bytes but its tensor storage needs " + std::to_string(bytes) + " (the archive is truncated or corrupt)");
    }
  }
}

}  // namespace th
