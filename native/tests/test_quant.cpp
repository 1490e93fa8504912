// 4-bit and 8-bit quantization against a Python reference written from the bitsandbytes spec
// (scripts/make_quant_fixtures.py): exact codes, packing, absmax, double-quantized absmax, dequantized values.
#include "doctest_torch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "errors.h"
#include "quant.h"
#include "test_helpers.h"

using th_test::fixture;

TEST_CASE("the 8-bit dynamic map equals bitsandbytes' create_dynamic_map") {
  auto ref = th_test::read_safetensors(fixture("quant-ref.safetensors"));
  auto dm = th::dynamic_map();
  REQUIRE(dm.numel() == 256);
  // The same float32 linspace, mean and scaling in the same libtorch as the Python reference: bit-identical.
  CHECK(th_test::max_diff(dm, ref.at("dynamic_map")) == 0.0);
  CHECK_REL(th_test::rel_err(dm[0].item<float>(), -0.99296875), 2 * th_test::kF32Eps);  // (0.9859375 + 1) / 2, rounded
  CHECK(dm[127].item<float>() == 0.0f);
  CHECK(dm[255].item<float>() == 1.0f);
}

TEST_CASE("NF4 / FP4 quantization matches the reference exactly") {
  auto ref = th_test::read_safetensors(fixture("quant-ref.safetensors"));
  for (const std::string name : {"w", "odd", "big"}) {
    for (const auto& [kind, type] : std::vector<std::pair<std::string, th::QuantType>>{{"nf4", th::QuantType::NF4}, {"fp4", th::QuantType::FP4}}) {
      for (bool dq : {false, true}) {
        const std::string p = name + "." + kind + "." + (dq ? "dq" : "plain") + ".";
        CAPTURE(p);
        auto q = th::quantize_4bit(ref.at(name), type, 64, dq);
        // Codes, absmax (a max, no rounding) and the offset (absmax.mean(): the same ATen reduction over the same
        // float32 values as the Python reference, on the same machine) are exact; so the 8-bit codes of the offset
        // absmax are too. Dequantized values are one product (plus the offset) of exact factors: a few eps.
        CHECK(torch::equal(th::unpack_codes(q).to(torch::kLong), ref.at(p + "codes")));
        CHECK(torch::equal(q.packed.to(torch::kLong), ref.at(p + "packed")));
        if (dq) {
          CHECK(torch::equal(q.qabsmax.to(torch::kLong), ref.at(p + "qabsmax")));
          CHECK(th_test::max_diff(q.absmax2, ref.at(p + "absmax2")) == 0.0);
          CHECK(q.offset == ref.at(p + "offset").item<double>());
          // double-quantized absmax: within the 8-bit map's resolution of the true absmax
          auto used = th::block_absmax(q);
          CHECK_REL(th_test::rel_diff(used, ref.at(p + "absmax_dq")), 4 * th_test::kF32Eps);
          const double res = (q.absmax2.max() * 0.0315).item<double>();  // widest gap of the dynamic map near 1 is ~0.03
          CHECK(th_test::max_diff(used, ref.at(p + "absmax")) <= res);
        } else {
          CHECK(th_test::max_diff(q.absmax, ref.at(p + "absmax")) == 0.0);
        }
        CHECK_REL(th_test::rel_diff(th::dequantize_4bit(q, torch::kFloat32), ref.at(p + "dequant")), 4 * th_test::kF32Eps);
      }
    }
  }
}

TEST_CASE("packing: first element in the high nibble, odd sizes padded") {
  auto w = torch::tensor({{1.0f, -1.0f, 0.0f}});
  auto q = th::quantize_4bit(w, th::QuantType::NF4, 64, false);
  REQUIRE(q.packed.numel() == 2);
  CHECK(q.packed[0].item<int>() == ((15 << 4) | 0));  // 1.0 -> code 15, -1.0 -> code 0
  CHECK(q.packed[1].item<int>() == (7 << 4));         // 0.0 -> code 7, then the padding nibble 0
}

TEST_CASE("NF4 reconstruction error of a N(0,1) matrix") {
  torch::manual_seed(0);
  auto w = torch::randn({512, 512});
  auto q = th::quantize_4bit(w, th::QuantType::NF4, 64, true);
  const double rel = ((th::dequantize_4bit(q, torch::kFloat32) - w).norm() / w.norm()).item<double>();
  MESSAGE("NF4 + double quant relative error " << rel << ", bits per weight " << 8.0 * q.bytes() / w.numel());
  // NF4 on normal data: RMS error about 0.1 of the RMS value (block max ~2.4 sigma, 16 levels); the bound leaves margin.
  CHECK(rel < 0.12);
  CHECK(8.0 * q.bytes() / w.numel() < 4.2);
  auto q8 = th::quantize_8bit(w);
  const double rel8 = ((th::dequantize_8bit(q8, torch::kFloat32) - w).norm() / w.norm()).item<double>();
  CHECK(rel8 < 0.01);
}

TEST_CASE("bad blocksize") {
  CHECK_THROWS_AS(th::quantize_4bit(torch::randn({4, 64}), th::QuantType::NF4, 48, false), th::ValueError);
  CHECK_THROWS_AS(th::quantize_4bit(torch::randn({4, 64}), th::QuantType::NF4, 8192, false), th::ValueError);
}

// The tiled projections against the whole-weight reference (dequantize_4bit, then one matmul). Shapes cover odd
// widths (a row starts on a low nibble and 4-bit blocks straddle rows), ragged last tiles, one-row tiles and tiles
// wider than the weight; the tile values themselves must be bit-identical to the reference's rows.
TEST_CASE("tiled 4-bit projections equal dequantize-then-matmul") {
  torch::manual_seed(3);
  struct Shape {
    int64_t out, in, blocksize;
  };
  for (const Shape s : {Shape{37, 45, 32}, Shape{96, 130, 64}, Shape{300, 64, 128}, Shape{5, 3, 64}, Shape{513, 96, 64}}) {
    for (bool dq : {false, true}) {
      for (auto type : {th::QuantType::NF4, th::QuantType::FP4}) {
        auto w = torch::randn({s.out, s.in}) * 0.05;
        auto q = th::quantize_4bit(w, type, s.blocksize, dq);
        auto dense = th::dequantize_4bit(q, torch::kFloat32);
        auto absmax = th::block_absmax(q).contiguous();
        for (int64_t tile : {int64_t{1}, int64_t{7}, int64_t{64}, th::kQuantTileRows, int64_t{100000}}) {
          CAPTURE(s.out);
          CAPTURE(s.in);
          CAPTURE(dq);
          CAPTURE(tile);
          // rows [r0, r1) of a ragged split, bit for bit
          const int64_t r0 = std::min<int64_t>(s.out - 1, tile), r1 = std::min<int64_t>(s.out, r0 + tile);
          auto rows = torch::empty({r1 - r0, s.in});
          th::dequantize_4bit_rows(q, absmax, r0, r1, rows);
          CHECK(torch::equal(rows, dense.narrow(0, r0, r1 - r0)));
          auto rows_bf = torch::empty({r1 - r0, s.in}, torch::kBFloat16);
          th::dequantize_4bit_rows(q, absmax, r0, r1, rows_bf);
          CHECK(torch::equal(rows_bf, th::dequantize_4bit(q, torch::kBFloat16).narrow(0, r0, r1 - r0)));

          // float32: one dot product of `in` (forward) or `out` (grad-input) terms summed in another order
          auto x = torch::randn({2, 3, s.in});
          auto bias = torch::randn({s.out});
          auto y = th::linear_4bit(x, q, bias, tile);
          CHECK_REL(th_test::rel_diff(y, torch::linear(x, dense, bias)), s.in * th_test::kF32Eps);
          CHECK_REL(th_test::rel_diff(th::linear_4bit(x, q, torch::Tensor(), tile), torch::linear(x, dense)), s.in * th_test::kF32Eps);
          auto g = torch::randn({2, 3, s.out});
          auto gx = th::linear_4bit_grad_input(g, q, tile);
          CHECK_REL(th_test::rel_diff(gx, torch::matmul(g, dense)), s.out * th_test::kF32Eps);

          // bfloat16 (8 significant bits): products rounded once to bfloat16 either way; the grad-input sums its
          // tiles in float32, so it differs from one bfloat16 matmul by about one rounding of the result.
          const double bf_eps = 1.0 / 256;
          auto xb = x.to(torch::kBFloat16);
          auto dense_b = th::dequantize_4bit(q, torch::kBFloat16);
          CHECK_REL(th_test::rel_diff(th::linear_4bit(xb, q, torch::Tensor(), tile), torch::linear(xb, dense_b)), 4 * bf_eps);
          auto gb = g.to(torch::kBFloat16);
          CHECK_REL(th_test::rel_diff(th::linear_4bit_grad_input(gb, q, tile), torch::matmul(gb, dense_b)), 4 * bf_eps);
        }
      }
    }
  }
}

TEST_CASE("tiled 4-bit projection errors") {
  auto q = th::quantize_4bit(torch::randn({8, 16}), th::QuantType::NF4, 64, false);
  CHECK_THROWS(th::linear_4bit(torch::randn({2, 15}), q, torch::Tensor()));
  CHECK_THROWS(th::linear_4bit_grad_input(torch::randn({2, 7}), q));
  auto absmax = th::block_absmax(q);
  auto bad = torch::empty({3, 16});
  CHECK_THROWS(th::dequantize_4bit_rows(q, absmax, 0, 4, bad));
  CHECK_THROWS(th::dequantize_4bit_rows(q, absmax, 6, 9, bad));
}

// Not a test (skipped unless asked for): the measurement kQuantTileRows was chosen from. Forward and grad-input of the
// GPT-2-small MLP projection (3072 x 768, 1024 tokens) and of TinyLlama's gate projection (5632 x 2048, 256 tokens)
// with each tile height against the whole-weight path; the transient is the tile buffer (tile x in floats).
//   build/th_core_tests -tc='bench: 4-bit tile rows' --no-skip
TEST_CASE("bench: 4-bit tile rows" * doctest::skip()) {
  struct Case {
    const char* what;
    int64_t out, in, tokens;
  };
  for (const Case c : {Case{"gpt2-small c_fc", 3072, 768, 1024}, Case{"llama-1b gate_proj", 5632, 2048, 256}}) {
    auto q = th::quantize_4bit(torch::randn({c.out, c.in}) * 0.02, th::QuantType::NF4, 64, true);
    auto x = torch::randn({c.tokens, c.in}), g = torch::randn({c.tokens, c.out});
    auto time_ms = [](auto&& fn) {
      fn();
      std::vector<double> t;
      for (int i = 0; i < 5; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        fn();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      std::sort(t.begin(), t.end());
      return t[2];
    };
    const double dense_f = time_ms([&] { torch::linear(x, th::dequantize_4bit(q, torch::kFloat32)); });
    const double dense_b = time_ms([&] { torch::matmul(g, th::dequantize_4bit(q, torch::kFloat32)); });
    std::printf("%s: whole weight  fwd %.1f ms  grad-input %.1f ms  transient %.1f MiB (+ int64 codes %.1f MiB)\n", c.what, dense_f,
                dense_b, c.out * c.in * 4 / 1048576.0, c.out * c.in * 4 / 1048576.0);
    for (int64_t tile : {32, 64, 128, 256, 512, 1024}) {
      const double f = time_ms([&] { th::linear_4bit(x, q, torch::Tensor(), tile); });
      const double b = time_ms([&] { th::linear_4bit_grad_input(g, q, tile); });
      std::printf("%s: tile %4lld rows  fwd %.1f ms  grad-input %.1f ms  transient %.2f MiB\n", c.what, static_cast<long long>(tile), f, b,
                  tile * c.in * 4 / 1048576.0);
    }
  }
}

TEST_CASE("4-bit embedding lookup equals the dequantized table's rows") {
  torch::manual_seed(5);
  struct Shape {
    int64_t rows, cols, blocksize;
  };
  // 96 x 48 with blocks of 32 straddles rows: the whole-table path
  for (const Shape s : {Shape{300, 128, 64}, Shape{1000, 64, 64}, Shape{77, 256, 128}, Shape{96, 48, 32}}) {
    for (bool dq : {false, true}) {
      for (auto type : {th::QuantType::NF4, th::QuantType::FP4}) {
        CAPTURE(s.rows);
        CAPTURE(dq);
        auto q = th::quantize_4bit(torch::randn({s.rows, s.cols}), type, s.blocksize, dq);
        auto ids = torch::randint(0, s.rows, {3, 5}, torch::kLong);
        ids[0][0] = s.rows - 1;  // the last row (and, with double quantization, the last absmax group)
        auto got = th::embedding_4bit(q, ids, torch::kFloat32);
        auto want = th::dequantize_4bit(q, torch::kFloat32).index_select(0, ids.reshape({-1})).view({3, 5, s.cols});
        CHECK(torch::equal(got, want));
        CHECK(torch::equal(th::embedding_4bit(q, ids, torch::kBFloat16), want.to(torch::kBFloat16)));
      }
    }
  }
  auto q = th::quantize_4bit(torch::randn({10, 64}), th::QuantType::NF4, 64, false);
  CHECK_THROWS(th::embedding_4bit(q, torch::tensor({10}, torch::kLong), torch::kFloat32));
}

// quantize_4bit works through chunks of about a million values (and the double quantization's nearest-code search 64
// blocks at a time) to bound its temporaries. Reference: the same weight quantized in row slices small enough to be
// one chunk each, the path the code-for-code tests above check against bitsandbytes' algorithm.
TEST_CASE("quantizing in chunks equals quantizing slice by slice") {
  torch::manual_seed(11);
  auto w = torch::randn({2100, 1000}) * 0.02;  // 2.1M values: three chunks; 32,812.5 blocks of 64: a ragged last block
  for (auto type : {th::QuantType::NF4, th::QuantType::FP4}) {
    auto whole = th::quantize_4bit(w, type, 64, false);
    std::vector<torch::Tensor> packed, absmax;
    for (int64_t r = 0; r < 2100; r += 400) {  // 400 rows = 6,250 whole blocks; the last slice ends on the ragged one
      auto part = th::quantize_4bit(w.narrow(0, r, std::min<int64_t>(400, 2100 - r)), type, 64, false);
      packed.push_back(part.packed);
      absmax.push_back(part.absmax);
    }
    CHECK(torch::equal(whole.packed, torch::cat(packed)));
    CHECK(torch::equal(whole.absmax, torch::cat(absmax)));
  }
  auto x = torch::randn({300 * 256 + 77});  // 301 blocks of 256, the last one ragged
  auto [codes, scales] = th::quantize_blockwise_8bit(x, 256);
  std::vector<torch::Tensor> c, s;
  for (int64_t e = 0; e < x.numel(); e += 60 * 256) {
    auto [pc, ps] = th::quantize_blockwise_8bit(x.narrow(0, e, std::min<int64_t>(60 * 256, x.numel() - e)), 256);
    c.push_back(pc);
    s.push_back(ps);
  }
  CHECK(torch::equal(codes, torch::cat(c)));
  CHECK(torch::equal(scales, torch::cat(s)));
}
