// Parity of the native backbones with (1) the TorchScript archive's own forward run through torch::jit and
// (2) the eager Python module's outputs dumped at export time; early exit; device handling.
#include "doctest_torch.h"

#include <vector>

#include "backbone.h"
#include "checkpoint.h"
#include "errors.h"
#include "test_helpers.h"

using th_test::fixture;
using th_test::max_diff;
using th_test::rel_diff;

namespace {

const std::vector<std::string> kFixtures = {"tiny-gpt2",         "tiny-llama",  "tiny-llama-linear", "tiny-llama-dynamic",
                                            "tiny-llama3",       "tiny-mistral", "tiny-qwen2"};
constexpr double kRtol = th_test::kForwardRtol;

std::vector<std::string> devices() {
  std::vector<std::string> d{"cpu"};
  if (torch::cuda::is_available()) d.push_back("cuda");
  return d;
}

std::vector<int64_t> all_layers(int64_t L) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i <= L; ++i) v.push_back(i);
  return v;
}

void check_parity(th::Backbone& model, th::TorchScriptModel& jit, const torch::Tensor& ids, const torch::Tensor& mask,
                  const std::string& what) {
  const int64_t L = model.num_layers();
  th::ForwardRequest req{ids, mask, all_layers(L), true};
  auto ours = model.forward(req);
  auto ref = jit.forward(ids, mask);
  REQUIRE(ref.hidden_states.size() == static_cast<size_t>(L + 1));
  for (int64_t i = 0; i <= L; ++i) {
    INFO(what << " hidden_states[" << i << "]");
    CHECK_REL(rel_diff(ours.hidden_states[i].second, ref.hidden_states[i], mask), kRtol);
  }
  INFO(what << " logits");
  CHECK_REL(rel_diff(ours.logits, ref.logits, mask), kRtol);
  CHECK(torch::isfinite(ours.logits).all().item<bool>());
}

}  // namespace

TEST_CASE("native forward matches the TorchScript module's own forward and the Python eager dump") {
  for (const auto& dev : devices()) {
    for (const auto& name : kFixtures) {
      CAPTURE(name);
      CAPTURE(dev);
      auto model = th::load_backbone(fixture(name + ".pt"), {dev, "float32"});
      th::TorchScriptModel jit(fixture(name + ".pt"));
      const int64_t V = model->config().vocab_size, L = model->num_layers();

      // Reference batch of the export: one full row, one right-padded, one left-padded.
      auto ref = th_test::read_safetensors(fixture(name + ".ref.safetensors"));
      auto ids = ref.at("input_ids"), mask = ref.at("attention_mask");
      check_parity(*model, jit, ids, mask, name + " padded");

      // Against the eager Python module's outputs (second, independent reference).
      auto ours = model->forward({ids, mask, all_layers(L), true});
      for (int64_t i = 0; i <= L; ++i) {
        INFO("python hidden_states[" << i << "]");
        CHECK_REL(rel_diff(ours.hidden_states[i].second, ref.at("hidden_states." + std::to_string(i)), mask), kRtol);
      }
      CHECK_REL(rel_diff(ours.logits, ref.at("logits"), mask), kRtol);

      // Without padding, and a longer sequence than the export's batch.
      auto gen = torch::Generator();
      auto ids2 = torch::randint(0, V, {2, 21}, torch::kLong);
      check_parity(*model, jit, ids2, torch::ones_like(ids2), name + " unpadded");
    }
  }
}

TEST_CASE("padding does not change the outputs at real tokens") {
  // A right-padded row must equal the same tokens run alone; a left-padded row too, since positions come from the mask.
  auto model = th::load_backbone(fixture("tiny-llama.pt"), {});
  auto ids = torch::randint(0, 101, {1, 6}, torch::kLong);
  auto alone = model->forward({ids, torch::ones_like(ids), {-1}, true});
  auto pad = torch::zeros({1, 3}, torch::kLong);
  auto right = torch::cat({ids, pad}, 1), left = torch::cat({pad, ids}, 1);
  auto rmask = torch::cat({torch::ones({1, 6}, torch::kLong), pad}, 1);
  auto lmask = torch::cat({pad, torch::ones({1, 6}, torch::kLong)}, 1);
  auto r = model->forward({right, rmask, {-1}, true});
  auto l = model->forward({left, lmask, {-1}, true});
  CHECK_REL(rel_diff(r.logits.narrow(1, 0, 6), alone.logits), kRtol);
  CHECK_REL(rel_diff(l.logits.narrow(1, 3, 6), alone.logits), kRtol);
}

TEST_CASE("early exit runs only the blocks up to the deepest requested layer") {
  auto model = th::load_backbone(fixture("tiny-gpt2.pt"), {});
  const int64_t L = model->num_layers();
  auto ids = torch::randint(0, 101, {2, 9}, torch::kLong);
  auto mask = torch::ones_like(ids);
  auto full = model->forward({ids, mask, all_layers(L), false});
  for (int64_t k = 0; k <= L; ++k) {
    const uint64_t before = model->blocks_run();
    auto part = model->forward({ids, mask, {k}, false});
    CHECK(model->blocks_run() - before == static_cast<uint64_t>(k));
    // The same blocks on the same input with the same threads: bit-identical, whatever the machine.
    CHECK(max_diff(part.hidden_states[0].second, full.hidden_states[k].second) == 0.0);
  }
  // Negative indices are Python-style: -1 is the final-norm output, -(L+1) the embeddings.
  auto neg = model->forward({ids, mask, {-1, -(L + 1), -2}, false});
  CHECK(max_diff(neg.hidden_states[0].second, full.hidden_states[L].second) == 0.0);
  CHECK(max_diff(neg.hidden_states[1].second, full.hidden_states[0].second) == 0.0);
  CHECK(max_diff(neg.hidden_states[2].second, full.hidden_states[L - 1].second) == 0.0);
  // hs[L] is normed, hs[L-1] is a raw block output: they must differ (catches an off-by-one in the indexing).
  CHECK(rel_diff(full.hidden_states[L].second, full.hidden_states[L - 1].second) > 1e-2);
}

TEST_CASE("no autograd graph is built by a forward") {
  auto model = th::load_backbone(fixture("tiny-llama.pt"), {});
  auto ids = torch::randint(0, 101, {1, 5}, torch::kLong);
  auto out = model->forward({ids, {}, {2}, true});
  CHECK_FALSE(out.hidden_states[0].second.requires_grad());
  CHECK_FALSE(out.logits.requires_grad());
}

TEST_CASE("bfloat16 model stays close to float32") {
  auto f32 = th::load_backbone(fixture("tiny-llama.pt"), {"cpu", "float32"});
  auto bf16 = th::load_backbone(fixture("tiny-llama.pt"), {"cpu", "bfloat16"});
  CHECK((bf16->dtype() == torch::kBFloat16));
  CHECK(bf16->parameter_bytes() * 2 == f32->parameter_bytes());
  auto ids = torch::randint(0, 101, {2, 7}, torch::kLong);
  auto a = f32->forward({ids, {}, {-1}, false}).hidden_states[0].second;
  auto b = bf16->forward({ids, {}, {-1}, false}).hidden_states[0].second;
  CHECK((b.scalar_type() == torch::kBFloat16));
  const double rel = ((a - b.to(torch::kFloat32)).norm() / a.norm()).item<double>();
  INFO("bf16 relative error " << rel);
  CHECK(rel < 0.05);
}
