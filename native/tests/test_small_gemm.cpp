// Decoding-sized products through BLIS (small_gemm.h) against libtorch's own linear, and the cases it must leave to
// libtorch. When BLIS is not installed, small_linear declines everything and says why.
#include "doctest_torch.h"

#include <fstream>
#include <vector>

#include "quant.h"
#include "small_gemm.h"
#include "test_helpers.h"

namespace {
bool blis_installed() {
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/libblis.so.4", "/usr/lib/aarch64-linux-gnu/libblis.so.4", "/usr/lib/libblis.so.4"}) {
    if (std::ifstream(p).good()) return true;
  }
  return false;
}
}  // namespace

TEST_CASE("small_linear equals torch::linear, and declines what it does not run") {
  torch::manual_seed(21);
  const th::SmallGemmInfo info = th::small_gemm_info();
  if (!blis_installed() || std::getenv("TRANSFORMER_HEADS_BLIS") != nullptr) {
    th::SmallGemmScope decoding;
    CHECK(th::small_linear(torch::randn({2, 16}), torch::randn({8, 16}), {}).defined() == !info.library.empty());
    if (info.library.empty()) CHECK(!info.reason.empty());
    return;
  }
  // Installed (scripts/setup.sh installs it): it must load, or generation silently loses its fast path.
  REQUIRE_MESSAGE(!info.library.empty(), info.reason);
  CHECK(!th::small_linear(torch::randn({2, 16}), torch::randn({8, 16}), {}).defined());  // outside a generation step
  th::SmallGemmScope decoding;
  struct Shape {
    int64_t rows, in, out;
  };
  for (const Shape s : {Shape{1, 64, 96}, Shape{3, 768, 2304}, Shape{8, 3072, 768}, Shape{8, 768, 50257}, Shape{5, 7, 3}}) {
    CAPTURE(s.rows);
    CAPTURE(s.out);
    auto x = torch::randn({s.rows, 1, s.in});  // a decoding step's [B, 1, H]
    auto w = torch::randn({s.out, s.in}) * 0.05;
    auto bias = torch::randn({s.out});
    const uint64_t before = th::small_gemm_info().calls;
    const auto bias_before = bias.clone();
    auto y = th::small_linear(x, w, bias);
    REQUIRE(y.defined());
    CHECK(torch::equal(bias, bias_before));  // the result is not written into the bias (one row: same shape)
    CHECK(th::small_gemm_info().calls == before + 1);
    CHECK(y.sizes() == torch::IntArrayRef({s.rows, 1, s.out}));
    // one dot product of `in` terms in another summation order
    CHECK_REL(th_test::rel_diff(y, torch::linear(x, w, bias)), s.in * th_test::kF32Eps);
    CHECK_REL(th_test::rel_diff(th::small_linear(x, w, {}), torch::linear(x, w)), s.in * th_test::kF32Eps);
  }
  auto w = torch::randn({32, 16});
  CHECK(!th::small_linear(torch::randn({th::kSmallGemmRows + 1, 16}), w, {}).defined());    // prompts: libtorch's BLAS
  CHECK(!th::small_linear(torch::randn({2, 16}, torch::kBFloat16), w.to(torch::kBFloat16), {}).defined());
  CHECK(!th::small_linear(torch::randn({2, 16}), w.t().contiguous().t(), {}).defined());    // not contiguous
  CHECK(!th::small_linear(torch::randn({2, 16}).requires_grad_(), w, {}).defined());         // autograd records it
  {
    torch::NoGradGuard no_grad;
    CHECK(th::small_linear(torch::randn({2, 16}).requires_grad_(), w, {}).defined());
  }
}

// 4-bit decoding (linear_4bit inside a generation step): the fused kernel against dequantize-then-matmul.
TEST_CASE("fused 4-bit decoding products equal dequantize-then-matmul") {
  torch::manual_seed(23);
  th::SmallGemmScope decoding;
  struct Shape {
    int64_t rows, out, in, blocksize;
  };
  // 3 x 100 with blocks of 64 is not whole blocks per row: the tiled path, checked all the same
  for (const Shape s : {Shape{1, 96, 64, 64}, Shape{8, 300, 768, 64}, Shape{5, 77, 256, 128}, Shape{3, 40, 100, 64}, Shape{2, 513, 3072, 32}}) {
    for (bool dq : {false, true}) {
      for (auto type : {th::QuantType::NF4, th::QuantType::FP4}) {
        CAPTURE(s.rows);
        CAPTURE(s.in);
        CAPTURE(dq);
        auto q = th::quantize_4bit(torch::randn({s.out, s.in}) * 0.05, type, s.blocksize, dq);
        auto dense = th::dequantize_4bit(q, torch::kFloat32);
        auto x = torch::randn({s.rows, 1, s.in});
        auto bias = torch::randn({s.out});
        const bool fused = th::linear_4bit_small(x.reshape({s.rows, s.in}), q).defined();
        if (s.in % s.blocksize != 0) CHECK(!fused);
#if defined(__x86_64__)
        // with AVX-512F (unless turned off) the kernel must be the one tested here
        else if (__builtin_cpu_supports("avx512f") && std::getenv("TRANSFORMER_HEADS_Q4_FUSED") == nullptr) CHECK(fused);
#endif
        if (fused) {
          // one-hot rows pick single weights: they must be dequantize_4bit's floats bit for bit (block scales included)
          auto pick = torch::zeros({s.rows, s.in});
          std::vector<int64_t> cols;
          for (int64_t m = 0; m < s.rows; ++m) {
            cols.push_back((m * 37 + 5) % s.in);
            pick[m][cols.back()] = 1.0f;
          }
          auto got = th::linear_4bit_small(pick, q);
          CHECK(torch::equal(got, dense.index_select(1, torch::tensor(cols, torch::kLong)).t()));
        }
        // one dot product of `in` terms in another order (the weights are dequantize_4bit's floats)
        CHECK_REL(th_test::rel_diff(th::linear_4bit(x, q, bias), torch::linear(x, dense, bias)), s.in * th_test::kF32Eps);
        CHECK_REL(th_test::rel_diff(th::linear_4bit(x, q, {}), torch::linear(x, dense)), s.in * th_test::kF32Eps);
      }
    }
  }
  auto q = th::quantize_4bit(torch::randn({16, 64}), th::QuantType::NF4, 64, false);
  CHECK(!th::linear_4bit_small(torch::randn({th::kSmallGemmRows + 1, 64}), q).defined());
}
