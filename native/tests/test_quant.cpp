// 4-bit and 8-bit quantization against a Python reference written from the bitsandbytes spec
// (scripts/make_quant_fixtures.py): exact codes, packing, absmax, double-quantized absmax, dequantized values.
#include "doctest_torch.h"

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
