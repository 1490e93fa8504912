// Non-finite losses, labels and gradients: a diverged model or bad label must never be reported as a finite loss,
// and a step whose gradients are non-finite must not touch the weights. Head size bounds.
#include "doctest_torch.h"

#include <chrono>
#include <functional>
#include <cmath>
#include <limits>

#include "backbone.h"
#include "errors.h"
#include "headed_model.h"
#include "losses.h"
#include "test_helpers.h"

using th_test::fixture;

namespace {

th::HeadConfig head(const std::string& name, int64_t outputs, th::LossFn loss, bool regression, bool sequence) {
  th::HeadConfig c;
  c.name = name;
  c.target = name;
  c.in_size = 64;
  c.num_outputs = outputs;
  c.loss_fct = loss;
  c.is_regression = regression;
  c.pred_for_sequence = sequence;
  c.ignore_pads = false;
  return c;
}

std::unique_ptr<th::HeadedModel> tiny_model() {
  return std::make_unique<th::HeadedModel>(
      th::load_backbone(fixture("tiny-gpt2.pt"), {}),
      std::vector<th::HeadConfig>{head("cls", 3, th::LossFn::CrossEntropy, false, true), head("reg", 1, th::LossFn::MSE, true, false),
                                  head("tok", 5, th::LossFn::CrossEntropy, false, false)},
      th::HeadedOptions{});
}

const torch::Tensor kIds = torch::tensor({{1, 2, 3, 4}, {5, 6, 7, 8}}, torch::kLong);
const torch::Tensor kMask = torch::ones({2, 4}, torch::kLong);

double loss_of(const th::HeadedOutput& o, const std::string& name) {
  for (const auto& [k, v] : o.loss_by_head) if (k == name) return v.item<double>();
  FAIL("no loss for " << name);
  return 0;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const th::Error& e) {
    CHECK(e.code() == "ERR_TH_VALUE");
    return e.what();
  }
  FAIL("no error");
  return "";
}

}  // namespace

TEST_CASE("a head whose every target is ignored gives an exact 0; a NaN from the weights stays NaN") {
  auto m = tiny_model();
  th::Labels all_ignored{{"tok", torch::full({2, 4}, -100, torch::kLong)}};
  auto out = m->forward(kIds, kMask, all_ignored, false);
  CHECK(loss_of(out, "tok") == 0.0);
  CHECK(out.loss.item<double>() == 0.0);
  // Still part of the graph (Python's zero keeps backward() working) and its gradient is zero.
  auto st = m->train_step(kIds, kMask, all_ignored, 1.0);
  CHECK(st.loss.item<double>() == 0.0);

  // NaN weights: with real targets the loss is NaN, in the head's loss and in the total.
  auto w = m->head_state("cls");
  std::map<std::string, torch::Tensor> nan_state;
  for (auto& [k, t] : w) nan_state[k] = torch::full_like(t, std::numeric_limits<float>::quiet_NaN());
  m->load_head_state("cls", nan_state);
  th::Labels cls{{"cls", torch::tensor({0, 2}, torch::kLong)}};
  auto nan_out = m->forward(kIds, kMask, cls, false);
  CHECK(std::isnan(loss_of(nan_out, "cls")));
  CHECK(std::isnan(nan_out.loss.item<double>()));
  // All targets ignored: 0 even though the predictions are NaN.
  auto ign = m->forward(kIds, kMask, {{"cls", torch::tensor({-100, -100}, torch::kLong)}}, false);
  CHECK(loss_of(ign, "cls") == 0.0);
}

TEST_CASE("a regression loss that overflows float32 is inf, not 0") {
  auto m = tiny_model();
  // 1e18 is accepted; a prediction near it squares to 1e36, finite. Make the prediction itself huge instead: scale the
  // head's weight so the output overflows when squared.
  auto st = m->head_state("reg");
  std::map<std::string, torch::Tensor> big;
  for (auto& [k, t] : st) big[k] = torch::full_like(t, 1e30f);
  m->load_head_state("reg", big);
  auto out = m->forward(kIds, kMask, {{"reg", torch::zeros({2, 4})}}, false);
  CHECK(std::isinf(loss_of(out, "reg")));
  CHECK(std::isinf(out.loss.item<double>()));
}

TEST_CASE("non-finite and oversized labels are refused with the head, the column and the first bad index") {
  auto m = tiny_model();
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  auto reg = [&](float a, float b) {
    return [&m, a, b] { m->forward(kIds, kMask, {{"reg", torch::tensor({{0.f, 1.f, a, 2.f}, {b, 0.f, 0.f, 0.f}})}}, false); };
  };
  CHECK(message_of(reg(nan, 0)).find("labels 'reg' for head 'reg' hold NaN at index 2") != std::string::npos);
  CHECK(message_of(reg(0, inf)).find("hold Infinity at index 4") != std::string::npos);
  CHECK(message_of(reg(0, -inf)).find("hold -Infinity at index 4") != std::string::npos);
  // The value is printed with 9 significant digits; its last digits depend on how it reached the check (float or
  // double): only its exponent is pinned.
  CHECK(message_of(reg(3e38f, 0)).find("e+38 at index 2") != std::string::npos);
  CHECK(message_of(reg(0, -2e18f)).find("magnitude at most 1e18") != std::string::npos);
  m->forward(kIds, kMask, {{"reg", torch::tensor({{0.f, 1e18f, -1e18f, 2.f}, {0.f, 0.f, 0.f, 0.f}})}}, false);  // the bound itself
  // Float class indices: NaN refused as a value error too.
  CHECK(message_of([&] { m->forward(kIds, kMask, {{"cls", torch::tensor({0.f, nan})}}, false); }).find("hold NaN at index 1") !=
        std::string::npos);
}

TEST_CASE("an optimizer step with a non-finite loss or gradient leaves the weights and AdamW untouched") {
  auto m = tiny_model();
  m->configure_optimizer({1e-2});
  th::Labels ok{{"cls", torch::tensor({0, 2}, torch::kLong)}};
  m->train_step(kIds, kMask, ok, 1.0);
  CHECK(std::isfinite(m->optimizer_step(1e-2)));
  auto before = m->head_state("cls");

  // A NaN in the graph: a NaN head weight on 'reg' poisons the total; the step is refused even for 'cls'.
  auto st = m->head_state("reg");
  std::map<std::string, torch::Tensor> nan_state;
  for (auto& [k, t] : st) nan_state[k] = torch::full_like(t, std::numeric_limits<float>::quiet_NaN());
  m->load_head_state("reg", nan_state);
  auto out = m->train_step(kIds, kMask, {{"cls", torch::tensor({0, 2}, torch::kLong)}, {"reg", torch::zeros({2, 4})}}, 1.0);
  CHECK(std::isnan(out.loss.item<double>()));
  CHECK(std::isnan(m->optimizer_step(1e-2)));
  auto after = m->head_state("cls");
  for (size_t i = 0; i < before.size(); ++i) CHECK(torch::equal(before[i].second, after[i].second));
  CHECK(m->head_grads("cls").empty());  // dropped

  // The next good step applies normally (the moments were not poisoned).
  m->train_step(kIds, kMask, ok, 1.0);
  CHECK(std::isfinite(m->optimizer_step(1e-2)));
  auto later = m->head_state("cls");
  CHECK(torch::isfinite(later[0].second).all().item<bool>());
  CHECK(!torch::equal(later[0].second, after[0].second));
}

TEST_CASE("the optimizer refuses a non-finite gradient norm") {
  auto w = torch::ones({2, 2}).requires_grad_(true);
  th::Optimizer opt;
  opt.configure({w}, {});
  w.mutable_grad() = torch::full({2, 2}, std::numeric_limits<float>::infinity());
  CHECK(std::isinf(opt.step(1.0)));
  CHECK(torch::equal(w.detach(), torch::ones({2, 2})));
  CHECK(!w.grad().defined());
  w.mutable_grad() = torch::ones({2, 2});
  CHECK(opt.step(0.1) == doctest::Approx(2.0));  // sqrt(4 * 1): exact
  CHECK(w.detach().lt(1.0).all().item<bool>());
}

TEST_CASE("head sizes are bounded before anything is allocated") {
  auto msg = [](const std::string& json) {
    try {
      th::parse_head_configs(json);
    } catch (const th::ConfigError& e) {
      return std::string(e.what());
    }
    FAIL("accepted " << json);
    return std::string();
  };
  const auto t0 = std::chrono::steady_clock::now();
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"num_layers":1000000,"hidden_size":8}])")
            .find("head 'a': field 'num_layers' must be from 1 to 64, got 1000000") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"num_layers":1e6}])").find("'num_layers' must be an integer, got 1000000.0") !=
        std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"num_layers":1.5}])").find("must be an integer") != std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"num_layers":-3}])").find("must be from 1 to 64") != std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":18446744073709551615}])").find("'num_outputs' must be from 1 to 1048576") !=
        std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":2097152,"num_outputs":2}])").find("'in_size' must be from 1 to 1048576") != std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"num_layers":3,"hidden_size":1048576}])").find("parameters is more than") !=
        std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"loss_fct":7}])").find("'loss_fct' must be a string or null, got 7") !=
        std::string::npos);
  CHECK(msg(R"([{"name":"a","in_size":64,"num_outputs":2,"hidden_size":[[[[1]]]]}])").find("must be an integer") != std::string::npos);
  // The largest accepted head parses (nothing is allocated by parsing).
  CHECK(th::parse_head_configs(R"([{"name":"a","in_size":8192,"num_outputs":262144}])").size() == 1);
  CHECK(th::head_parameter_count(th::parse_head_configs(R"([{"name":"a","in_size":4,"num_outputs":3,"num_layers":3,"hidden_size":5,"output_bias":true}])")[0], 3) ==
        4 * 5 + 5 + 5 * 5 + 5 + 5 * 3 + 3);
}
