// The safetensors reader against hand-made files (every malformed case must end in a FileError that names the
// problem) and against files written by Python (scripts/make_hf_fixtures.py); Hugging Face folders against the
// TorchScript archives they were made from.
#include "doctest_torch.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "backbone.h"
#include "checkpoint.h"
#include "errors.h"
#include "safetensors.h"
#include "test_helpers.h"

using th_test::fixture;
using th_test::message_of;

namespace {

namespace fs = std::filesystem;

std::string tmp_path(const std::string& name) { return (fs::temp_directory_path() / ("th_st_" + name)).string(); }

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64le(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A file with the given header text and data bytes (the header length is the header's own).
std::string make_file(const std::string& name, const std::string& header, const std::string& data) {
  const std::string path = tmp_path(name);
  write_bytes(path, u64le(header.size()) + header + data);
  return path;
}

std::string floats(std::initializer_list<float> v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.begin(), s.size());
  return s;
}

std::string halves(std::initializer_list<uint16_t> v) {
  std::string s(v.size() * 2, '\0');
  std::memcpy(s.data(), v.begin(), s.size());
  return s;
}

// The FileError message of opening `path` (fails the test when something else happens).
std::string open_error(const std::string& path) {
  return message_of<th::FileError>([&] { th::SafetensorsFile f(path); });
}

void expect_refused(const std::string& name, const std::string& header, const std::string& data, const std::string& needle) {
  const std::string path = make_file(name, header, data);
  const std::string msg = open_error(path);
  INFO(name << ": " << msg);
  CHECK(msg.find(needle) != std::string::npos);
  CHECK(msg.find(path) != std::string::npos);  // the message names the file
  std::remove(path.c_str());
}


}  // namespace

TEST_CASE("safetensors: malformed files are refused with a FileError naming the problem") {
  const std::string t2 = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

  SUBCASE("shorter than the length field") {
    const std::string path = tmp_path("short");
    write_bytes(path, "abcd");
    CHECK(open_error(path).find("shorter than the 8-byte header length") != std::string::npos);
    write_bytes(path, "");
    CHECK(open_error(path).find("0 bytes long") != std::string::npos);
    std::remove(path.c_str());
  }
  SUBCASE("header length past the end of the file") {
    const std::string path = tmp_path("long_header");
    write_bytes(path, u64le(1000) + t2);
    CHECK(open_error(path).find("runs past the end of the file") != std::string::npos);
    std::remove(path.c_str());
  }
  SUBCASE("header length over the cap") {
    const std::string path = tmp_path("cap");
    write_bytes(path, u64le(th::kSafetensorsMaxHeader + 1) + t2 + floats({1, 2}));
    CHECK(open_error(path).find("exceeds the limit of 100000000 bytes") != std::string::npos);
    write_bytes(path, u64le(~uint64_t(0)) + t2);
    CHECK(open_error(path).find("exceeds the limit") != std::string::npos);
    std::remove(path.c_str());
  }
  SUBCASE("truncated data buffer") {
    expect_refused("trunc", t2, floats({1}), "past the data buffer");
  }
  SUBCASE("offsets outside the buffer or reversed") {
    expect_refused("outside", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", floats({1, 2}), "ends at byte 16, past the data buffer (8 bytes)");
    expect_refused("reversed", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", floats({1, 2}), "begin after end");
    expect_refused("negative", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", floats({1, 2}), "data_offsets [begin, end]");
    expect_refused("three", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", floats({1, 2}), "data_offsets [begin, end]");
  }
  SUBCASE("overlapping tensors, holes and trailing bytes") {
    expect_refused("overlap", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                   floats({1, 2, 3}), "tensors 'a' and 'b' overlap");
    expect_refused("hole", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                   floats({1, 2, 3}), "belong to no tensor");
    expect_refused("trailing", t2, floats({1, 2, 3}), "trailing bytes");
  }
  SUBCASE("shape and byte count disagree") {
    expect_refused("mismatch", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", floats({1, 2}), "needs 12");
    expect_refused("bad_dim", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", floats({1, 2}), "not a non-negative integer");
    expect_refused("float_dim", R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", floats({1, 2}), "not a non-negative integer");
    expect_refused("overflow", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", floats({1, 2}), "overflows");
    expect_refused("no_shape", R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", floats({1, 2}), "no shape array");
  }
  SUBCASE("unknown dtype") {
    expect_refused("dtype", R"({"a":{"dtype":"F17","shape":[2],"data_offsets":[0,8]}})", floats({1, 2}), "unknown dtype 'F17'");
    expect_refused("no_dtype", R"({"a":{"shape":[2],"data_offsets":[0,8]}})", floats({1, 2}), "no dtype string");
  }
  SUBCASE("header that is not a JSON object") {
    expect_refused("not_json", "{\"a\": nope}", "", "not valid JSON");
    expect_refused("array", "[1, 2]  ", "", "does not start with '{'");
    expect_refused("empty", "", "", "does not start with '{'");
    expect_refused("bad_utf8", "{\"a\xff\":1}", "", "not valid JSON");
    expect_refused("entry_not_object", R"({"a":[1]})", "", "not described by an object");
  }
  SUBCASE("duplicate keys") {
    expect_refused("dup", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                   floats({1, 2}), "duplicate key 'a'");
  }
  SUBCASE("__metadata__ must map strings to strings") {
    expect_refused("meta", R"({"__metadata__":{"format":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", floats({1, 2}), "not a string");
    expect_refused("meta2", R"({"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", floats({1, 2}), "__metadata__ must be");
  }
  SUBCASE("missing files and folders") {
    CHECK(message_of<th::FileError>([] { th::SafetensorsFile f("/nonexistent/x.safetensors"); }).find("does not exist") != std::string::npos);
    CHECK(message_of<th::FileError>([] { th::SafetensorsFile f(fs::temp_directory_path().string()); }).find("not a regular file") !=
          std::string::npos);
  }
}

TEST_CASE("safetensors: hostile headers (deep nesting, overflowing shapes, huge values in messages)") {
  const std::string f2 = floats({1, 2});
  SUBCASE("nesting far deeper than any header") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    expect_refused("deep_shape", R"({"a":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,8]}})", f2, "nested more than 64 levels");
    expect_refused("deep_meta", R"({"__metadata__":{"x":)" + deep + "}}", "", "nested more than 64 levels");
    expect_refused("deep_open", "{\"a\":" + std::string(1000000, '['), "", "nested more than 64 levels");
  }
  SUBCASE("shapes whose products overflow int64") {
    // The element count fits (it is 0) but torch's strides would be 2^62 * 2^62.
    expect_refused("zero_extent", R"({"a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", "",
                   "overflows a 64-bit integer");
    expect_refused("numel", R"({"a":{"dtype":"F32","shape":[3037000500,3037000500],"data_offsets":[0,8]}})", f2, "overflows");
    // The element count fits in uint64 but not in int64.
    expect_refused("int64", R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})", f2, "not a non-negative integer");
    expect_refused("int64b", R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", f2, "overflows");
    // The byte count overflows although the element count does not.
    expect_refused("bits", R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", f2, "needs more than 2^64 bits");
    expect_refused("huge_dim", R"({"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,8]}})", f2, "not a non-negative integer: 1e+30");
    expect_refused("neg_huge", R"({"a":{"dtype":"F32","shape":[-9223372036854775808],"data_offsets":[0,8]}})", f2, "not a non-negative integer");
    expect_refused("huge_offset", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]}})", f2,
                   "past the data buffer");
    expect_refused("offset_too_big", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551616]}})", f2, "data_offsets");
  }
  SUBCASE("too many dimensions") {
    std::string dims = "1";
    for (int i = 0; i < 16; ++i) dims += ",1";
    expect_refused("rank", R"({"a":{"dtype":"F32","shape":[)" + dims + R"(],"data_offsets":[0,4]}})", floats({1}), "has 17 dimensions; at most 16");
    // 16 are read.
    const std::string path = make_file("rank16", R"({"a":{"dtype":"F32","shape":[)" + dims.substr(2) + R"(],"data_offsets":[0,4]}})", floats({5}));
    CHECK(th::SafetensorsFile(path).load("a").dim() == 16);
    std::remove(path.c_str());
  }
  SUBCASE("values from the file are quoted briefly") {
    const std::string long_name(100000, 'k');
    const std::string path = make_file("long", "{\"" + long_name + R"(":{"dtype":"F32","shape":[2],"data_offsets":[0,9]}})", f2);
    std::string msg = open_error(path);
    CHECK(msg.find("(100000 bytes)") != std::string::npos);
    CHECK(msg.size() < 600);
    std::remove(path.c_str());
    expect_refused("long_dtype", R"({"a":{"dtype":")" + std::string(100000, 'F') + R"(","shape":[2],"data_offsets":[0,8]}})", f2, "unknown dtype");
    expect_refused("wide_dim", R"({"a":{"dtype":"F32","shape":[")" + std::string(100000, '9') + R"("],"data_offsets":[0,8]}})", f2,
                   "(100000 bytes)");
    expect_refused("deepish_dim", R"({"a":{"dtype":"F32","shape":[[[[[[[[[[1]]]]]]]]]],"data_offsets":[0,8]}})", f2, "integer: [[[...]]]");
    expect_refused("meta_value", R"({"__metadata__":{"format":[1,2,3,4,5,6]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", f2,
                   "got [1, 2, 3, ...] (an array of 6)");
  }
}

// Random mutations of a valid file, in this process: each must open or throw a FileError, and every tensor of a file
// that opens must load. A crash here is a crash of the caller's process.
TEST_CASE("safetensors: mutated files never crash the reader") {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},"c":{"dtype":"BOOL","shape":[2],"data_offsets":[22,24]}})";
  std::string good = u64le(header.size()) + header + floats({1, 2, 3, 4}) + halves({1, 2, 3}) + std::string("\x01\x00", 2);
  const std::string path = tmp_path("mutate");
  std::mt19937 rng(1234);
  const std::string alphabet = "{}[],:\"0123456789-.eE FIBUCabc_\\\xff";
  int opened = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string m = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t at = rng() % m.size();
      switch (rng() % 4) {
        case 0: m[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: m.erase(at, 1 + rng() % 4); break;
        case 2: m.insert(at, 1, alphabet[rng() % alphabet.size()]); break;
        default: m[at] = static_cast<char>(rng()); break;
      }
    }
    // Keep the length field consistent half of the time, so that mutations reach the JSON and the checks after it.
    if (i % 2 == 0 && m.size() >= 8) m.replace(0, 8, u64le(header.size() + (m.size() - good.size())));
    write_bytes(path, m);
    try {
      th::SafetensorsFile f(path);
      for (const auto& name : f.names()) {
        try {
          f.load(name, torch::kFloat32);
        } catch (const th::FileError&) {
          // A dtype this reader cannot hold, or BOOL bytes other than 0/1.
        }
      }
      ++opened;
    } catch (const th::FileError&) {
    }
  }
  std::remove(path.c_str());
  MESSAGE(opened << " of 3000 mutated files opened");
  CHECK(opened > 0);  // the mutations are not all fatal, so the checks after the header are reached too
}

TEST_CASE("safetensors: values written by hand are read exactly, converted on request") {
  // F16 [3] (6 bytes, so the F32 tensor after it starts unaligned), F32 [2, 2], BF16 [4], I64 [2], a scalar, an empty one.
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("h":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},)"
      R"("f":{"dtype":"F32","shape":[2,2],"data_offsets":[6,22]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[22,30]},)"
      R"("i":{"dtype":"I64","shape":[2],"data_offsets":[30,46]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[46,50]},)"
      R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[50,50]}})"
      "   ";  // trailing spaces are allowed
  std::string data;
  data += halves({0x3C00, 0xC000, 0x0001});              // 1, -2, 2^-24 (smallest subnormal)
  data += floats({0.1f, -3.5f, 1e-30f, 65504.0f});
  data += halves({0x3F80, 0xC000, 0x4049, 0x7F7F});      // 1, -2, 3.140625, 3.3895314e38
  int64_t ints[2] = {-7, int64_t(1) << 40};
  data.append(reinterpret_cast<const char*>(ints), sizeof(ints));
  data += floats({42.0f});
  const std::string path = make_file("good", header, data);

  th::SafetensorsFile f(path);
  CHECK(f.metadata().at("format") == "pt");
  const std::vector<std::string> order{"h", "f", "b", "i", "s", "e"};
  CHECK(f.names() == order);

  auto h = f.load("h", torch::kFloat32);
  CHECK((h.scalar_type() == torch::kFloat32));
  CHECK(h[0].item<float>() == 1.0f);
  CHECK(h[1].item<float>() == -2.0f);
  CHECK(h[2].item<float>() == std::ldexp(1.0f, -24));
  CHECK((f.load("h").scalar_type() == torch::kHalf));

  auto fl = f.load("f");
  CHECK(fl.sizes() == c10::IntArrayRef({2, 2}));
  CHECK(fl[0][0].item<float>() == 0.1f);
  CHECK(fl[0][1].item<float>() == -3.5f);
  CHECK(fl[1][0].item<float>() == 1e-30f);
  CHECK(fl[1][1].item<float>() == 65504.0f);

  auto b = f.load("b", torch::kFloat32);
  CHECK(b[0].item<float>() == 1.0f);
  CHECK(b[1].item<float>() == -2.0f);
  CHECK(b[2].item<float>() == 3.140625f);
  CHECK(b[3].item<float>() == 3.3895313892515355e38f);
  CHECK((f.load("f", torch::kBFloat16).scalar_type() == torch::kBFloat16));

  auto i = f.load("i", torch::kFloat32);  // integers keep their type
  CHECK((i.scalar_type() == torch::kLong));
  CHECK(i[0].item<int64_t>() == -7);
  CHECK(i[1].item<int64_t>() == (int64_t(1) << 40));

  CHECK(f.load("s").dim() == 0);
  CHECK(f.load("s").item<float>() == 42.0f);
  CHECK(f.load("e").sizes() == c10::IntArrayRef({0, 3}));
  CHECK(message_of<th::FileError>([&] { f.load("nope"); }).find("has no tensor 'nope'") != std::string::npos);

  // Copies own their memory: they survive the file object (and the mapping) going away.
  torch::Tensor kept;
  {
    th::SafetensorsFile g(path);
    kept = g.load("f");
  }
  CHECK(kept[1][1].item<float>() == 65504.0f);
  std::remove(path.c_str());
}

TEST_CASE("safetensors: dtypes of the format that libtorch cannot hold here are refused at load") {
  const std::string path = make_file("f8", R"({"q":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", std::string(4, '\x10'));
  th::SafetensorsFile f(path);  // the header is valid
  CHECK(message_of<th::FileError>([&] { f.load("q"); }).find("dtype F8_E4M3, which this reader cannot load") != std::string::npos);
  std::remove(path.c_str());
  const std::string p4 = make_file("f4", R"({"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}})", std::string(2, '\0'));
  CHECK(open_error(p4).find("not whole bytes") != std::string::npos);
  std::remove(p4.c_str());
  const std::string pb = make_file("bool", R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", std::string("\x01\x07", 2));
  th::SafetensorsFile fb(pb);
  CHECK(message_of<th::FileError>([&] { fb.load("m"); }).find("other than 0 or 1") != std::string::npos);
  std::remove(pb.c_str());
}

TEST_CASE("safetensors: F16 and BF16 files written by Python hold the archive's weights rounded") {
  auto ref = th::load_torchscript_checkpoint(fixture("tiny-llama.pt"));
  auto bf16 = th::read_safetensors(fixture("hf-tiny-llama-bf16/model.safetensors"));
  auto as_f32 = th::read_safetensors(fixture("hf-tiny-llama-bf16/model.safetensors"), torch::kFloat32);
  REQUIRE(bf16.size() == ref.tensors.size() - 1);  // the archive also holds the module's inv_freq
  for (const auto& [name, t] : bf16) {
    INFO(name);
    const std::string key = name.rfind("model.", 0) == 0 ? name.substr(6) : name;
    REQUIRE(ref.tensors.count(key) == 1);
    CHECK((t.scalar_type() == torch::kBFloat16));
    CHECK(torch::equal(t, ref.tensors.at(key).to(torch::kBFloat16)));
    CHECK(torch::equal(as_f32.at(name), ref.tensors.at(key).to(torch::kBFloat16).to(torch::kFloat32)));
  }
  auto ref_gpt2 = th::load_torchscript_checkpoint(fixture("tiny-gpt2.pt"));
  for (const auto& [name, t] : th::read_safetensors(fixture("hf-tiny-gpt2-f16/model.safetensors"))) {
    INFO(name);
    CHECK((t.scalar_type() == torch::kHalf));
    CHECK(torch::equal(t, ref_gpt2.tensors.at(name.substr(std::string("transformer.").size())).to(torch::kHalf)));
  }
}

TEST_CASE("Hugging Face folders hold the same tensors as the archives") {
  struct Case {
    const char* dir;
    const char* archive;
  };
  for (const Case& c : {Case{"hf-tiny-gpt2", "tiny-gpt2.pt"}, Case{"hf-tiny-gpt2-noprefix", "tiny-gpt2.pt"},
                        Case{"hf-tiny-llama", "tiny-llama.pt"}, Case{"hf-tiny-mistral", "tiny-mistral.pt"},
                        Case{"hf-tiny-qwen2", "tiny-qwen2.pt"}}) {
    INFO(c.dir);
    auto hf = th::load_hf_checkpoint(fixture(c.dir));
    auto ts = th::load_torchscript_checkpoint(fixture(c.archive));
    CHECK(hf.config_json == ts.config_json);
    CHECK(hf.config.model_type == ts.config.model_type);
    // The archive also lists the tied lm_head (and the reference module's inv_freq); the folder leaves them out, and
    // its mask / rotary buffers are skipped.
    for (const auto& [name, t] : hf.tensors) {
      INFO(name);
      REQUIRE(ts.tensors.count(name) == 1);
      CHECK(torch::equal(t, ts.tensors.at(name)));
    }
    for (const auto& [name, t] : ts.tensors) {
      const bool tied = name == "lm_head.weight" && ts.config.tie_word_embeddings;
      if (name != "inv_freq" && !tied) CHECK_MESSAGE(hf.tensors.count(name) == 1, name);
    }
  }
  CHECK(!th::load_hf_checkpoint(fixture("hf-tiny-gpt2")).tokenizer_json.empty());
  CHECK(th::load_hf_checkpoint(fixture("hf-tiny-mistral")).tokenizer_json.empty());
}

TEST_CASE("a backbone from a Hugging Face folder computes what the archive's does") {
  auto ids = torch::tensor({{5, 9, 3, 60, 2, 7}, {1, 4, 4, 8, 0, 0}}, torch::kLong);
  auto mask = torch::tensor({{1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 0, 0}}, torch::kLong);
  for (const char* name : {"gpt2", "llama", "mistral", "qwen2"}) {
    INFO(name);
    auto a = th::load_backbone(fixture(std::string("tiny-") + name + ".pt"), {});
    auto b = th::load_backbone(fixture(std::string("hf-tiny-") + name), {});
    auto ra = a->forward({ids, mask, {0, 1, -1}, true});
    auto rb = b->forward({ids, mask, {0, 1, -1}, true});
    for (size_t k = 0; k < ra.hidden_states.size(); ++k) CHECK(torch::equal(ra.hidden_states[k].second, rb.hidden_states[k].second));
    CHECK(torch::equal(ra.logits, rb.logits));
  }
  // BF16 weights loaded as bfloat16 equal the F32 archive loaded as bfloat16 (the same round-to-nearest-even).
  auto a = th::load_backbone(fixture("tiny-llama.pt"), {"cpu", "bfloat16"});
  auto b = th::load_backbone(fixture("hf-tiny-llama-bf16"), {"cpu", "bfloat16"});
  CHECK(torch::equal(a->forward({ids, mask, {-1}, false}).hidden_states[0].second, b->forward({ids, mask, {-1}, false}).hidden_states[0].second));
}

TEST_CASE("hf_state_dict gives the Hugging Face names and layouts back") {
  for (const char* name : {"tiny-gpt2", "tiny-llama", "tiny-qwen2"}) {
    INFO(name);
    auto bb = th::load_backbone(fixture(std::string(name) + ".pt"), {});
    auto ck = th::load_torchscript_checkpoint(fixture(std::string(name) + ".pt"));
    const std::string prefix = bb->base_prefix();
    auto sd = bb->hf_state_dict();
    size_t expected = 0;
    for (const auto& [k, t] : ck.tensors) {
      if (k == "inv_freq" || (k == "lm_head.weight" && ck.config.tie_word_embeddings)) continue;
      ++expected;
    }
    CHECK(sd.size() == expected);
    for (const auto& [key, t] : sd) {
      INFO(key);
      const std::string k = key == "lm_head.weight" ? key : key.substr(prefix.size());
      CHECK(key.rfind(key == "lm_head.weight" ? "lm_head" : prefix, 0) == 0);
      REQUIRE(ck.tensors.count(k) == 1);
      CHECK(torch::equal(t, ck.tensors.at(k)));
    }
  }
}

TEST_CASE("hf_state_dict after merging LoRA adapters lists each weight once, with the merged values") {
  auto bb = th::load_backbone(fixture("tiny-llama.pt"), {});
  const size_t before = bb->hf_state_dict().size();
  th::LoraOptions lo;
  lo.r = 2;
  bb->add_lora(lo);
  {
    torch::NoGradGuard no_grad;
    for (th::Linear* l : bb->linears()) l->lora_b.fill_(0.01);
  }
  const auto q = bb->linears()[0];
  const torch::Tensor expected = q->weight + torch::matmul(q->lora_b, q->lora_a) * q->scaling;
  bb->merge_lora();
  auto sd = bb->hf_state_dict();
  CHECK(sd.size() == before);
  std::set<std::string> names;
  for (const auto& [k, t] : sd) CHECK_MESSAGE(names.insert(k).second, k);
  for (const auto& [k, t] : sd) {
    // W + (B A) s with r = 2: a few roundings of values of W's size.
    if (k == "model.layers.0.self_attn.q_proj.weight") CHECK_REL(th_test::rel_diff(t, expected), 8 * th_test::kF32Eps);
  }
}

TEST_CASE("Hugging Face folder errors") {
  const fs::path dir = fs::temp_directory_path() / "th_hf_errors";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string d = dir.string();
  CHECK(message_of<th::ConfigError>([&] { th::load_backbone(d, {}); }).find("has no config.json") != std::string::npos);
  fs::copy_file(fixture("hf-tiny-gpt2/config.json"), dir / "config.json");
  std::ofstream(dir / "pytorch_model.bin") << "pickle";
  auto msg = message_of<th::FileError>([&] { th::load_backbone(d, {}); });
  CHECK(msg.find("has no weights") != std::string::npos);
  CHECK(msg.find("pytorch_model.bin") != std::string::npos);

  // A safetensors file given directly: point at its folder.
  CHECK(message_of<th::FileError>([&] { th::load_backbone(fixture("hf-tiny-gpt2/model.safetensors"), {}); }).find("pass the folder") !=
        std::string::npos);

  // Index problems: a shard that is missing, a tensor the index places in a shard that lacks it, a path in a name.
  const fs::path src = fixture("hf-tiny-llama");
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(src)) fs::copy_file(e.path(), dir / e.path().filename());
  fs::remove(dir / "model-00002-of-00002.safetensors");
  CHECK(message_of<th::FileError>([&] { th::load_backbone(d, {}); }).find("'model-00002-of-00002.safetensors', which is not in the folder") !=
        std::string::npos);
  auto write_index = [&](const std::string& text) { std::ofstream(dir / "model.safetensors.index.json") << text; };
  fs::copy_file(src / "model-00002-of-00002.safetensors", dir / "model-00002-of-00002.safetensors");
  write_index(R"({"weight_map": {"lm_head.weight": "model-00001-of-00002.safetensors"}})");
  CHECK(message_of<th::FileError>([&] { th::load_backbone(d, {}); }).find("maps tensor 'lm_head.weight' to 'model-00001-of-00002.safetensors', which does not contain it") !=
        std::string::npos);
  write_index(R"({"weight_map": {"lm_head.weight": "../elsewhere.safetensors"}})");
  CHECK(message_of<th::FileError>([&] { th::load_backbone(d, {}); }).find("not a file name in the same folder") != std::string::npos);
  write_index(R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"}})");
  CHECK(message_of<th::FileError>([&] { th::load_backbone(d, {}); }).find("duplicate key 'a'") != std::string::npos);
  write_index(R"({"metadata": {}})");
  CHECK(message_of<th::FileError>([&] { th::load_backbone(d, {}); }).find("no \"weight_map\"") != std::string::npos);
  // Two shards holding the same tensors (the second shard copied over the first).
  fs::copy_file(src / "model-00002-of-00002.safetensors", dir / "model-00001-of-00002.safetensors", fs::copy_options::overwrite_existing);
  write_index(R"({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", "model.norm.weight": "model-00001-of-00002.safetensors"}})");
  CHECK(message_of<th::FileError>([&] { th::load_backbone(d, {}); }).find("is stored twice") != std::string::npos);

  // A tensor missing from the weights, and one with the wrong shape: the model names it.
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fixture("hf-tiny-mistral/config.json"), dir / "config.json");
  auto ck = th::load_hf_checkpoint(fixture("hf-tiny-mistral"));
  auto write_model = [&](const std::map<std::string, torch::Tensor>& tensors) {
    nlohmann::json h = nlohmann::json::object();
    std::string data;
    for (const auto& [k, t] : tensors) {
      auto c = t.contiguous();
      h["model." + k] = {{"dtype", "F32"}, {"shape", c.sizes().vec()}, {"data_offsets", {data.size(), data.size() + c.numel() * 4}}};
      data.append(static_cast<const char*>(c.data_ptr()), c.numel() * 4);
    }
    const std::string header = h.dump();
    write_bytes((dir / "model.safetensors").string(), u64le(header.size()) + header + data);
  };
  auto missing = ck.tensors;
  missing.erase("layers.1.mlp.up_proj.weight");
  write_model(missing);
  CHECK(message_of<th::ConfigError>([&] { th::load_backbone(d, {}); }).find("no tensor 'layers.1.mlp.up_proj.weight'") != std::string::npos);
  auto wrong = ck.tensors;
  wrong["norm.weight"] = torch::ones({7});
  write_model(wrong);
  msg = message_of<th::ConfigError>([&] { th::load_backbone(d, {}); });
  CHECK(msg.find("'norm.weight' has shape [7] but config.json implies [32]") != std::string::npos);
  fs::remove_all(dir);
}
