// Llama family (Llama 2/3, Mistral, Qwen2) as in Hugging Face modeling_llama.py: RMSNorm computed in float32,
// rotary embeddings in the rotate_half convention, grouped-query attention, SwiGLU MLP.
#include <cmath>
#include <tuple>

#include "backbone.h"
#include "errors.h"

namespace th {
namespace {

struct LlamaBlock {
  torch::Tensor ln1, ln2;
  Linear q, k, v, o, gate, up, down;
};

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t d = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, d, d), x.narrow(-1, 0, d)}, -1);
}

class Llama final : public Backbone {
 public:
  Llama(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype, std::optional<QuantOptions> quant)
      : Backbone(std::move(ck), device, dtype, quant) {
    const ModelConfig& c = config_;
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const int64_t qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
    take_token_embeddings("embed_tokens.weight");
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
      LlamaBlock b;
      b.ln1 = take(p + "input_layernorm.weight", {H});
      b.ln2 = take(p + "post_attention_layernorm.weight", {H});
      b.q = linear(p + "self_attn.q_proj", H, qd, c.qkv_bias);
      b.k = linear(p + "self_attn.k_proj", H, kvd, c.qkv_bias);
      b.v = linear(p + "self_attn.v_proj", H, kvd, c.qkv_bias);
      b.o = linear(p + "self_attn.o_proj", qd, H, c.o_bias);
      b.gate = linear(p + "mlp.gate_proj", H, I, c.mlp_bias);
      b.up = linear(p + "mlp.up_proj", H, I, c.mlp_bias);
      b.down = linear(p + "mlp.down_proj", I, H, c.mlp_bias);
      blocks_.push_back(std::move(b));
    }
    norm_ = take("norm.weight", {H});
    if (!c.tie_word_embeddings && !has("lm_head.weight")) {
      throw ConfigError("checkpoint has no 'lm_head.weight' and config.json says tie_word_embeddings is false");
    }
    take_lm_head(c.tie_word_embeddings);
    inv_freq_ = inv_freq(c.rope_theta);
    scale_ = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
    finish_loading();
  }

 protected:
  torch::Tensor embed(const torch::Tensor& ids, const torch::Tensor&) override { return embed_tokens(ids); }

  void prepare(AttentionContext& ctx, const torch::Tensor& pos) override {
    torch::Tensor inv = inv_freq_;
    const RopeScaling& rs = config_.rope_scaling;
    if (rs.type == "dynamic") {
      // HF LlamaDynamicNTKScalingRotaryEmbedding: grow the base once the sequence passes max_position_embeddings.
      const double seq_len = static_cast<double>(pos.max().item<int64_t>() + 1);
      const double max_pos = static_cast<double>(config_.max_position_embeddings);
      if (seq_len > max_pos) {
        const double d = static_cast<double>(config_.head_dim);
        const double base = config_.rope_theta * std::pow(rs.factor * seq_len / max_pos - (rs.factor - 1.0), d / (d - 2.0));
        inv = inv_freq(base);
      }
    }
    // Tables in float32 (HF computes them under autocast-disabled float32), then cast to the model dtype.
    auto freqs = pos.to(torch::kFloat32).unsqueeze(-1) * inv.view({1, 1, -1});
    auto emb = torch::cat({freqs, freqs}, -1);
    ctx.cos = emb.cos().to(dtype_);
    ctx.sin = emb.sin().to(dtype_);
  }

  torch::Tensor block(int64_t index, const torch::Tensor& x, const AttentionContext& ctx) override {
    const LlamaBlock& b = blocks_[index];
    const int64_t B = x.size(0), T = x.size(1);
    const int64_t nh = config_.num_heads, nkv = config_.num_kv_heads, hd = config_.head_dim;
    auto h = rms_norm(x, b.ln1);
    auto q = b.q(h).view({B, T, nh, hd}).transpose(1, 2);
    auto k = b.k(h).view({B, T, nkv, hd}).transpose(1, 2);
    auto v = b.v(h).view({B, T, nkv, hd}).transpose(1, 2);
    auto cos = ctx.cos.unsqueeze(1), sin = ctx.sin.unsqueeze(1);
    q = q * cos + rotate_half(q) * sin;
    k = k * cos + rotate_half(k) * sin;
    if (ctx.cache) std::tie(k, v) = ctx.cache->update(index, k, v);
    const bool windowed = config_.window_for_layer(index) > 0;
    const torch::Tensor& keep = windowed ? ctx.keep_window : ctx.keep;
    const torch::Tensor& dead = windowed ? ctx.dead_window : ctx.dead;
    if (dead.defined()) q = q.masked_fill(dead, 0);  // uniform rows (AttentionContext::dead)
    torch::Tensor y;
    if (nkv != nh) {
      // Grouped-query attention without copying keys and values (HF repeat_kv would, at every decoding step): query
      // head i reads kv head i / g, so the g query heads of a kv head are consecutive and become g * T query rows of
      // it, rows ordered (head, position); the mask repeats the same way.
      const int64_t g = nh / nkv;
      auto rows = attention(q.reshape({B, nkv, g * T, hd}), k, v, keep.repeat({1, 1, g, 1}), scale_);
      y = rows.view({B, nh, T, hd});
    } else {
      y = attention(q, k, v, keep, scale_);
    }
    y = y.transpose(1, 2).reshape({B, T, nh * hd});
    auto a = x + b.o(y);
    auto n = rms_norm(a, b.ln2);
    return a + b.down(torch::silu(b.gate(n)) * b.up(n));
  }

  torch::Tensor final_norm(const torch::Tensor& x) override { return rms_norm(x, norm_); }


 public:
  std::vector<Linear*> linears() override {
    std::vector<Linear*> out;
    for (auto& b : blocks_) out.insert(out.end(), {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down});
    return out;
  }

 protected:

 private:
  Linear linear(const std::string& prefix, int64_t in, int64_t out, bool bias) {
    Linear l;
    l.name = prefix;
    l.in = in;
    l.out = out;
    l.weight = take(prefix + ".weight", {out, in});
    if (bias) l.bias = take(prefix + ".bias", {out});
    quantize_on_load(l);
    return l;
  }

  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w) const {
    auto h = x.to(torch::kFloat32);
    h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + config_.norm_eps);
    return w * h.to(x.scalar_type());
  }

  // inv_freq[i] = 1 / base^(2i/d) in float32, with the static rope_scaling variants applied (HF modeling_rope_utils).
  torch::Tensor inv_freq(double base) const {
    const int64_t d = config_.head_dim;
    auto opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
    auto exponent = torch::arange(0, d, 2, opts).to(torch::kFloat32) / static_cast<double>(d);
    auto inv = 1.0 / torch::pow(base, exponent);
    const RopeScaling& rs = config_.rope_scaling;
    if (rs.type == "linear") {
      inv = inv / rs.factor;
    } else if (rs.type == "llama3") {
      const double orig = rs.original_max_position_embeddings;
      const double low_wavelen = orig / rs.low_freq_factor, high_wavelen = orig / rs.high_freq_factor;
      auto wavelen = 2 * M_PI / inv;
      auto inv_l = torch::where(wavelen > low_wavelen, inv / rs.factor, inv);
      auto smooth = (orig / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
      auto smoothed = (1 - smooth) * inv_l / rs.factor + smooth * inv_l;
      auto medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen);
      inv = torch::where(medium, smoothed, inv_l);
    }
    return inv;
  }

  torch::Tensor norm_, inv_freq_;
  std::vector<LlamaBlock> blocks_;
  double scale_ = 1.0;
};

}  // namespace

std::unique_ptr<Backbone> make_llama(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype, std::optional<QuantOptions> quant) {
  return std::make_unique<Llama>(std::move(ck), device, dtype, quant);
}

}  // namespace th
