// Shared pieces of the core tests: fixture paths, a minimal safetensors reader for the Python reference dumps,
// and tensor comparisons relative to the reference's magnitude, with the shared tolerances.
#pragma once

#include "doctest_torch.h"
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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
// attention implementations). a, b: [B, T, ...]. Use it for bit-exact checks (== 0); tolerances go through rel_diff.
inline double max_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask = {}) {
  auto d = (a.to(torch::kCPU, torch::kFloat32) - b.to(torch::kCPU, torch::kFloat32)).abs();
  if (mask.defined()) {
    auto m = mask.to(torch::kCPU).to(torch::kBool);
    while (m.dim() < d.dim()) m = m.unsqueeze(-1);
    d = d.masked_fill(~m, 0);
  }
  return d.max().item<double>();
}

// ------------------------------------------------------------------------------------------- float tolerances
// Every tolerance in these tests is relative to the magnitude of the values compared: the same bound then holds for
// a logit of 0.1 and a loss of 120, and for any summation order (thread count, BLAS kernel of the machine).
// Tolerances are written as multiples of float32's machine epsilon where they come from an error bound.
constexpr double kF32Eps = 1.1920928955078125e-07;  // 2^-23

// The shared tolerances (the same as test/helpers.ts), with the largest values measured with 1, 2 and 4 threads and
// with AVX-512, AVX2 and no-SIMD kernels (ATEN_CPU_CAPABILITY=avx2|default, OPENBLAS_CORETYPE=Haswell|Sandybridge)
// against fixtures made with AVX-512: each leaves a factor of at least 10.
//
// One float32 forward by two implementations (native vs the TorchScript archive or eager Python, KV cache vs
// recomputation): the longest dot product of the tiny models has K = 256 terms (their MLP), and a sum in another
// order differs by at most K eps of its terms' magnitudes.
constexpr double kForwardRtol = 256 * kF32Eps;
// A loss from the native forward against the same loss in PyTorch: a mean over a few dozen tokens of the heads'
// outputs, which carry the forward's rounding differences.
constexpr double kLossRtol = 64 * kF32Eps;
// Gradients against PyTorch autograd: one more product summed over the batch's tokens.
constexpr double kGradRtol = 128 * kF32Eps;

// Relative error of a against the reference b: max|a-b| / max|b| over the positions where mask [B,T] is 1. A
// reference that is all zero has no scale: it must then be matched exactly (0, else infinity).
inline double rel_diff(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask = {}) {
  REQUIRE_MESSAGE(a.sizes() == b.sizes(), "shape " << a.sizes() << " vs " << b.sizes());
  auto bf = b.to(torch::kCPU, torch::kFloat64);
  auto d = (a.to(torch::kCPU, torch::kFloat64) - bf).abs();
  auto r = bf.abs();
  if (mask.defined()) {
    auto m = mask.to(torch::kCPU).to(torch::kBool);
    while (m.dim() < d.dim()) m = m.unsqueeze(-1);
    d = d.masked_fill(~m, 0);
    r = r.masked_fill(~m, 0);
  }
  if (d.numel() == 0) return 0;
  if (!torch::isfinite(d).all().item<bool>()) return std::numeric_limits<double>::infinity();
  const double num = d.max().item<double>(), den = r.max().item<double>();
  if (den == 0) return num == 0 ? 0 : std::numeric_limits<double>::infinity();
  return num / den;
}

// Scalars: |got - want| / |want| (want 0 must be matched exactly).
inline double rel_err(double got, double want) {
  const double d = std::abs(got - want);
  if (want == 0) return d == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::isnan(d) ? std::numeric_limits<double>::infinity() : d / std::abs(want);
}

// A sum of terms (a total loss): its rounding error scales with the terms' magnitudes, not with the sum's.
inline double sum_rel_err(double got, double want, const std::vector<double>& terms) {
  double scale = 0;
  for (double t : terms) scale += std::abs(t);
  const double d = std::abs(got - want);
  if (scale == 0) return d == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::isnan(d) ? std::numeric_limits<double>::infinity() : d / scale;
}

// With TH_TEST_MARGINS=1 every CHECK_REL prints its measured value and bound (how the tolerances were chosen, and
// how to see the margin on a new machine).
inline void log_margin(const char* what, double rel, double rtol, const char* file, int line) {
  static const bool on = std::getenv("TH_TEST_MARGINS") != nullptr;
  if (on) std::fprintf(stderr, "margin %s:%d  %-60s rel %.3g  rtol %.3g  (%.0fx)\n", file, line, what, rel, rtol, rel > 0 ? rtol / rel : INFINITY);
}

}  // namespace th_test

// CHECK(rel <= rtol) that also feeds TH_TEST_MARGINS; doctest prints both numbers when it fails.
#define CHECK_REL(rel_expr, rtol)                                                     \
  do {                                                                                \
    const double th_rel_ = (rel_expr);                                                \
    th_test::log_margin(#rel_expr, th_rel_, (rtol), __FILE__, __LINE__);               \
    CHECK(th_rel_ <= (rtol));                                                         \
  } while (0)

namespace th_test {

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
