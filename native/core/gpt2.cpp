// GPT-2 (Hugging Face GPT2LMHeadModel): learned positions, pre-LayerNorm blocks, fused c_attn, gelu_new MLP,
// lm_head tied to wte. HF's Conv1D stores weights as [in, out]; they are transposed once at load to [out, in] so
// every projection is a plain torch Linear (the same layout LoRA and 4-bit layers use).
#include <cmath>
#include <tuple>

#include "backbone.h"
#include "errors.h"

namespace th {
namespace {

struct Gpt2Block {
  torch::Tensor ln1_w, ln1_b, ln2_w, ln2_b;
  Linear c_attn, attn_proj, c_fc, mlp_proj;
};

class Gpt2 final : public Backbone {
 public:
  Gpt2(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype, std::optional<QuantOptions> quant)
      : Backbone(std::move(ck), device, dtype, quant) {
    const int64_t H = config_.hidden_size, I = config_.intermediate_size;
    take_token_embeddings("wte.weight");
    wpe_ = take("wpe.weight", {config_.max_position_embeddings, H});
    for (int64_t i = 0; i < config_.num_layers; ++i) {
      const std::string p = "h." + std::to_string(i) + ".";
      Gpt2Block b;
      b.ln1_w = take(p + "ln_1.weight", {H});
      b.ln1_b = take(p + "ln_1.bias", {H});
      b.ln2_w = take(p + "ln_2.weight", {H});
      b.ln2_b = take(p + "ln_2.bias", {H});
      b.c_attn = conv1d(p + "attn.c_attn", H, 3 * H);
      b.attn_proj = conv1d(p + "attn.c_proj", H, H);
      b.c_fc = conv1d(p + "mlp.c_fc", H, I);
      b.mlp_proj = conv1d(p + "mlp.c_proj", I, H);
      blocks_.push_back(std::move(b));
    }
    lnf_w_ = take("ln_f.weight", {H});
    lnf_b_ = take("ln_f.bias", {H});
    // Saved GPT2LMHeadModel files may carry lm_head.weight; HF ties it to wte regardless unless told otherwise.
    take_lm_head(/*tied=*/config_.tie_word_embeddings || !has("lm_head.weight"));
    scale_ = config_.scale_attn_weights ? 1.0 / std::sqrt(static_cast<double>(config_.head_dim)) : 1.0;
    finish_loading();
  }

 protected:
  torch::Tensor embed(const torch::Tensor& ids, const torch::Tensor& pos) override {
    return embed_tokens(ids) + torch::embedding(wpe_, pos);
  }

  void prepare(AttentionContext&, const torch::Tensor&) override {}

  torch::Tensor block(int64_t index, const torch::Tensor& x, const AttentionContext& ctx) override {
    const Gpt2Block& b = blocks_[index];
    const int64_t B = x.size(0), T = x.size(1), H = config_.hidden_size, nh = config_.num_heads, hd = config_.head_dim;
    auto h = torch::layer_norm(x, {H}, b.ln1_w, b.ln1_b, config_.norm_eps);
    auto qkv = b.c_attn(h).split(H, /*dim=*/2);
    auto q = qkv[0].view({B, T, nh, hd}).transpose(1, 2);  // (B, nh, T, hd)
    auto k = qkv[1].view({B, T, nh, hd}).transpose(1, 2);
    auto v = qkv[2].view({B, T, nh, hd}).transpose(1, 2);
    if (ctx.cache) std::tie(k, v) = ctx.cache->update(index, k, v);
    if (ctx.dead.defined()) q = q.masked_fill(ctx.dead, 0);  // uniform rows (AttentionContext::dead)
    auto y = attention(q, k, v, ctx.keep, scale_).transpose(1, 2).reshape({B, T, H});
    auto a = x + b.attn_proj(y);
    auto m = b.c_fc(torch::layer_norm(a, {H}, b.ln2_w, b.ln2_b, config_.norm_eps));
    return a + b.mlp_proj(activate(m));
  }

  torch::Tensor final_norm(const torch::Tensor& x) override {
    return torch::layer_norm(x, {config_.hidden_size}, lnf_w_, lnf_b_, config_.norm_eps);
  }


 public:
  std::vector<Linear*> linears() override {
    std::vector<Linear*> out;
    for (auto& b : blocks_) out.insert(out.end(), {&b.c_attn, &b.attn_proj, &b.c_fc, &b.mlp_proj});
    return out;
  }

 protected:

 private:
  Linear conv1d(const std::string& prefix, int64_t in, int64_t out) {
    Linear l;
    l.name = prefix;
    l.in = in;
    l.out = out;
    l.weight = take(prefix + ".weight", {in, out}, /*transpose=*/true);
    l.bias = take(prefix + ".bias", {out});
    quantize_on_load(l);
    return l;
  }

  torch::Tensor activate(const torch::Tensor& x) const {
    const std::string& a = config_.activation;
    if (a == "gelu") return torch::gelu(x);
    if (a == "relu") return torch::relu(x);
    if (a == "silu") return torch::silu(x);
    return torch::gelu(x, "tanh");  // gelu_new / gelu_pytorch_tanh / gelu_fast: the tanh approximation
  }

  torch::Tensor wpe_, lnf_w_, lnf_b_;
  std::vector<Gpt2Block> blocks_;
  double scale_ = 1.0;
};

}  // namespace

std::unique_ptr<Backbone> make_gpt2(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype, std::optional<QuantOptions> quant) {
  return std::make_unique<Gpt2>(std::move(ck), device, dtype, quant);
}

}  // namespace th
