// LLM.int8() against a Python reference written from the algorithm's description (scripts/make_parity_fixtures.py,
// docs/formats-llm-int8.md): bitsandbytes' int8 weight format, the outlier columns, and the mixed int8 / float
// product, with and without outliers, at the default threshold (6.0) and at 0 (no decomposition).
#include "doctest_torch.h"

#include "quant.h"
#include "test_helpers.h"

using th_test::fixture;

TEST_CASE("LLM.int8 weight codes and row scales equal bitsandbytes' Int8Params") {
  auto ref = th_test::read_safetensors(fixture("int8-ref.safetensors"));
  th::Quant8 q = th::quantize_8bit(ref.at("weight"));
  // A max and a round of the same float32 products: exact.
  CHECK(torch::equal(q.q.to(torch::kLong), ref.at("cb")));
  CHECK(th_test::max_diff(q.scale, ref.at("scb")) == 0.0);
}

TEST_CASE("LLM.int8 outlier columns: |x| >= threshold in any row") {
  auto ref = th_test::read_safetensors(fixture("int8-ref.safetensors"));
  const torch::Tensor x = ref.at("x_outliers");
  auto qa = th::quantize_activations_int8(x.reshape({-1, x.size(-1)}), th::kLlmInt8Threshold);
  REQUIRE(qa.outlier_cols.defined());
  CHECK(torch::equal(qa.outlier_cols.nonzero().view({-1}), ref.at("outlier_cols")));
  // Those columns hold no int8 code; no other column does either at threshold 0 of a plain input.
  CHECK(qa.codes.index_select(1, ref.at("outlier_cols")).abs().sum().item<int64_t>() == 0);
  CHECK_FALSE(th::quantize_activations_int8(ref.at("x_plain").reshape({-1, x.size(-1)}), th::kLlmInt8Threshold).outlier_cols.defined());
  CHECK_FALSE(th::quantize_activations_int8(x.reshape({-1, x.size(-1)}), 0.0).outlier_cols.defined());
}

TEST_CASE("LLM.int8 matmul equals the Python reference") {
  auto ref = th_test::read_safetensors(fixture("int8-ref.safetensors"));
  th::Quant8 w = th::quantize_8bit(ref.at("weight"));
  const torch::Tensor bias = ref.at("bias");
  for (const std::string name : {"plain", "outliers"}) {
    const torch::Tensor x = ref.at("x_" + name);
    for (double thr : {6.0, 0.0}) {
      CAPTURE(name);
      CAPTURE(thr);
      auto y = th::llm_int8_matmul(x, w, thr, bias);
      CHECK(y.sizes() == ref.at("y_" + name + "_t" + std::to_string(static_cast<int>(thr))).sizes());
      // The int32 products are exact on both sides and dequantized by the same float32 operations; only the outlier
      // columns' float addmm (96 terms at most) may sum in another order: 1e-5 of the output's magnitude (the
      // issue's bound), about 80 float32 eps.
      CHECK_REL(th_test::rel_diff(y, ref.at("y_" + name + "_t" + std::to_string(static_cast<int>(thr)))), 1e-5);
    }
    CHECK_REL(th_test::rel_diff(th::llm_int8_matmul(x, w, 6.0, torch::Tensor()), ref.at("y_" + name + "_nobias")), 1e-5);
  }
}

TEST_CASE("LLM.int8 keeps outlier features: closer to the float product than all-int8") {
  auto ref = th_test::read_safetensors(fixture("int8-ref.safetensors"));
  th::Quant8 w = th::quantize_8bit(ref.at("weight"));
  const torch::Tensor x = ref.at("x_outliers");
  const torch::Tensor exact = torch::nn::functional::linear(x, th::dequantize_8bit(w, torch::kFloat32));
  const double mixed = th_test::rel_diff(th::llm_int8_matmul(x, w, 6.0, torch::Tensor()), exact);
  const double all8 = th_test::rel_diff(th::llm_int8_matmul(x, w, 0.0, torch::Tensor()), exact);
  MESSAGE("relative error against the dequantized-weight product: threshold 6 " << mixed << ", threshold 0 " << all8);
  // An outlier of 30 stretches its row's int8 step 8x at threshold 0; the decomposition keeps the others' steps.
  CHECK(mixed < all8 / 2);
  // Without outliers both thresholds compute the same int8 product.
  const torch::Tensor p = ref.at("x_plain");
  CHECK(th_test::max_diff(th::llm_int8_matmul(p, w, 6.0, torch::Tensor()), th::llm_int8_matmul(p, w, 0.0, torch::Tensor())) == 0.0);
}
