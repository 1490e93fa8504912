// LoRA forward and gradients against PyTorch autograd on the same weights (scripts/make_lora_fixtures.py), adapters
// read from PEFT's file layout; B = 0 leaves the model unchanged; merging keeps the outputs.
#include "doctest_torch.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "backbone.h"
#include "errors.h"
#include "headed_model.h"
#include "test_helpers.h"

using th_test::fixture;
using th_test::rel_diff;

namespace {

using th_test::kF32Eps;
using th_test::kGradRtol;
using th_test::kLossRtol;
constexpr double kHiddenRtol = th_test::kForwardRtol;

std::unique_ptr<th::HeadedModel> lora_model(const std::string& dir, const std::string& device, bool checkpointing = false) {
  std::ifstream f(fixture(dir + "/adapter_config.json"));
  auto cfg = nlohmann::json::parse(f);
  th::HeadedOptions o;
  th::LoraOptions lo;
  lo.r = cfg["r"].get<int64_t>();
  lo.alpha = cfg["lora_alpha"].get<double>();
  lo.targets = cfg["target_modules"].get<std::vector<std::string>>();
  o.lora = lo;
  o.gradient_checkpointing = checkpointing;
  auto heads = th::parse_head_configs(R"([{"name":"cls","in_size":32,"num_outputs":3,"pred_for_sequence":true,"output_bias":true}])");
  auto m = std::make_unique<th::HeadedModel>(th::load_backbone(fixture(dir + "/model.pt"), {device, "float32"}), heads, o);
  std::map<std::string, torch::Tensor> adapter;
  for (auto& [k, t] : th_test::read_safetensors(fixture(dir + "/adapter_model.safetensors"))) adapter[k.substr(std::string("base_model.model.").size())] = t;
  m->load_lora_state(adapter);
  auto head = th_test::read_safetensors(fixture(dir + "/cls.safetensors"));
  m->load_head_state("cls", {head.begin(), head.end()});
  return m;
}

}  // namespace

TEST_CASE("LoRA forward and gradients match PyTorch (fp32, unquantized)") {
  std::vector<std::string> devs{"cpu"};
  if (torch::cuda::is_available()) devs.push_back("cuda");
  for (const std::string dir : {"lora-gpt2", "lora-llama"}) {
    for (const auto& dev : devs) {
     for (bool ckpt : {false, true}) {
      CAPTURE(dir);
      CAPTURE(dev);
      CAPTURE(ckpt);
      auto m = lora_model(dir, dev, ckpt);
      auto batch = th_test::read_safetensors(fixture(dir + "/batch.safetensors"));
      auto exp = th_test::read_safetensors(fixture(dir + "/expected.safetensors"));
      th::Labels labels{{"cls", batch.at("cls")}};
      auto out = m->forward(batch.at("input_ids"), batch.at("attention_mask"), labels, false);
      CHECK_REL(th_test::rel_err(out.loss.item<double>(), exp.at("loss").item<double>()), kLossRtol);
      auto hidden = m->hooked_hidden(batch.at("input_ids"), batch.at("attention_mask"));
      CHECK_REL(rel_diff(hidden.at(2), exp.at("hidden_last"), batch.at("attention_mask")), kHiddenRtol);

      m->train_step(batch.at("input_ids"), batch.at("attention_mask"), labels, 1.0);
      int n = 0;
      for (auto& [k, t] : m->backbone().lora_parameters()) {
        REQUIRE(t.grad().defined());
        const auto& ref = exp.at("grad.base_model.model." + k);
        INFO(k);
        CHECK_REL(rel_diff(t.grad(), ref), kGradRtol);
        ++n;
      }
      CHECK(n == (dir == "lora-gpt2" ? 16 : 28));
      for (auto& [k, g] : m->head_grads("cls")) {
        INFO("cls." << k);
        CHECK_REL(rel_diff(g, exp.at("grad.cls." + k)), kGradRtol);
      }
      CHECK(m->backbone_grad_norm() == 0.0);  // base weights frozen: only the adapters and the head get gradients
     }
    }
  }
}

TEST_CASE("merging folds the adapters into the weights with the same outputs") {
  auto m = lora_model("lora-llama", "cpu");
  auto batch = th_test::read_safetensors(fixture("lora-llama/batch.safetensors"));
  auto before = m->hooked_hidden(batch.at("input_ids"), batch.at("attention_mask")).at(2);
  m->merge_lora();
  CHECK(m->backbone().lora_parameters().empty());
  auto after = m->hooked_hidden(batch.at("input_ids"), batch.at("attention_mask")).at(2);
  // W + B A s rounded once per weight instead of two products added at run time: a few eps per layer.
  CHECK_REL(rel_diff(after, before, batch.at("attention_mask")), 64 * kF32Eps);
}

TEST_CASE("LoRA errors") {
  auto bb = th::load_backbone(fixture("tiny-llama.pt"), {});
  th::LoraOptions lo;
  lo.r = 0;
  CHECK_THROWS_AS(bb->add_lora(lo), th::ConfigError);
  lo.r = 4;
  lo.targets = {"c_attn"};
  CHECK_THROWS_WITH_AS(bb->add_lora(lo), doctest::Contains("available: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"), th::ConfigError);
  th::QuantOptions q;
  q.bits = 3;
  CHECK_THROWS_AS(bb->quantize(q), th::ConfigError);
}

TEST_CASE("LoRA gradients through 4-bit projections equal those through the same weights held dense") {
  auto exp_batch = th_test::read_safetensors(fixture("lora-llama/batch.safetensors"));
  std::vector<std::vector<torch::Tensor>> grads;
  for (bool keep_quantized : {true, false}) {
    th::HeadedOptions o;
    th::QuantOptions q;
    q.double_quant = true;
    o.quant = q;
    th::LoraOptions lo;
    lo.r = 4;
    lo.alpha = 8;
    lo.seed = 5;
    o.lora = lo;
    auto heads = th::parse_head_configs(R"([{"name":"cls","in_size":32,"num_outputs":3,"pred_for_sequence":true}])");
    th::HeadedModel m(th::load_backbone(fixture("lora-llama/model.pt"), {}), heads, o);
    if (!keep_quantized) {
      for (th::Linear* l : m.backbone().linears()) {
        l->weight = l->dense(torch::kFloat32);
        l->q4.reset();
      }
    }
    // non-zero B so that A gets a gradient too
    for (auto& [k, t] : m.backbone().lora_parameters()) {
      torch::NoGradGuard ng;
      if (k.find("lora_B") != std::string::npos) t.copy_(torch::full_like(t, 0.01));
    }
    th::Labels labels{{"cls", exp_batch.at("cls")}};
    m.train_step(exp_batch.at("input_ids"), exp_batch.at("attention_mask"), labels, 1.0);
    std::vector<torch::Tensor> g;
    for (auto& [k, t] : m.backbone().lora_parameters()) g.push_back(t.grad().clone());
    grads.push_back(g);
  }
  REQUIRE(grads[0].size() == grads[1].size());
  for (size_t i = 0; i < grads[0].size(); ++i) {
    INFO("lora parameter " << i);
    // Measured 0 with 1 and 2 threads: one 256-row tile covers these 32-row weights, so both paths run the same
    // product on the same values. 1e-6 leaves room for a BLAS that sums the tile's strided output in another order.
    CHECK_REL(rel_diff(grads[0][i], grads[1][i]), 1e-6);
  }
}

// Quantizing while loading (LoadOptions::quant: deferred safetensors reads, one projection quantized before the next
// is read) must give the model that loading in float and quantizing afterwards gives: the same codes and scales,
// the same weights left dense, and the same forward.
TEST_CASE("quantizing while loading equals quantizing after loading") {
  for (const std::string name : {"hf-tiny-gpt2", "hf-tiny-llama", "hf-tiny-gpt2-f16", "tiny-llama.pt"}) {
    CAPTURE(name);
    th::QuantOptions q;
    q.double_quant = true;
    th::LoadOptions lo;
    lo.quant = q;
    auto during = th::load_backbone(fixture(name), lo);
    auto after = th::load_backbone(fixture(name), {});
    after->quantize(q);
    REQUIRE(during->is_quantized());
    auto ld = during->linears(), la = after->linears();
    REQUIRE(ld.size() == la.size());
    for (size_t i = 0; i < ld.size(); ++i) {
      CAPTURE(ld[i]->name);
      REQUIRE(ld[i]->q4);
      CHECK(!ld[i]->weight.defined());
      CHECK(torch::equal(ld[i]->q4->packed, la[i]->q4->packed));
      CHECK(torch::equal(ld[i]->q4->qabsmax, la[i]->q4->qabsmax));
      CHECK(torch::equal(ld[i]->q4->absmax2, la[i]->q4->absmax2));
    }
    const auto& pd = during->named_parameters();
    const auto& pa = after->named_parameters();
    REQUIRE(pd.size() == pa.size());
    for (size_t i = 0; i < pd.size(); ++i) {
      CHECK(pd[i].first == pa[i].first);
      CHECK(torch::equal(pd[i].second, pa[i].second));
    }
    CHECK(during->parameter_bytes() == after->parameter_bytes());
    th::ForwardRequest req;
    req.input_ids = torch::randint(0, during->config().vocab_size, {2, 5}, torch::kLong);
    req.logits = true;
    CHECK(torch::equal(during->forward(req).logits, after->forward(req).logits));
  }
}

namespace {

th::Linear* linear(th::Backbone& bb, const std::string& name) {
  for (th::Linear* l : bb.linears()) {
    if (l->name == name) return l;
  }
  FAIL("no projection " << name);
  return nullptr;
}

}  // namespace

TEST_CASE("rank_pattern, alpha_pattern and layers_to_transform give each module PEFT's rank and scaling") {
  auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});  // 4 blocks, hidden 64, MLP 256
  th::LoraOptions lo;
  lo.r = 4;
  lo.alpha = 8;
  lo.targets = {"c_attn", "c_proj", "c_fc"};
  // Keys are regular expressions matched against the end of the full module name ("transformer.h.1.attn.c_attn")
  // after a '.', first matching key wins. "attn" must not match "...c_attn" (the character before it is '_').
  lo.rank_pattern = {{"h.1.attn.c_attn", 2}, {"c_fc", 6}};
  lo.alpha_pattern = {{"attn", 100}, {"c_fc", 3}, {"transformer\\.h\\.[23]\\.attn\\.c_proj", 5}, {"c_proj", 7}};
  lo.layers_to_transform = {1, 3};
  auto wrapped = bb->add_lora(lo);
  CHECK(wrapped.size() == 8);
  // By hand: r from rank_pattern else 4; alpha from the first matching alpha_pattern key else 8; scaling = alpha / r.
  struct Want {
    std::string name;
    int64_t r, in, out;
    double scaling;
  };
  const std::vector<Want> want = {
      {"h.1.attn.c_attn", 2, 64, 192, 8.0 / 2}, {"h.1.attn.c_proj", 4, 64, 64, 7.0 / 4},  {"h.1.mlp.c_fc", 6, 64, 256, 3.0 / 6},
      {"h.1.mlp.c_proj", 4, 256, 64, 7.0 / 4},  {"h.3.attn.c_attn", 4, 64, 192, 8.0 / 4}, {"h.3.attn.c_proj", 4, 64, 64, 5.0 / 4},
      {"h.3.mlp.c_fc", 6, 64, 256, 3.0 / 6},    {"h.3.mlp.c_proj", 4, 256, 64, 7.0 / 4},
  };
  for (const auto& w : want) {
    CAPTURE(w.name);
    th::Linear* l = linear(*bb, w.name);
    REQUIRE(l->lora_a.defined());
    CHECK(l->lora_a.sizes() == c10::IntArrayRef({w.r, w.in}));
    CHECK(l->lora_b.sizes() == c10::IntArrayRef({w.out, w.r}));
    CHECK(l->scaling == doctest::Approx(w.scaling).epsilon(1e-15));
  }
  for (const char* name : {"h.0.attn.c_attn", "h.0.mlp.c_fc", "h.2.attn.c_proj", "h.2.mlp.c_proj"}) {
    CAPTURE(name);
    CHECK_FALSE(linear(*bb, name)->lora_a.defined());
  }
  // The forward uses the per-module scaling: y = x W^T + b + scaling * (x A^T) B^T, written out by hand.
  th::Linear* l = linear(*bb, "h.3.attn.c_proj");
  {
    torch::NoGradGuard ng;
    l->lora_b.copy_(torch::randn(l->lora_b.sizes(), torch::TensorOptions().dtype(torch::kFloat32)));
  }
  torch::NoGradGuard ng;
  auto x = torch::randn({3, 64});
  auto expected = torch::matmul(x, l->weight.t()) + l->bias + 1.25 * torch::matmul(torch::matmul(x, l->lora_a.t()), l->lora_b.t());
  CHECK_REL(rel_diff((*l)(x), expected), 16 * kF32Eps);
}

TEST_CASE("rslora scales each module by its own alpha / sqrt(r)") {
  auto bb = th::load_backbone(fixture("tiny-llama.pt"), {});
  th::LoraOptions lo;
  lo.r = 4;
  lo.alpha = 8;
  lo.rslora = true;
  lo.rank_pattern = {{"q_proj", 9}};
  lo.alpha_pattern = {{"model.layers.0.self_attn.q_proj", 6}};
  bb->add_lora(lo);
  CHECK(linear(*bb, "layers.0.self_attn.q_proj")->scaling == doctest::Approx(6.0 / 3).epsilon(1e-15));
  CHECK(linear(*bb, "layers.1.self_attn.q_proj")->scaling == doctest::Approx(8.0 / 3).epsilon(1e-15));
  CHECK(linear(*bb, "layers.1.self_attn.k_proj")->scaling == doctest::Approx(8.0 / 2).epsilon(1e-15));
  CHECK(linear(*bb, "layers.1.self_attn.q_proj")->lora_a.size(0) == 9);
}

TEST_CASE("layers_pattern picks the numbered segment after it; PEFT's default targets when asked") {
  {
    auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});
    th::LoraOptions lo;
    lo.layers_to_transform = {2};
    lo.layers_pattern = {"h"};
    CHECK(bb->add_lora(lo) == std::vector<std::string>{"h.2.attn.c_attn", "h.2.attn.c_proj", "h.2.mlp.c_fc", "h.2.mlp.c_proj"});
  }
  {
    auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});
    th::LoraOptions lo;
    lo.layers_to_transform = {2};
    lo.layers_pattern = {"layers"};  // a Llama name: no GPT-2 module has it, so nothing matches
    CHECK_THROWS_WITH_AS(bb->add_lora(lo), doctest::Contains("in layers [2] name no module"), th::ConfigError);
  }
  {
    auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});
    th::LoraOptions lo;
    lo.peft_default_targets = true;
    CHECK(bb->add_lora(lo) == std::vector<std::string>{"h.0.attn.c_attn", "h.1.attn.c_attn", "h.2.attn.c_attn", "h.3.attn.c_attn"});
  }
  {
    auto bb = th::load_backbone(fixture("tiny-llama.pt"), {});
    th::LoraOptions lo;
    lo.peft_default_targets = true;
    lo.layers_to_transform = {0};
    CHECK(bb->add_lora(lo) == std::vector<std::string>{"layers.0.self_attn.q_proj", "layers.0.self_attn.v_proj"});
  }
  auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});
  th::LoraOptions lo;
  lo.layers_to_transform = {4};
  CHECK_THROWS_WITH_AS(bb->add_lora(lo), doctest::Contains("names block 4 but this gpt2 model has 4 blocks"), th::ConfigError);
  lo.layers_to_transform = {};
  lo.rank_pattern = {{"c_(attn", 2}};
  CHECK_THROWS_WITH_AS(bb->add_lora(lo), doctest::Contains("rank_pattern key 'c_(attn' is not a regular expression"), th::ConfigError);
  lo.rank_pattern = {{"c_attn", 0}};
  CHECK_THROWS_AS(bb->add_lora(lo), th::ConfigError);
}

TEST_CASE("'lm_head' as a target adapts only the output projection, named as PEFT names it") {
  for (const std::string name : {"tiny-gpt2.pt", "tiny-llama.pt"}) {
    CAPTURE(name);
    auto bb = th::load_backbone(fixture(name), {});
    th::LoraOptions lo;
    lo.r = 2;
    lo.targets = {"lm_head"};
    lo.layers_to_transform = {0};  // PEFT: a module named in full is taken whatever the layer filter
    CHECK(bb->add_lora(lo) == std::vector<std::string>{"lm_head"});
    auto p = bb->lora_parameters();
    REQUIRE(p.size() == 2);
    CHECK(p[0].first == "lm_head.lora_A.weight");
    CHECK(p[1].first == "lm_head.lora_B.weight");
    CHECK(p[1].second.sizes() == torch::IntArrayRef{bb->config().vocab_size, 2});
    // tiny-gpt2 ties lm_head to wte (merging would change the embeddings); tiny-llama does not.
    if (name == "tiny-gpt2.pt") CHECK_THROWS_WITH_AS(bb->merge_lora(), doctest::Contains("tied to its input embeddings"), th::ConfigError);
  }
  // Not by default: no targets means every block projection.
  auto bb = th::load_backbone(fixture("tiny-llama.pt"), {});
  th::LoraOptions lo;
  lo.r = 2;
  for (const auto& n : bb->add_lora(lo)) CHECK(n != "lm_head");
}

// QuantOptions::embeddings: the table looked up and (tied) projected in 4-bit must act exactly as the same
// dequantized table held dense. Reference: the float model whose table is overwritten with
// dequantize_4bit(quantize_4bit(table)) (the quantizer itself is checked code for code against bitsandbytes in
// test_quant.cpp), its projections quantized the usual way.
TEST_CASE("4-bit token embeddings act as the dequantized table held dense") {
  for (const std::string name : {"hf-tiny-gpt2", "hf-tiny-llama", "hf-tiny-qwen2", "tiny-gpt2.pt"}) {
    CAPTURE(name);
    th::QuantOptions q;
    q.double_quant = true;
    q.embeddings = true;
    th::LoadOptions lo;
    lo.quant = q;
    auto quant = th::load_backbone(fixture(name), lo);
    auto after = th::load_backbone(fixture(name), {});
    auto ref = th::load_backbone(fixture(name), {});
    after->quantize(q);
    const th::Linear& tok = quant->token_embeddings();
    REQUIRE(tok.q4);
    CHECK(!tok.weight.defined());
    CHECK(torch::equal(tok.q4->packed, after->token_embeddings().q4->packed));
    CHECK(torch::equal(tok.q4->qabsmax, after->token_embeddings().q4->qabsmax));
    const std::string key = tok.name + ".weight";
    for (const auto& [k, t] : quant->named_parameters()) CHECK(k != key);  // not a dense weight any more

    torch::Tensor table;
    for (const auto& [k, t] : ref->named_parameters()) {
      if (k == key) table = t;
    }
    REQUIRE(table.defined());
    const int64_t table_bytes = table.numel() * table.element_size();
    {
      torch::NoGradGuard no_grad;
      table.copy_(th::dequantize_4bit(th::quantize_4bit(table, th::QuantType::NF4, 64, true), torch::kFloat32));
    }
    th::QuantOptions projections = q;
    projections.embeddings = false;
    ref->quantize(projections);
    CHECK(quant->parameter_bytes() == ref->parameter_bytes() - table_bytes + tok.q4->bytes());
    CHECK(quant->lm_head_tied() == ref->lm_head_tied());
    CHECK(quant->lm_head_projection()->quantized() == quant->lm_head_tied());

    th::ForwardRequest req;
    req.input_ids = torch::randint(0, quant->config().vocab_size, {2, 7}, torch::kLong);
    req.layers = {0, -1};
    req.logits = true;
    auto got = quant->forward(req), want = ref->forward(req);
    // The lookup is bit-identical to the dense table's rows, so every block sees the same input.
    CHECK(torch::equal(got.hidden_states[0].second, want.hidden_states[0].second));
    CHECK(torch::equal(got.hidden_states[1].second, want.hidden_states[1].second));
    if (quant->lm_head_tied()) {
      // linear_4bit sums each logit's H products tile by tile in another order than one dense matmul
      CHECK_REL(th_test::rel_diff(got.logits, want.logits), quant->config().hidden_size * th_test::kF32Eps);
    } else {
      CHECK(torch::equal(got.logits, want.logits));
    }

    // Merging makes the table dense again (the dequantized values) and the model savable.
    quant->merge_lora();
    CHECK(!quant->is_quantized());
    REQUIRE(quant->token_embeddings().weight.defined());
    CHECK(!quant->token_embeddings().q4);
    CHECK(torch::equal(quant->token_embeddings().weight, table));
    if (quant->lm_head_tied()) CHECK(quant->lm_head_weight().is_same(quant->token_embeddings().weight));
    bool listed = false;
    for (const auto& [k, t] : quant->named_parameters()) listed = listed || (k == key && t.is_same(quant->token_embeddings().weight));
    CHECK(listed);
    CHECK_NOTHROW(quant->hf_state_dict());
  }
  th::QuantOptions eight;
  eight.bits = 8;
  eight.embeddings = true;
  auto bb = th::load_backbone(fixture("tiny-gpt2.pt"), {});
  CHECK_THROWS_AS(bb->quantize(eight), th::ConfigError);
  th::LoadOptions lo;
  lo.quant = eight;
  CHECK_THROWS_AS(th::load_backbone(fixture("hf-tiny-gpt2"), lo), th::ConfigError);
}
