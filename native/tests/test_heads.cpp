// Head losses and gradients against PyTorch autograd (fixtures from scripts/make_head_fixtures.py), so the core can
// be checked without Node, on CUDA too.
#include "doctest_torch.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "backbone.h"
#include "errors.h"
#include "headed_model.h"
#include "losses.h"
#include "test_helpers.h"

using th_test::fixture;

namespace {

using th_test::kGradRtol;
using th_test::kLossRtol;

std::vector<std::string> devices() {
  std::vector<std::string> d{"cpu"};
  if (torch::cuda::is_available()) d.push_back("cuda");
  return d;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "missing " << path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("head losses and gradients match PyTorch autograd") {
  for (const std::string dir : {"heads-gpt2", "heads-llama"}) {
    for (const auto& dev : devices()) {
      CAPTURE(dir);
      CAPTURE(dev);
      auto cfg_obj = nlohmann::json::parse(read_text(fixture(dir + "/head_configs.json")));
      nlohmann::json arr = nlohmann::json::array();
      for (auto& [k, v] : cfg_obj.items()) arr.push_back(v);
      th::HeadedModel model(th::load_backbone(fixture(dir + "/model.pt"), {dev, "float32"}), th::parse_head_configs(arr.dump()), {});
      for (const auto& h : model.heads()) {
        if (h.is_lm_head()) continue;
        auto st = th_test::read_safetensors(fixture(dir + "/" + h.config().name + ".safetensors"));
        model.load_head_state(h.config().name, {st.begin(), st.end()});
      }
      auto batch = th_test::read_safetensors(fixture(dir + "/batch.safetensors"));
      auto exp = th_test::read_safetensors(fixture(dir + "/expected.safetensors"));
      th::Labels labels;
      for (auto& [k, v] : batch) if (k.rfind("label.", 0) == 0) labels[k.substr(6)] = v;

      auto out = model.forward(batch.at("input_ids"), batch.at("attention_mask"), labels, false);
      std::map<std::string, double> weight;
      for (const auto& h : model.heads()) weight[h.config().name] = h.config().loss_weight;
      int compared = 0;
      std::vector<double> weighted;  // w_i * loss_i, the terms of the total
      for (const auto& [name, loss] : out.loss_by_head) {
        const double got = loss.item<double>(), want = exp.at("loss." + name).item<double>();
        INFO(name << ": " << got << " vs " << want);
        CHECK_REL(th_test::rel_err(got, want), kLossRtol);
        weighted.push_back(got * weight.at(name));
        ++compared;
      }
      CHECK(compared == 11);
      // Each term may be off by kLossRtol of itself, and both sides add 11 float32 terms in their own order.
      CHECK_REL(th_test::sum_rel_err(out.loss.item<double>(), exp.at("loss").item<double>(), weighted),
                kLossRtol + 12 * th_test::kF32Eps);

      model.train_step(batch.at("input_ids"), batch.at("attention_mask"), labels, 1.0);
      int grads = 0;
      for (const auto& h : model.heads()) {
        for (const auto& [key, g] : model.head_grads(h.config().name)) {
          const auto& ref = exp.at("grad." + h.config().name + "." + key);
          INFO(h.config().name << "." << key);
          CHECK_REL(th_test::rel_diff(g, ref), kGradRtol);
          ++grads;
        }
      }
      CHECK(grads > 10);
      CHECK(model.backbone_grad_norm() == 0.0);
    }
  }
}

TEST_CASE("loss functions on known values") {
  auto logits = torch::tensor({{2.0f, 0.0f}, {0.0f, 0.0f}});
  // cross entropy: row 0 target 0 -> log(1 + e^-2); row 1 ignored (-100)
  auto ce = th::compute_loss(th::LossFn::CrossEntropy, logits, torch::tensor({0, -100}));
  // float32 log_softmax: logsumexp (~2.13, a few eps of it) minus 2 leaves 0.127, so the relative error grows by
  // 2.13 / 0.127 ~ 17: bound 64 eps.
  CHECK_REL(th_test::rel_err(ce.item<double>(), std::log1p(std::exp(-2.0))), 64 * th_test::kF32Eps);
  // Squares and means of small integers are exact in float32.
  auto mse = th::compute_loss(th::LossFn::MSE, torch::tensor({1.0f, 3.0f}), torch::tensor({0.0f, 1.0f}));
  CHECK(mse.item<double>() == 2.5);
  auto masked = th::compute_loss(th::LossFn::MaskedMSE, torch::tensor({{1.0f}, {3.0f}}), torch::tensor({{0.0f}, {-100.0f}}));
  CHECK(masked.item<double>() == 1.0);
  auto bcel = th::compute_loss(th::LossFn::BCEWithLogits, torch::tensor({0.0f}), torch::tensor({1.0f}));
  CHECK_REL(th_test::rel_err(bcel.item<double>(), std::log(2.0)), 4 * th_test::kF32Eps);  // one rounded log
}

TEST_CASE("head config errors") {
  CHECK_THROWS_AS(th::parse_head_configs(R"([{"name":"a","in_size":4,"num_outputs":2,"is_causal_lm":true,"pred_for_sequence":true}])"), th::ConfigError);
  CHECK_THROWS_AS(th::parse_head_configs(R"([{"name":"a","in_size":4,"num_outputs":2,"loss_fct":"hinge"}])"), th::ConfigError);
  CHECK_THROWS_AS(th::parse_head_configs(R"([{"name":"a","in_size":4,"num_outputs":2,"num_layers":0}])"), th::ConfigError);
  CHECK_THROWS_AS(th::parse_head_configs("{}"), th::ConfigError);
  auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});
  CHECK_THROWS_AS(th::HeadedModel(bb, th::parse_head_configs(R"([{"name":"a","in_size":32,"num_outputs":2}])"), {}), th::ConfigError);
}
