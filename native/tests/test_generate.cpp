// Generation: the KV-cache path against full recomputation each step (independent of the cache code), the first
// step against the TorchScript archive's own forward, per-step head outputs against a forward of the whole
// sequence, the logits processors against hand-computed distributions, and the error paths.
#include "doctest_torch.h"

#include <cmath>

#include "backbone.h"
#include "errors.h"
#include "generate.h"
#include "headed_model.h"
#include "test_helpers.h"

using th_test::fixture;
using th_test::rel_diff;

namespace {

constexpr double kRtol = th_test::kForwardRtol;

std::shared_ptr<th::HeadedModel> lm_model(const std::string& name, const std::string& device = "cpu", bool qlora = false) {
  auto bb = th::load_backbone(fixture(name + ".pt"), {device, "float32"});
  const auto& c = bb->config();
  const std::string H = std::to_string(c.hidden_size), V = std::to_string(c.vocab_size);
  auto heads = th::parse_head_configs(
      R"([{"name":"probe","in_size":)" + H + R"(,"num_outputs":3,"layer_hook":1,"output_bias":true,"loss_fct":null},)"
      R"({"name":"lm_head","in_size":)" + H + R"(,"num_outputs":)" + V + R"(,"is_causal_lm":true,"loss_fct":"cross_entropy"}])");
  th::HeadedOptions o;
  if (qlora) {
    o.quant = th::QuantOptions{};
    o.quant->double_quant = true;
    o.lora = th::LoraOptions{};
    o.lora->r = 4;
  }
  auto m = std::make_shared<th::HeadedModel>(std::move(bb), heads, o);
  if (qlora) {
    // B starts at zero (a no-op adapter); random values make the adapters matter in the comparison.
    torch::NoGradGuard ng;
    torch::manual_seed(3);
    for (auto& [k, t] : m->backbone().lora_parameters()) t.copy_(torch::randn_like(t) * 0.05);
  }
  return m;
}

// Three left-padded prompts of lengths 5, 2 and 7.
std::pair<torch::Tensor, torch::Tensor> prompts(int64_t vocab) {
  auto ids = torch::randint(1, vocab, {3, 7}, torch::TensorOptions().dtype(torch::kLong));
  auto mask = torch::ones({3, 7}, torch::kLong);
  mask[0].narrow(0, 0, 2).fill_(0);
  mask[1].narrow(0, 0, 5).fill_(0);
  ids.masked_fill_(mask == 0, 0);
  return {ids, mask};
}

struct Run {
  std::vector<th::GenerateStep> steps;
  torch::Tensor sequences;
  int64_t cache_bytes = 0;
};

Run generate(std::shared_ptr<th::HeadedModel> m, const torch::Tensor& ids, const torch::Tensor& mask, th::GenerateOptions o) {
  th::Generator g(std::move(m), ids, mask, o);
  g.set_keep_logits(true);
  Run r;
  while (!g.done()) r.steps.push_back(g.step());
  r.sequences = g.sequences();
  r.cache_bytes = g.cache_bytes();
  return r;
}

}  // namespace

TEST_CASE("greedy generation with the KV cache equals full recomputation") {
  std::vector<std::string> devs{"cpu"};
  if (torch::cuda::is_available()) devs.push_back("cuda");
  // tiny-mistral (window 4) and tiny-qwen2 (window 3 from layer 1) generate past their sliding windows.
  for (const std::string name : {"tiny-gpt2", "tiny-llama", "tiny-mistral", "tiny-qwen2", "tiny-llama3"}) {
    for (const auto& dev : devs) {
      for (bool qlora : {false, true}) {
        CAPTURE(name);
        CAPTURE(dev);
        CAPTURE(qlora);
        auto m = lm_model(name, dev, qlora);
        torch::manual_seed(11);
        auto [ids, mask] = prompts(m->backbone().config().vocab_size);
        th::GenerateOptions o;
        o.max_new_tokens = 12;
        auto cached = generate(m, ids, mask, o);
        o.use_cache = false;
        auto full = generate(m, ids, mask, o);
        REQUIRE(cached.steps.size() == 12);
        REQUIRE(full.steps.size() == 12);
        CHECK(torch::equal(cached.sequences, full.sequences));
        CHECK(cached.cache_bytes > 0);  // the cached run really decoded from the cache
        CHECK(full.cache_bytes == 0);
        double logits = 0, heads = 0, lp = 0;
        for (size_t s = 0; s < 12; ++s) {
          logits = std::max(logits, rel_diff(cached.steps[s].lm_logits, full.steps[s].lm_logits));
          heads = std::max(heads, rel_diff(cached.steps[s].heads.at(0).second, full.steps[s].heads.at(0).second));
          lp = std::max(lp, rel_diff(cached.steps[s].logprobs, full.steps[s].logprobs));
        }
        CHECK_REL(logits, kRtol);
        CHECK_REL(heads, kRtol);
        CHECK_REL(lp, kRtol);
      }
    }
  }
}

TEST_CASE("the first step's logits equal the TorchScript archive's forward on the prompt") {
  for (const std::string name : {"tiny-gpt2", "tiny-llama", "tiny-mistral"}) {
    CAPTURE(name);
    auto m = lm_model(name);
    torch::manual_seed(5);
    auto [ids, mask] = prompts(m->backbone().config().vocab_size);
    th::GenerateOptions o;
    o.max_new_tokens = 1;
    auto r = generate(m, ids, mask, o);
    th::TorchScriptModel ts(fixture(name + ".pt"));
    auto ref = ts.forward(ids, mask).logits.select(1, 6);
    CHECK_REL(rel_diff(r.steps[0].lm_logits, ref), kRtol);
    CHECK(torch::equal(r.steps[0].tokens, ref.argmax(-1)));
    // The chosen token's log-probability is log_softmax of the raw logits.
    auto lp = torch::log_softmax(ref, -1).gather(1, ref.argmax(-1).unsqueeze(1)).squeeze(1);
    CHECK_REL(rel_diff(r.steps[0].logprobs, lp), kRtol);
  }
}

TEST_CASE("per-step head outputs equal a forward of the whole sequence at those positions") {
  for (const std::string name : {"tiny-gpt2", "tiny-qwen2"}) {
    CAPTURE(name);
    auto m = lm_model(name);
    torch::manual_seed(7);
    auto [ids, mask] = prompts(m->backbone().config().vocab_size);
    th::GenerateOptions o;
    o.max_new_tokens = 6;
    th::Generator g(m, ids, mask, o);
    std::vector<th::GenerateStep> steps;
    while (!g.done()) steps.push_back(g.step());
    auto out = m->forward(g.sequences(), g.attention_mask(), {}, /*want_preds=*/true);
    torch::Tensor probe;
    for (auto& [k, t] : out.preds_by_head) if (k == "probe") probe = t;
    REQUIRE(probe.defined());
    // Step s reports the head at the last input position of that step: prompt end (6), then generated token s-1.
    for (size_t s = 0; s < steps.size(); ++s) {
      CHECK_REL(rel_diff(steps[s].heads.at(0).second, probe.select(1, 6 + static_cast<int64_t>(s))), kRtol);
    }
  }
}

TEST_CASE("eos finishes a row, which then gets the eos token, and generation stops when all rows finished") {
  auto m = lm_model("tiny-gpt2");
  torch::manual_seed(11);
  auto [ids, mask] = prompts(m->backbone().config().vocab_size);
  th::GenerateOptions o;
  o.max_new_tokens = 10;
  auto free_run = generate(m, ids, mask, o);
  const int64_t eos = free_run.steps[2].tokens[0].item<int64_t>();
  o.eos_token_ids = {eos};
  auto r = generate(m, ids, mask, o);
  // Row 0 first emits eos at step 2 or earlier; every token after it is eos.
  int64_t first = -1;
  for (size_t s = 0; s < r.steps.size(); ++s) {
    if (first < 0 && r.steps[s].tokens[0].item<int64_t>() == eos) first = static_cast<int64_t>(s);
    if (first >= 0) {
      CHECK(r.steps[s].tokens[0].item<int64_t>() == eos);
      CHECK(r.steps[s].finished[0].item<bool>());
    }
  }
  CHECK(first >= 0);
  CHECK(first <= 2);
  for (size_t s = 0; s < static_cast<size_t>(first); ++s) CHECK(torch::equal(r.steps[s].tokens, free_run.steps[s].tokens));
  bool all = r.steps.back().finished.all().item<bool>();
  CHECK((all || r.steps.size() == 10));

  // finish() (stop strings, matched by the caller) ends rows too.
  th::Generator g(m, ids, mask, o);
  g.step();
  g.finish({0, 1, 2});
  CHECK(g.done());
  CHECK_THROWS_AS(g.step(), th::ValueError);
}

TEST_CASE("sampling: a seed reproduces, top-k 1 and temperature near 0 equal greedy") {
  auto m = lm_model("tiny-llama");
  torch::manual_seed(2);
  auto [ids, mask] = prompts(m->backbone().config().vocab_size);
  th::GenerateOptions greedy;
  greedy.max_new_tokens = 8;
  auto g = generate(m, ids, mask, greedy).sequences;

  th::GenerateOptions s = greedy;
  s.sampling.do_sample = true;
  s.seed = 1234;
  auto a = generate(m, ids, mask, s).sequences, b = generate(m, ids, mask, s).sequences;
  CHECK(torch::equal(a, b));
  s.seed = 99;
  auto c = generate(m, ids, mask, s).sequences;
  CHECK_FALSE(torch::equal(a, c));  // 24 draws from a near-uniform random model: equal only by a freak chance
  CHECK_FALSE(torch::equal(a, g));

  th::GenerateOptions k1 = s;
  k1.sampling.top_k = 1;
  CHECK(torch::equal(generate(m, ids, mask, k1).sequences, g));
  th::GenerateOptions cold = s;
  cold.sampling.temperature = 1e-4;
  CHECK(torch::equal(generate(m, ids, mask, cold).sequences, g));
  th::GenerateOptions zero = s;
  zero.sampling.temperature = 0;
  CHECK(torch::equal(generate(m, ids, mask, zero).sequences, g));
}

TEST_CASE("logits processors on a hand-made distribution") {
  const std::vector<double> p{0.05, 0.5, 0.1, 0.2, 0.15};
  auto logits = torch::tensor(p, torch::kFloat64).log().to(torch::kFloat32).unsqueeze(0);
  auto kept = [&](const th::SamplingOptions& o) {
    auto s = th::process_logits(logits, {}, {}, o);
    std::vector<int64_t> k;
    for (int64_t i = 0; i < 5; ++i) if (std::isfinite(s[0][i].item<float>())) k.push_back(i);
    return k;
  };
  th::SamplingOptions o;
  o.do_sample = true;
  // top-p keeps the smallest set of most likely tokens whose mass reaches p.
  o.top_p = 0.45;
  CHECK(kept(o) == std::vector<int64_t>{1});           // 0.5
  o.top_p = 0.6;
  CHECK(kept(o) == std::vector<int64_t>{1, 3});        // 0.5 + 0.2 = 0.7
  o.top_p = 0.75;
  CHECK(kept(o) == std::vector<int64_t>{1, 3, 4});     // 0.85: 0.7 is not enough
  o.top_p = 0.97;
  CHECK(kept(o) == std::vector<int64_t>{0, 1, 2, 3, 4});
  o.top_p = 1.0;
  o.top_k = 2;
  CHECK(kept(o) == std::vector<int64_t>{1, 3});
  o.top_k = 0;
  o.min_p = 0.35;  // threshold 0.175
  CHECK(kept(o) == std::vector<int64_t>{1, 3});
  o.min_p = 0;
  o.temperature = 0.5;
  auto s = th::process_logits(logits, {}, {}, o);
  CHECK(th_test::max_diff(s, logits / 0.5) == 0);  // division by a power of two is exact
  // Without sampling, only the processors (repetition penalty) apply.
  o.do_sample = false;
  o.top_k = 1;
  // No processor applies: the logits come back untouched.
  CHECK(th_test::max_diff(th::process_logits(logits, {}, {}, o), logits) == 0);

  // Repetition penalty: positive logits divided, negative multiplied, only for real tokens of the context (by 2: exact).
  th::SamplingOptions r;
  r.repetition_penalty = 2.0;
  auto l = torch::tensor({2.0f, -1.0f, 0.5f, 3.0f}).unsqueeze(0);
  auto ctx = torch::tensor({0, 1, 3}, torch::kLong).unsqueeze(0);
  auto cmask = torch::tensor({1, 1, 0}, torch::kLong).unsqueeze(0);  // token 3 only appears as padding
  auto out = th::process_logits(l, ctx, cmask, r);
  CHECK(th_test::max_diff(out, torch::tensor({1.0f, -2.0f, 0.5f, 3.0f}).unsqueeze(0)) == 0);
}

TEST_CASE("generation errors name the problem") {
  auto m = lm_model("tiny-gpt2");
  auto ids = torch::tensor({5, 6, 7}, torch::kLong).unsqueeze(0);
  th::GenerateOptions o;
  o.max_new_tokens = 0;
  CHECK_THROWS_AS(th::Generator(m, ids, {}, o), th::ConfigError);
  o.max_new_tokens = 4;
  o.sampling.top_p = 0;
  CHECK_THROWS_AS(th::Generator(m, ids, {}, o), th::ConfigError);
  o.sampling.top_p = 1;
  o.eos_token_ids = {100000};
  CHECK_THROWS_AS(th::Generator(m, ids, {}, o), th::ConfigError);
  o.eos_token_ids = {};
  CHECK_THROWS_AS(th::Generator(m, torch::zeros({1, 0}, torch::kLong), {}, o), th::ShapeError);
  CHECK_THROWS_AS(th::Generator(m, ids, torch::zeros({1, 3}, torch::kLong), o), th::ShapeError);  // no real token
  CHECK_THROWS_AS(th::Generator(m, ids, torch::tensor({1, 1, 0}, torch::kLong).unsqueeze(0), o), th::ShapeError);  // right pad
  CHECK_THROWS_AS(th::Generator(m, torch::tensor({5, 1000}, torch::kLong).unsqueeze(0), {}, o), th::ShapeError);
  o.max_new_tokens = 100;  // tiny-gpt2 has 64 positions
  CHECK_THROWS_WITH_AS(th::Generator(m, ids, {}, o), doctest::Contains("n_positions"), th::ShapeError);

  auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {"cpu", "float32"});
  auto probe_only = std::make_shared<th::HeadedModel>(
      std::move(bb), th::parse_head_configs(R"([{"name":"p","in_size":64,"num_outputs":2}])"), th::HeadedOptions{});
  o.max_new_tokens = 2;
  CHECK_THROWS_WITH_AS(th::Generator(probe_only, ids, {}, o), doctest::Contains("causal-LM head"), th::ConfigError);
}
