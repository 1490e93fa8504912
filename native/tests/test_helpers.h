// Shared pieces of the core tests: fixture paths, a minimal safetensors reader for the Python reference dumps,
// and tensor comparison with a printed max difference (llm.c's check_tensor).
#pragma once

#include "doctest_torch.h"
#include <torch/torch.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace th_test {

inline std::string fixture(const std::string& name) {
  const char* dir = std::getenv("TH_FIXTURES");
  return std::string(dir ? dir : "fixtures") + "/" + name;
}

inline bool exists(const std::string& path) { return std::ifstream(path).good(); }

// Reads F32/I64 tensors of a safetensors file written by scripts/export_torchscript.py --dump-reference.
inline std::map<std::string, torch::Tensor> read_safetensors(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "missing reference " << path << " (run scripts/make_fixtures.sh)");
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, '\0');
  f.read(header.data(), static_cast<std::streamsize>(n));
  std::string rest((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto j = nlohmann::json::parse(header);
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : j.items()) {
    if (k == "__metadata__") continue;
    std::vector<int64_t> shape = v["shape"].get<std::vector<int64_t>>();
    auto off = v["data_offsets"].get<std::vector<size_t>>();
    auto dt = v["dtype"].get<std::string>() == "F32" ? torch::kFloat32 : torch::kLong;
    out[k] = torch::from_blob(rest.data() + off[0], shape, dt).clone();
  }
  return out;
}

// Max |a-b| over the positions where mask [B,T] is 1 (padded positions carry no meaning and differ between
// attention implementations). a, b: [B, T, ...].
inline double max_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask = {}) {
  auto d = (a.to(torch::kCPU, torch::kFloat32) - b.to(torch::kCPU, torch::kFloat32)).abs();
  if (mask.defined()) {
    auto m = mask.to(torch::kCPU).to(torch::kBool);
    while (m.dim() < d.dim()) m = m.unsqueeze(-1);
    d = d.masked_fill(~m, 0);
  }
  return d.max().item<double>();
}

// The message of the exception of type E that fn throws (the test fails on another type or none).
template <typename E, typename Fn>
std::string message_of(Fn&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
  }
  FAIL("no exception thrown");
  return "";
}

}  // namespace th_test
