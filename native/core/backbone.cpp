#include "backbone.h"

#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include "cpu_allocator.h"
#include "device.h"
#include "errors.h"
#include "format.h"
#include "small_gemm.h"
#include "json_strict.h"
#include "safetensors.h"

namespace th {
namespace {

// Gradient checkpointing of one block (reentrant, as torch.utils.checkpoint): the forward keeps only the block's
// input; the backward recomputes the block with autograd and back-propagates through it, which also accumulates
// the gradients of its trainable weights (LoRA adapters, or all weights when finetuning).
// Autograd functions take defined tensors only: absent context tensors travel as empty placeholders.
torch::Tensor placeholder(const torch::Tensor& t, const torch::Tensor& like) { return t.defined() ? t : torch::empty({0}, like.options()); }
torch::Tensor restore(const torch::Tensor& t) { return t.dim() == 1 && t.numel() == 0 ? torch::Tensor() : t; }

struct CheckpointBlock : public torch::autograd::Function<CheckpointBlock> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, int64_t backbone, int64_t index,
                               torch::Tensor keep, torch::Tensor keep_window, torch::Tensor cos, torch::Tensor sin,
                               torch::Tensor dead, torch::Tensor dead_window) {
    ctx->saved_data["backbone"] = backbone;
    ctx->saved_data["index"] = index;
    ctx->save_for_backward({x, keep, keep_window, cos, sin, dead, dead_window});
    return reinterpret_cast<Backbone*>(backbone)->run_block(index, x, context({keep, keep_window, cos, sin, dead, dead_window}));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto* bb = reinterpret_cast<Backbone*>(ctx->saved_data["backbone"].toInt());
    const int64_t index = ctx->saved_data["index"].toInt();
    torch::Tensor x = saved[0].detach().requires_grad_(true);
    AttentionContext c = context({saved[1], saved[2], saved[3], saved[4], saved[5], saved[6]});
    torch::Tensor y;
    {
      torch::AutoGradMode on(true);
      y = bb->run_block(index, x, c);
    }
    torch::autograd::backward({y}, {grads[0]});
    torch::autograd::variable_list out(9);  // one per forward input
    out[0] = x.grad();
    return out;
  }

  // keep, keep_window, cos, sin, dead, dead_window (placeholders restored to undefined).
  static AttentionContext context(const std::vector<torch::Tensor>& t) {
    AttentionContext c;
    c.keep = t[0];
    c.keep_window = restore(t[1]);
    c.cos = restore(t[2]);
    c.sin = restore(t[3]);
    c.dead = restore(t[4]);
    c.dead_window = restore(t[5]);
    return c;
  }
};

// A quantized projection under autograd, as bitsandbytes' MatMul4Bit: only the quantized weight is kept for the
// backward pass, which dequantizes it again, instead of autograd holding a dense copy of every weight. Nothing is
// saved (the frozen weight gets no gradient, so the input is not needed); 4-bit weights are dequantized in row tiles
// on the CPU in both directions (linear_4bit), never whole.
struct QuantLinearFn : public torch::autograd::Function<QuantLinearFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor bias, int64_t linear) {
    ctx->saved_data["linear"] = linear;
    ctx->saved_data["bias"] = bias.numel() > 0;
    const auto* l = reinterpret_cast<const Linear*>(linear);
    if (l->q4) return linear_4bit(x, *l->q4, restore(bias));
    return torch::linear(x, l->dense(x.scalar_type()), restore(bias));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto* l = reinterpret_cast<const Linear*>(ctx->saved_data["linear"].toInt());
    const torch::Tensor& go = grads[0];
    torch::Tensor gx = l->q4 ? linear_4bit_grad_input(go, *l->q4) : torch::matmul(go, l->dense(go.scalar_type()));
    torch::Tensor gb = ctx->saved_data["bias"].toBool() ? go.reshape({-1, go.size(-1)}).sum(0) : torch::Tensor();
    return {gx, gb, torch::Tensor()};
  }
};

// An 8-bit projection under autograd, as bitsandbytes' MatMul8bitLt: the forward is LLM.int8, the input gradient
// multiplies by the dequantized weight (int8 x row scale / 127), recomputed in the backward pass.
struct Int8LinearFn : public torch::autograd::Function<Int8LinearFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor bias, int64_t linear) {
    ctx->saved_data["linear"] = linear;
    ctx->saved_data["bias"] = bias.numel() > 0;
    const auto* l = reinterpret_cast<const Linear*>(linear);
    return llm_int8_matmul(x, *l->q8, l->int8_threshold, restore(bias));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto* l = reinterpret_cast<const Linear*>(ctx->saved_data["linear"].toInt());
    const torch::Tensor& go = grads[0];
    torch::Tensor gx = torch::matmul(go, dequantize_8bit(*l->q8, go.scalar_type()));
    torch::Tensor gb = ctx->saved_data["bias"].toBool() ? go.reshape({-1, go.size(-1)}).sum(0) : torch::Tensor();
    return {gx, gb, torch::Tensor()};
  }
};

}  // namespace

Backbone::Backbone(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype, std::optional<QuantOptions> quant)
    : config_(std::move(ck.config)),
      device_(device),
      dtype_(dtype),
      tensors_(std::move(ck.tensors)),
      deferred_(std::move(ck.deferred)),
      deferred_dtype_(ck.float_dtype),
      load_quant_(quant),
      config_json_(std::move(ck.config_json)),
      tokenizer_json_(std::move(ck.tokenizer_json)),
      tokenizer_config_json_(std::move(ck.tokenizer_config_json)) {
  if (dtype_ == torch::kFloat16 && device_.is_cpu()) {
    // CPU half matmuls are missing or very slow in older libtorch; refuse early rather than fail mid-forward.
    throw DeviceError("dtype 'float16' is not supported on the CPU; use 'float32' or 'bfloat16' there, float16 on CUDA");
  }
}

torch::Tensor Backbone::take(const std::string& name, std::vector<int64_t> shape, bool transpose) {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    auto d = deferred_.find(name);
    if (d == deferred_.end()) {
      throw ConfigError("checkpoint has no tensor '" + name + "' (expected for model_type " + config_.model_type +
                        " with this config.json)");
    }
    it = tensors_.emplace(name, d->second.file->load(d->second.name, deferred_dtype_)).first;
    deferred_.erase(d);
  }
  const torch::Tensor& t = it->second;
  // Every tensor a backbone takes is a weight it multiplies or adds in its own dtype; an integer one would only fail
  // (or be silently rounded into) the first forward pass.
  if (!t.is_floating_point()) {
    throw FileError("checkpoint tensor '" + name + "' is stored as " + dtype_name(t.scalar_type()) +
                    "; model weights must be floating point (float32, float16, bfloat16 or float64)");
  }
  if (t.sizes() != c10::IntArrayRef(shape)) {
    throw ConfigError("checkpoint tensor '" + name + "' has shape " + shape_str(t.sizes()) + " but config.json implies " +
                      shape_str(shape));
  }
  torch::Tensor out = t.to(device_, t.is_floating_point() ? dtype_ : t.scalar_type());
  out = (transpose ? out.t() : out).contiguous();
  // A fresh leaf: never an alias of the archive's own parameter, so requires_grad can be set on it.
  out = out.detach();
  // The backbone's copy is the only one from here on (a tied tensor is taken once and shared by the architecture).
  tensors_.erase(it);
  params_.emplace_back(name, out);
  if (transpose) transposed_.insert(name);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> Backbone::hf_state_dict() const {
  if (quantized_) {
    throw ConfigError("this model's projections are quantized (4/8-bit); saving them would write dequantized, lossy weights. "
                      "Merge the adapters first (mergeAndUnload, which makes the weights dense) or save from a model loaded "
                      "without quantization");
  }
  torch::NoGradGuard no_grad;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.reserve(params_.size());
  const std::string prefix = base_prefix();
  for (const auto& [name, t] : params_) {
    // lm_head.weight lives outside the base model in Hugging Face's layout (and is absent when tied to the embeddings,
    // as it is never in params_ then).
    const std::string key = name == "lm_head.weight" ? name : prefix + name;
    torch::Tensor v = transposed_.count(name) ? t.t() : t;
    out.emplace_back(key, v.detach().to(torch::kCPU, torch::kFloat32, /*non_blocking=*/false, /*copy=*/true).contiguous());
  }
  return out;
}

void Backbone::set_requires_grad(bool on) {
  for (auto& p : params_) p.second.requires_grad_(on);
}

void Backbone::finish_loading() {
  tensors_.clear();
  deferred_.clear();  // unmaps the files
  if (load_quant_) quantized_ = true;
  sync_lm_head();
  measure();
}

void Backbone::quantize_on_load(Linear& l) {
  if (load_quant_) quantize_linear(l, *load_quant_);
}

void check_quant_options(const QuantOptions& o) {
  if (o.bits != 4 && o.bits != 8) throw ConfigError("quantization bits must be 4 or 8, got " + std::to_string(o.bits));
  if (o.embeddings && o.bits != 4) {
    throw ConfigError("quantizeEmbeddings needs 4-bit quantization (bitsandbytes has no 8-bit embedding), got bits " +
                      std::to_string(o.bits));
  }
}

torch::Tensor dense_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  torch::Tensor y = small_linear(x, w, bias);  // a generation step's few rows through BLIS (small_gemm.h)
  return y.defined() ? y : torch::linear(x, w, bias);
}

void Backbone::take_token_embeddings(const std::string& name) {
  tokens_.name = name.substr(0, name.rfind(".weight"));
  tokens_.out = config_.vocab_size;
  tokens_.in = config_.hidden_size;
  tokens_.weight = take(name, {tokens_.out, tokens_.in});
  if (load_quant_ && load_quant_->embeddings) quantize_linear(tokens_, *load_quant_);
}

void Backbone::take_lm_head(bool tied) {
  tied_ = tied;
  if (!tied) lm_head_ = take("lm_head.weight", {config_.vocab_size, config_.hidden_size});
}

torch::Tensor Backbone::embed_tokens(const torch::Tensor& ids) const {
  return tokens_.q4 ? embedding_4bit(*tokens_.q4, ids, dtype_) : torch::embedding(tokens_.weight, ids);
}

torch::Tensor Backbone::lm_head(const torch::Tensor& x) const { return tied_ ? tokens_(x) : dense_linear(x, lm_head_, {}); }

void Backbone::sync_lm_head() {
  Linear& lm = lm_head_projection_;
  lm.name = "lm_head";
  lm.weight = tied_ ? tokens_.weight : lm_head_;
  lm.q4 = tied_ ? tokens_.q4 : nullptr;
  lm.compute_dtype = tied_ ? tokens_.compute_dtype : dtype_;
  lm.out = config_.vocab_size;
  lm.in = config_.hidden_size;
}

void Backbone::quantize_linear(Linear& l, const QuantOptions& o) {
  if (!(o.llm_int8_threshold >= 0.0) || !std::isfinite(o.llm_int8_threshold)) {
    throw ConfigError("llmInt8Threshold must be a finite number >= 0, got " + std::to_string(o.llm_int8_threshold));
  }
  torch::NoGradGuard no_grad;
  torch::Tensor w = l.weight;
  if (o.bits == 4) l.q4 = std::make_shared<Quant4>(quantize_4bit(w, o.type, o.blocksize, o.double_quant));
  else l.q8 = std::make_shared<Quant8>(quantize_8bit(w));
  l.compute_dtype = o.compute_dtype;
  l.int8_threshold = o.llm_int8_threshold;
  l.weight = torch::Tensor();
  // Searched from the back: at load the weight was just appended.
  for (auto it = params_.rbegin(); it != params_.rend(); ++it) {
    if (it->second.is_same(w)) {
      params_.erase(std::next(it).base());
      break;
    }
  }
}

Backbone::Footprint Backbone::footprint() {
  Footprint f;
  std::set<const void*> seen;
  for (const auto& p : params_) {
    const void* key = p.second.storage().unsafeGetStorageImpl();
    if (seen.insert(key).second) f.dense += static_cast<int64_t>(p.second.storage().nbytes());
  }
  if (tokens_.q4) f.quantized += tokens_.q4->bytes();
  for (Linear* l : linears()) {
    if (l->q4) f.quantized += l->q4->bytes();
    if (l->q8) f.quantized += l->q8->bytes();
    if (l->lora_a.defined()) f.lora += (l->lora_a.numel() + l->lora_b.numel()) * l->lora_a.element_size();
  }
  const Linear* lm = lm_head_projection();
  if (lm->lora_a.defined()) f.lora += (lm->lora_a.numel() + lm->lora_b.numel()) * lm->lora_a.element_size();
  return f;
}

void Backbone::measure() {
  Footprint f = footprint();
  parameter_bytes_ = f.dense + f.quantized + f.lora;
}

torch::Tensor Linear::dense(torch::ScalarType dtype) const {
  if (q4) return dequantize_4bit(*q4, dtype);
  if (q8) return dequantize_8bit(*q8, dtype);
  return weight.to(dtype);
}

torch::Tensor Linear::operator()(const torch::Tensor& x) const {
  torch::Tensor y;
  if (q8) {
    // bitsandbytes' Linear8bitLt: LLM.int8 in the compute dtype, result back in x's dtype.
    auto xc = x.to(compute_dtype);
    auto b = bias.defined() ? bias.to(compute_dtype) : bias;
    if (torch::GradMode::is_enabled() && (xc.requires_grad() || (b.defined() && b.requires_grad()))) {
      y = Int8LinearFn::apply(xc, placeholder(b, xc), reinterpret_cast<int64_t>(this));
    } else {
      y = llm_int8_matmul(xc, *q8, int8_threshold, b);
    }
    y = y.to(x.scalar_type());
  } else if (quantized()) {
    // bitsandbytes' Linear4bit: x in the compute dtype against the dequantized weight, result back in x's dtype.
    auto xc = x.to(compute_dtype);
    auto b = bias.defined() ? bias.to(compute_dtype) : bias;
    if (torch::GradMode::is_enabled() && (xc.requires_grad() || (b.defined() && b.requires_grad()))) {
      y = QuantLinearFn::apply(xc, placeholder(b, xc), reinterpret_cast<int64_t>(this));
    } else {
      y = q4 ? linear_4bit(xc, *q4, b) : torch::linear(xc, dense(compute_dtype), b);
    }
    y = y.to(x.scalar_type());
  } else {
    y = dense_linear(x, weight, bias);
  }
  if (lora_a.defined()) {
    torch::Tensor h = x.to(lora_a.scalar_type());
    if (dropout > 0 && torch::GradMode::is_enabled()) h = torch::dropout(h, dropout, /*train=*/true);
    y = y + (torch::linear(torch::linear(h, lora_a), lora_b) * scaling).to(y.scalar_type());
  }
  return y;
}

void Backbone::quantize(const QuantOptions& o) {
  check_quant_options(o);
  if (quantized_) throw ConfigError("the model is already quantized");
  ScopedCpuCacheBypass one_off_buffers;  // the float weights and quantization temporaries, as when loading
  for (Linear* l : linears()) quantize_linear(*l, o);
  if (o.embeddings) quantize_linear(tokens_, o);
  quantized_ = true;
  sync_lm_head();
  measure();
}

// Backbone::add_lora is in lora.cpp, with the PEFT module-matching rules it applies.

std::vector<std::pair<std::string, torch::Tensor>> Backbone::lora_parameters() {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const std::string prefix = base_prefix();
  for (Linear* l : linears()) {
    if (!l->lora_a.defined()) continue;
    out.emplace_back(prefix + l->name + ".lora_A.weight", l->lora_a);
    out.emplace_back(prefix + l->name + ".lora_B.weight", l->lora_b);
  }
  const Linear* lm = lm_head_projection();
  if (lm->lora_a.defined()) {
    out.emplace_back("lm_head.lora_A.weight", lm->lora_a);
    out.emplace_back("lm_head.lora_B.weight", lm->lora_b);
  }
  return out;
}

void Backbone::merge_lora() {
  torch::NoGradGuard no_grad;
  Linear* lm = lm_head_projection();
  if (lm->lora_a.defined()) {
    // Untied, lm_head.weight is its own entry; tied, the same tensor is the input embeddings (PEFT merges into it
    // anyway, changing the embeddings; refused here before anything is folded).
    bool own = false;
    for (const auto& [name, t] : params_) own = own || (name == "lm_head.weight" && t.is_same(lm->weight));
    if (!own) {
      throw ConfigError("the lm_head LoRA adapter cannot be merged: this model's lm_head is tied to its input embeddings, so "
                        "folding the adapter in would change the embeddings too; keep the adapters unmerged (saveLora / save "
                        "write them as PEFT does), or leave 'lm_head' out of targetModules");
    }
    lm->weight.add_((torch::matmul(lm->lora_b, lm->lora_a) * lm->scaling).to(lm->weight.scalar_type()));
    lm->lora_a = torch::Tensor();
    lm->lora_b = torch::Tensor();
  }
  std::vector<Linear*> all = linears();
  all.push_back(&tokens_);  // a quantized table becomes dense like the projections
  for (Linear* l : all) {
    if (!l->lora_a.defined() && !l->quantized()) continue;
    torch::Tensor w = l->dense(torch::kFloat32);
    if (l->lora_a.defined()) w = w + torch::matmul(l->lora_b, l->lora_a) * l->scaling;
    l->weight = w.to(dtype_).contiguous();
    l->q4.reset();
    l->q8.reset();
    l->lora_a = torch::Tensor();
    l->lora_b = torch::Tensor();
    // A dense projection already has its entry: replace it, or the old weight would stay listed (and allocated).
    const std::string key = l->name + ".weight";
    auto it = std::find_if(params_.begin(), params_.end(), [&](const auto& p) { return p.first == key; });
    if (it != params_.end()) it->second = l->weight;
    else params_.emplace_back(key, l->weight);
  }
  quantized_ = false;
  sync_lm_head();
  measure();
}

std::pair<torch::Tensor, torch::Tensor> KVCache::update(int64_t layer, const torch::Tensor& k, const torch::Tensor& v) {
  if (layer >= static_cast<int64_t>(k_.size())) {
    k_.resize(layer + 1);
    v_.resize(layer + 1);
  }
  const int64_t T = k.size(2), need = length_ + T;
  torch::Tensor& kb = k_[layer];
  torch::Tensor& vb = v_[layer];
  if (!kb.defined() || kb.size(2) < need) {
    const int64_t cap = std::max({need, reserve_, kb.defined() ? 2 * kb.size(2) : int64_t(0)});
    auto grow = [&](torch::Tensor& buf, const torch::Tensor& like) {
      auto sizes = like.sizes().vec();
      sizes[2] = cap;
      torch::Tensor fresh = torch::empty(sizes, like.options());
      if (buf.defined() && length_ > 0) fresh.narrow(2, 0, length_).copy_(buf.narrow(2, 0, length_));
      buf = fresh;
    };
    grow(kb, k);
    grow(vb, v);
  }
  kb.narrow(2, length_, T).copy_(k);
  vb.narrow(2, length_, T).copy_(v);
  return {kb.narrow(2, 0, need), vb.narrow(2, 0, need)};
}

int64_t KVCache::bytes() const {
  int64_t n = 0;
  for (size_t i = 0; i < k_.size(); ++i) {
    if (k_[i].defined()) n += (k_[i].numel() + v_[i].numel()) * k_[i].element_size();
  }
  return n;
}

int64_t Backbone::normalize_layer(int64_t layer) const {
  const int64_t n = config_.num_layers + 1;  // L+1 hidden states
  if (layer < -n || layer >= n) {
    throw ValueError("layer index " + std::to_string(layer) + " is out of range: this model has " +
                     std::to_string(config_.num_layers) + " layers, so hidden-state indices go from " +
                     std::to_string(-n) + " to " + std::to_string(n - 1));
  }
  return layer < 0 ? layer + n : layer;
}

torch::Tensor positions_from_mask(const torch::Tensor& mask) {
  return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1);
}

PositionMode parse_position_mode(const std::string& name) {
  if (name == "from-mask") return PositionMode::FromMask;
  if (name == "sequential") return PositionMode::Sequential;
  throw ConfigError("positions must be 'from-mask' or 'sequential', got '" + bounded_name(name) + "'");
}

const char* position_mode_name(PositionMode mode) { return mode == PositionMode::Sequential ? "sequential" : "from-mask"; }

void Backbone::check_inputs(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& positions) const {
  if (ids.dim() != 2) throw ShapeError("input_ids must have shape [batch, seq], got " + shape_str(ids.sizes()));
  if (ids.size(0) == 0 || ids.size(1) == 0) throw ShapeError("input_ids is empty: shape " + shape_str(ids.sizes()));
  if (mask.sizes() != ids.sizes()) {
    throw ShapeError("attention_mask shape " + shape_str(mask.sizes()) + " does not match input_ids shape " +
                     shape_str(ids.sizes()));
  }
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= config_.vocab_size) {
    throw ShapeError("input_ids holds token id " + std::to_string(lo < 0 ? lo : hi) + " outside the vocabulary [0, " +
                     std::to_string(config_.vocab_size) + ")");
  }
  if (!(mask.eq(0) | mask.eq(1)).all().item<bool>()) throw ShapeError("attention_mask may only hold 0 and 1");
  if (config_.arch == Arch::GPT2) {
    const int64_t maxpos = positions.max().item<int64_t>();
    if (maxpos >= config_.max_position_embeddings) {
      throw ShapeError("sequence needs position " + std::to_string(maxpos) + " but this GPT-2 model has only " +
                       std::to_string(config_.max_position_embeddings) + " learned positions (n_positions)");
    }
  }
}

std::pair<torch::Tensor, torch::Tensor> Backbone::prepare_inputs(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) const {
  torch::Tensor ids = input_ids.to(torch::kCPU, torch::kLong);
  torch::Tensor mask = attention_mask.defined() ? attention_mask.to(torch::kCPU, torch::kLong) : torch::ones_like(ids);
  torch::Tensor pos = ids.dim() == 2 && mask.sizes() == ids.sizes() ? positions_from_mask(mask) : torch::Tensor();
  check_inputs(ids, mask, pos);
  return {ids.to(device_), mask.to(device_)};
}

torch::Tensor Backbone::prepare_positions(const torch::Tensor& position_ids, const torch::Tensor& ids) const {
  if (!position_ids.defined()) return {};
  torch::Tensor pos = position_ids.to(torch::kCPU, torch::kLong);
  if (pos.sizes() != ids.sizes()) {
    throw ShapeError("position_ids shape " + shape_str(pos.sizes()) + " does not match input_ids shape " + shape_str(ids.sizes()));
  }
  const int64_t lo = pos.min().item<int64_t>(), hi = pos.max().item<int64_t>();
  if (lo < 0) throw ShapeError("position_ids holds " + std::to_string(lo) + ": positions must be >= 0");
  if (config_.arch == Arch::GPT2 && hi >= config_.max_position_embeddings) {
    throw ShapeError("position_ids holds position " + std::to_string(hi) + " but this GPT-2 model has only " +
                     std::to_string(config_.max_position_embeddings) + " learned positions (n_positions)");
  }
  // Rotary tables are computed in float32 from the positions: beyond 2^24 they would not be exact integers.
  if (hi >= (int64_t(1) << 24)) throw ShapeError("position_ids holds " + std::to_string(hi) + ": positions must be < 2^24");
  return pos.to(device_);
}

std::vector<torch::Tensor> Backbone::run(const torch::Tensor& ids, const torch::Tensor& mask, int64_t stop,
                                         const std::vector<bool>& wanted, KVCache* cache, const torch::Tensor& positions,
                                         bool generation) {
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t past = cache ? cache->length() : 0, S = past + T;
  if (cache) {
    if (stop != config_.num_layers) throw ValueError("a forward with a KV cache must run every block");
    if (mask.size(0) != B || mask.size(1) != S) {
      throw ShapeError("attention_mask " + shape_str(mask.sizes()) + " must cover the " + std::to_string(past) +
                       " cached positions and the " + std::to_string(T) + " new ones");
    }
    if (torch::GradMode::is_enabled()) throw ValueError("the KV cache is for inference only (no autograd)");
  }
  generation = generation || cache != nullptr;
  if (positions.defined() && generation) throw ValueError("generation derives positions from the mask; position_ids cannot be given");
  // Python's forward (position_ids=None) semantics, pads included: sequential positions and eager-attention rows.
  const bool python_forward = position_mode_ == PositionMode::Sequential && !generation;
  torch::Tensor pos;
  if (positions.defined()) {
    pos = positions;
  } else if (python_forward) {
    if (config_.arch == Arch::GPT2 && T > config_.max_position_embeddings) {
      throw ShapeError("sequence of " + std::to_string(T) + " tokens needs position " + std::to_string(T - 1) +
                       " but this GPT-2 model has only " + std::to_string(config_.max_position_embeddings) +
                       " learned positions (n_positions)");
    }
    pos = torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(device_)).expand({B, T});
  } else {
    pos = positions_from_mask(mask).narrow(1, past, T);
  }
  AttentionContext ctx;
  ctx.cache = cache;
  {
    auto opts = torch::TensorOptions().dtype(torch::kLong).device(device_);
    auto i = torch::arange(past, S, opts).view({T, 1}), j = torch::arange(S, opts).view({1, S});
    // As Hugging Face: query i sees real keys j <= i (and inside the sliding window); a padding query after real
    // tokens (right padding) sees those, as in Hugging Face. A query that would see no key at all (left padding, or
    // a row of padding only) would give an all -inf softmax row (NaN). By default it sees itself instead. With
    // sequential positions it gets what transformers' eager attention gives it (every score finfo.min, so a uniform
    // softmax): over every key for the Llama family (one combined additive mask), and over the padding keys up to
    // itself plus the real keys after it for GPT-2 (its causal fill and its padding mask add up to -inf where both
    // apply); AttentionContext::dead makes those rows uniform.
    auto causal = (j <= i).view({1, 1, T, S});
    auto diag = (i == j).view({1, 1, T, S});
    auto real = mask.view({B, 1, 1, S}).ne(0);
    auto visible = causal & real;
    auto dead_keep = [&](const torch::Tensor& seen, torch::Tensor& dead) {
      torch::Tensor none = seen.any(-1, /*keepdim=*/true).logical_not();
      if (!python_forward) return seen | (diag & none);
      if (!none.any().item<bool>()) return seen;
      dead = none;
      const torch::Tensor fill = config_.arch == Arch::GPT2 ? ((causal & real.logical_not()) | (causal.logical_not() & real))
                                                           : torch::ones({1, 1, 1, S}, opts.dtype(torch::kBool));
      return seen | (none & fill);
    };
    ctx.keep = dead_keep(visible, ctx.dead);
    if (config_.sliding_window > 0) {
      auto win = visible & (j > i - config_.sliding_window).view({1, 1, T, S});
      ctx.keep_window = dead_keep(win, ctx.dead_window);
    }
  }
  prepare(ctx, pos);

  std::vector<torch::Tensor> captured(config_.num_layers + 1);
  torch::Tensor x = embed(ids, pos);
  const int64_t run_blocks = std::min(stop, config_.num_layers);
  const bool checkpoint = checkpointing_ && torch::GradMode::is_enabled();
  for (int64_t b = 0; b < run_blocks; ++b) {
    if (wanted[b]) captured[b] = x;
    if (checkpoint) {
      // As Hugging Face's enable_input_require_grads: the recompute needs an input in the graph, even when the
      // embeddings are frozen, or the adapters of block 0 would get no gradient.
      if (!x.requires_grad()) x = x.detach().requires_grad_(true);
      x = CheckpointBlock::apply(x, reinterpret_cast<int64_t>(this), b, ctx.keep, placeholder(ctx.keep_window, ctx.keep),
                                 placeholder(ctx.cos, x), placeholder(ctx.sin, x), placeholder(ctx.dead, ctx.keep),
                                 placeholder(ctx.dead_window, ctx.keep));
    } else {
      x = block(b, x, ctx);
    }
    ++blocks_run_;
  }
  if (cache) cache->advance(T);
  if (stop == config_.num_layers) {
    captured[stop] = final_norm(x);
  } else if (wanted[stop]) {
    captured[stop] = x;
  }
  return captured;
}

ForwardResult Backbone::forward(const ForwardRequest& req) {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  auto [ids, mask] = prepare_inputs(req.input_ids, req.attention_mask);
  const torch::Tensor pos = prepare_positions(req.position_ids, ids);

  std::vector<int64_t> norm;
  norm.reserve(req.layers.size());
  int64_t stop = req.logits ? config_.num_layers : -1;
  for (int64_t l : req.layers) {
    norm.push_back(normalize_layer(l));
    stop = std::max(stop, norm.back());
  }
  if (stop < 0) throw ValueError("nothing to compute: ask for at least one layer or for the logits");
  std::vector<bool> wanted(config_.num_layers + 1, false);
  for (int64_t n : norm) wanted[n] = true;

  std::vector<torch::Tensor> captured = run(ids, mask, stop, wanted, nullptr, pos);
  ForwardResult out;
  for (size_t k = 0; k < norm.size(); ++k) out.hidden_states.emplace_back(req.layers[k], captured[norm[k]]);
  if (req.logits) out.logits = lm_head(captured[config_.num_layers]);
  return out;
}

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& keep,
                        double scale) {
#if TORCH_VERSION_MAJOR >= 2
  // SDPA picks a fused kernel where one applies (flash / memory-efficient on CUDA). Its default scale is
  // 1/sqrt(head_dim); other scales are folded into q so the code also works on 2.0, which has no `scale` argument.
  const double def = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const torch::Tensor qs = std::abs(scale - def) < 1e-12 ? q : q * (scale / def);
  return at::scaled_dot_product_attention(qs, k, v, keep);
#else
  auto w = torch::matmul(q, k.transpose(-1, -2)) * scale;
  w = w.masked_fill(keep.logical_not(), -std::numeric_limits<float>::infinity());
  w = torch::softmax(w, -1, torch::kFloat32).to(v.scalar_type());
  return torch::matmul(w, v);
#endif
}

std::shared_ptr<Backbone> load_backbone(const std::string& path, const LoadOptions& options) {
  const torch::Device device = parse_device(options.device);
  const torch::ScalarType dtype = parse_dtype(options.dtype);
  if (options.quant) check_quant_options(*options.quant);
  const PositionMode positions = parse_position_mode(options.positions);
  // Every backbone is built here: what loading frees (file reads, the archive's copies of transposed weights, the
  // float weights of quantized projections) is not kept by the caching allocator.
  ScopedCpuCacheBypass one_off_buffers;
  // Deferred reading only when quantizing: then each projection is quantized before the next is read.
  Checkpoint ck = load_checkpoint(path, dtype, /*defer=*/options.quant.has_value());
  std::shared_ptr<Backbone> bb = ck.config.arch == Arch::GPT2 ? make_gpt2(std::move(ck), device, dtype, options.quant)
                                                              : make_llama(std::move(ck), device, dtype, options.quant);
  bb->set_position_mode(positions);
  return bb;
}

}  // namespace th
