#include "heads.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>
#include <sstream>

#include "device.h"
#include "errors.h"
#include "format.h"

namespace th {
namespace {

using json = nlohmann::json;

Activation parse_activation(const std::string& head, const std::string& s) {
  if (s == "linear") return Activation::Linear;
  if (s == "sigmoid") return Activation::Sigmoid;
  if (s == "relu") return Activation::Relu;
  throw ConfigError("head '" + head + "': output_activation '" + s + "' is not one of linear, sigmoid, relu");
}

LossFn parse_loss(const std::string& head, const json& v) {
  if (v.is_null()) return LossFn::None;
  const std::string s = v.get<std::string>();
  if (s == "cross_entropy") return LossFn::CrossEntropy;
  if (s == "mse") return LossFn::MSE;
  if (s == "masked_mse") return LossFn::MaskedMSE;
  if (s == "bce") return LossFn::BCE;
  if (s == "bce_with_logits") return LossFn::BCEWithLogits;
  throw ConfigError("head '" + head + "': loss_fct '" + s + "' is not one of cross_entropy, mse, masked_mse, bce, bce_with_logits");
}

template <typename T>
T field(const json& o, const char* key, const std::string& head, T fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw ConfigError("head '" + head + "': field '" + key + "' has the wrong type: " + it->dump());
  }
}

}  // namespace

std::vector<HeadConfig> parse_head_configs(const std::string& text) {
  json arr;
  try {
    arr = json::parse(text);
  } catch (const json::exception& e) {
    throw ConfigError(std::string("head configs are not valid JSON: ") + e.what());
  }
  if (!arr.is_array()) throw ConfigError("head configs must be a JSON array");
  std::vector<HeadConfig> out;
  for (const auto& o : arr) {
    if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) throw ConfigError("every head config needs a string 'name'");
    HeadConfig c;
    c.name = o["name"].get<std::string>();
    if (!o.contains("in_size")) throw ConfigError("head '" + c.name + "': 'in_size' is required");
    c.in_size = field<int64_t>(o, "in_size", c.name, 0);
    if (o.contains("num_outputs") && !o["num_outputs"].is_null()) c.num_outputs = field<int64_t>(o, "num_outputs", c.name, 1);
    c.layer_hook = field<int64_t>(o, "layer_hook", c.name, -1);
    c.hidden_size = field<int64_t>(o, "hidden_size", c.name, 0);
    c.num_layers = field<int64_t>(o, "num_layers", c.name, 1);
    c.output_activation = parse_activation(c.name, field<std::string>(o, "output_activation", c.name, "linear"));
    c.target = field<std::string>(o, "target", c.name, c.name);
    c.is_causal_lm = field<bool>(o, "is_causal_lm", c.name, false);
    c.pred_for_sequence = field<bool>(o, "pred_for_sequence", c.name, false);
    c.is_regression = field<bool>(o, "is_regression", c.name, false);
    c.output_bias = field<bool>(o, "output_bias", c.name, false);
    c.loss_fct = o.contains("loss_fct") ? parse_loss(c.name, o["loss_fct"]) : LossFn::CrossEntropy;
    c.trainable = field<bool>(o, "trainable", c.name, true);
    c.loss_weight = field<double>(o, "loss_weight", c.name, 1.0);
    c.ignore_pads = field<bool>(o, "ignore_pads", c.name, !c.is_causal_lm);
    c.block_gradients = field<bool>(o, "block_gradients", c.name, false);
    if (c.is_causal_lm && c.pred_for_sequence) throw ConfigError("head '" + c.name + "': pred_for_sequence cannot be combined with is_causal_lm");
    if (c.num_layers < 1) throw ConfigError("head '" + c.name + "': num_layers must be at least 1, got " + std::to_string(c.num_layers));
    if (c.num_layers > 1 && c.hidden_size < 1) throw ConfigError("head '" + c.name + "': an MLP head (num_layers > 1) needs hidden_size > 0");
    if (c.num_outputs && *c.num_outputs < 1) throw ConfigError("head '" + c.name + "': num_outputs must be positive");
    if (c.in_size < 1) throw ConfigError("head '" + c.name + "': in_size must be positive");
    out.push_back(std::move(c));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- Head

Head::Head(const HeadConfig& cfg, int64_t out_features, torch::Device device, torch::Generator& gen) : cfg_(cfg) {
  // Hugging Face's _init_weights for new Linear modules: weight ~ N(0, initializer_range = 0.02), bias = 0.
  auto make = [&](int64_t in, int64_t out, bool bias) {
    auto w = (at::randn({out, in}, gen, torch::TensorOptions().dtype(torch::kFloat32)) * 0.02).to(device);
    weights_.push_back(w);
    biases_.push_back(bias ? torch::zeros({out}, torch::TensorOptions().dtype(torch::kFloat32).device(device)) : torch::Tensor());
  };
  if (cfg.num_layers == 1) {
    make(cfg.in_size, out_features, cfg.output_bias);
  } else {
    make(cfg.in_size, cfg.hidden_size, true);
    for (int64_t i = 0; i < cfg.num_layers - 2; ++i) make(cfg.hidden_size, cfg.hidden_size, true);
    make(cfg.hidden_size, out_features, cfg.output_bias);
  }
}

Head::Head(const HeadConfig& cfg, torch::Tensor lm_head_weight) : cfg_(cfg), is_lm_head_(true) {
  weights_.push_back(std::move(lm_head_weight));
  biases_.push_back(torch::Tensor());
}

torch::Tensor Head::forward(const torch::Tensor& input) const {
  // Python casts the hooked state to the head's dtype and the logits to float32.
  torch::Tensor x = input.to(weights_[0].scalar_type());
  if (is_lm_head_) return torch::linear(x, weights_[0]).to(torch::kFloat32);  // a bare Linear in Python
  if (cfg_.block_gradients) x = x.detach();
  for (size_t i = 0; i < weights_.size(); ++i) {
    x = torch::linear(x, weights_[i], biases_[i]);
    if (i + 1 < weights_.size()) x = torch::relu(x);
  }
  if (cfg_.output_activation == Activation::Sigmoid) x = torch::sigmoid(x);
  if (cfg_.output_activation == Activation::Relu) x = torch::relu(x);
  return x.to(torch::kFloat32);
}

std::vector<std::pair<std::string, torch::Tensor>> Head::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < weights_.size(); ++i) {
    out.emplace_back("lins." + std::to_string(i) + ".weight", weights_[i]);
    if (biases_[i].defined()) out.emplace_back("lins." + std::to_string(i) + ".bias", biases_[i]);
  }
  return out;
}

void Head::load(const std::map<std::string, torch::Tensor>& state) {
  auto mine = named_parameters();
  std::set<std::string> expected;
  for (const auto& [k, t] : mine) expected.insert(k);
  for (const auto& [k, t] : state) {
    if (!expected.count(k)) throw ConfigError("head '" + cfg_.name + "': unexpected tensor '" + k + "' in its weights file");
  }
  torch::NoGradGuard no_grad;
  for (auto& [k, t] : mine) {
    auto it = state.find(k);
    if (it == state.end()) throw ConfigError("head '" + cfg_.name + "': its weights file has no tensor '" + k + "'");
    torch::Tensor src = it->second.dim() == 0 ? it->second.reshape({1}) : it->second;  // Python's patch_state_dict
    if (src.sizes() != t.sizes()) {
      throw ConfigError("head '" + cfg_.name + "': tensor '" + k + "' has shape " + shape_str(src.sizes()) +
                        " in the file but the head config implies " + shape_str(t.sizes()));
    }
    t.copy_(src);
  }
}

// ---------------------------------------------------------------------------------------------------- losses

torch::Tensor compute_loss(LossFn fn, const torch::Tensor& input, const torch::Tensor& target) {
  switch (fn) {
    case LossFn::CrossEntropy:
      return at::cross_entropy_loss(input, target.to(torch::kLong), {}, at::Reduction::Mean, /*ignore_index=*/-100);
    case LossFn::MSE:
      return at::mse_loss(input, target.to(input.scalar_type()));
    case LossFn::MaskedMSE: {
      // Python: mask = target != -100; MSE(input[mask], target[mask]). Input and target are meant to have the same
      // shape; when only the layout differs ([N, 1] vs [N]) we align them instead of broadcasting to [N, N].
      torch::Tensor t = target.to(input.scalar_type());
      torch::Tensor in = input.numel() == t.numel() ? input.reshape(t.sizes()) : input;
      auto mask = t.ne(-100);
      return at::mse_loss(in.masked_select(mask), t.masked_select(mask));
    }
    case LossFn::BCE:
      return at::binary_cross_entropy(input, target.to(input.scalar_type()));
    case LossFn::BCEWithLogits:
      return at::binary_cross_entropy_with_logits(input, target.to(input.scalar_type()));
    case LossFn::None:
      break;
  }
  throw ValueError("no loss function");
}

// ---------------------------------------------------------------------------------------------------- HeadedModel

HeadedModel::HeadedModel(std::shared_ptr<Backbone> backbone, std::vector<HeadConfig> configs, HeadedOptions options)
    : backbone_(std::move(backbone)), options_(options) {
  if (configs.empty()) throw ConfigError("a headed model needs at least one head");
  const ModelConfig& mc = backbone_->config();
  std::set<std::string> names;
  std::optional<HeadConfig> lm_cfg;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  for (const auto& c : configs) {
    if (!names.insert(c.name).second) throw ConfigError("two heads are named '" + c.name + "'; head names must be unique");
    if (c.in_size != mc.hidden_size) {
      throw ConfigError("head '" + c.name + "': in_size " + std::to_string(c.in_size) + " does not match the model's hidden size " +
                        std::to_string(mc.hidden_size));
    }
    try {
      backbone_->normalize_layer(c.layer_hook);
    } catch (const ValueError& e) {
      throw ConfigError("head '" + c.name + "': layer_hook " + e.what());
    }
    if (c.name == "lm_head") {
      lm_cfg = c;
      continue;
    }
    heads_.emplace_back(c, c.num_outputs.value_or(1), backbone_->device(), gen);
  }
  if (options_.quant) {
    if (!options_.freeze_base && !options_.lora && !options_.only_inference) {
      throw ConfigError("a quantized backbone cannot be fully finetuned (freezeBaseModel: false); freeze it, or train LoRA "
                        "adapters on it with createHeadedQLoRA");
    }
    backbone_->quantize(*options_.quant);
  }
  if (options_.lora) backbone_->add_lora(*options_.lora);
  if (options_.gradient_checkpointing) {
    // The recompute must see the same dropout masks; without saving the RNG state it would not.
    if (options_.lora && options_.lora->dropout > 0) {
      throw ConfigError("gradient checkpointing cannot be combined with LoRA dropout > 0 yet; set lora.dropout to 0");
    }
    backbone_->set_gradient_checkpointing(true);
  }
  if (lm_cfg) {
    // Python swaps in the pretrained (possibly tied) LM head as a bare Linear: one layer, hidden -> vocab, no bias.
    if (lm_cfg->num_layers != 1 || lm_cfg->output_bias || (lm_cfg->num_outputs && *lm_cfg->num_outputs != mc.vocab_size)) {
      throw ConfigError("the head named 'lm_head' reuses the model's pretrained LM head, so it must have num_layers 1, "
                        "num_outputs " + std::to_string(mc.vocab_size) + " (the vocabulary size) and output_bias false");
    }
    heads_.emplace_back(*lm_cfg, backbone_->lm_head_weight());
  }

  // Which tensors train (Python load_headed / set_requires_grad: with LoRA only "lora" tensors, the chosen biases and
  // the trainable heads).
  const bool train = !options_.only_inference;
  backbone_->set_requires_grad(train && !options_.freeze_base && !options_.lora);
  if (options_.lora) {
    if (options_.lora_bias != "none" && options_.lora_bias != "all" && options_.lora_bias != "lora_only") {
      throw ConfigError("LoRA bias must be 'none', 'all' or 'lora_only', got '" + options_.lora_bias + "'");
    }
    for (auto& [n, t] : backbone_->lora_parameters()) t.requires_grad_(train);
    for (Linear* l : backbone_->linears()) {
      const bool wrapped = l->lora_a.defined();
      if (l->bias.defined() && train && (options_.lora_bias == "all" || (options_.lora_bias == "lora_only" && wrapped))) {
        l->bias.requires_grad_(true);
      }
    }
    if (train && options_.lora_bias == "all") {
      for (auto& [n, t] : backbone_->named_parameters()) {
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".bias") == 0) t.requires_grad_(true);
      }
    }
  }
  for (auto& h : heads_) {
    const bool on = train && h.config().trainable && (!options_.lora || options_.fully_trained_heads);
    if (h.is_lm_head()) {
      if (on) h.named_parameters()[0].second.requires_grad_(true);
    } else {
      for (auto& [k, t] : h.named_parameters()) t.requires_grad_(on);
    }
  }
}

std::vector<int64_t> HeadedModel::hooked_layers() const {
  std::set<int64_t> s;
  for (const auto& h : heads_) s.insert(backbone_->normalize_layer(h.config().layer_hook));
  return {s.begin(), s.end()};
}

bool HeadedModel::backbone_needs_grad() const {
  for (const auto& [name, t] : backbone_->named_parameters()) {
    if (name != "lm_head.weight" && t.requires_grad()) return true;
  }
  for (const auto& [name, t] : backbone_->lora_parameters()) {
    if (t.requires_grad()) return true;
  }
  return false;
}

torch::Tensor HeadedModel::head_loss(const Head& head, const torch::Tensor& logits, const torch::Tensor& raw_labels,
                                     const torch::Tensor& seq_len) const {
  const HeadConfig& c = head.config();
  torch::Tensor labels = raw_labels.to(logits.device());
  if (labels.is_floating_point() && labels.isnan().any().item<bool>()) {
    throw ShapeError("labels '" + c.target + "' for head '" + c.name + "' contain NaN");
  }
  if (c.loss_fct == LossFn::CrossEntropy && labels.is_floating_point()) {
    if (!labels.eq(labels.round()).all().item<bool>()) {
      throw ShapeError("labels '" + c.target + "' for head '" + c.name + "' must be class indices (integers) for cross_entropy");
    }
  }
  const int64_t B = logits.size(0);
  if (labels.dim() == 0 || labels.size(0) != B) {
    throw ShapeError("labels '" + c.target + "' for head '" + c.name + "' have shape " + shape_str(labels.sizes()) +
                     " but the batch has " + std::to_string(B) + " rows");
  }
  try {
    torch::Tensor use_logits = logits, use_labels = labels;
    if (c.is_causal_lm) {
      use_logits = logits.narrow(-2, 0, logits.size(-2) - 1);
      use_labels = labels.narrow(1, 1, labels.size(1) - 1);
    }
    if (c.pred_for_sequence) {
      use_logits = c.ignore_pads ? logits.index({torch::arange(B, logits.options().dtype(torch::kLong)), seq_len})
                                 : use_logits.select(-2, use_logits.size(-2) - 1);
    }
    if (c.ignore_pads && !c.pred_for_sequence) {
      // Python slices [:seq_len[i]] (exclusive): for non-causal token heads the last real token gets no loss.
      std::vector<torch::Tensor> ls, ys;
      auto lens = seq_len.to(torch::kCPU);
      for (int64_t i = 0; i < B; ++i) {
        const int64_t n = lens[i].item<int64_t>();
        ls.push_back(use_logits[i].narrow(0, 0, n));
        ys.push_back(use_labels[i].narrow(0, 0, n));
      }
      use_logits = torch::cat(ls);
      use_labels = torch::cat(ys);
    } else {
      use_labels = use_labels.reshape({-1});
    }
    const int64_t C = c.num_outputs.value_or(backbone_->config().vocab_size);
    use_logits = c.is_regression ? use_logits.reshape({-1}) : use_logits.reshape({-1, C});
    torch::Tensor loss = compute_loss(c.loss_fct, use_logits, use_labels);
    // An all-ignored cross-entropy gives NaN: Python swaps in a zero that still connects to the graph.
    if (!loss.isfinite().all().item<bool>()) loss = (use_logits * 0.0).sum();
    return loss;
  } catch (const c10::Error& e) {
    throw ShapeError("head '" + c.name + "': labels '" + c.target + "' of shape " + shape_str(labels.sizes()) +
                     " do not fit its predictions of shape " + shape_str(logits.sizes()) + " (" + torch_message(e) + ")");
  }
}

HeadedOutput HeadedModel::run(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, const Labels& labels,
                              bool want_preds, bool training, const HiddenMap* hidden) {
  const bool grad = training && !options_.only_inference;
  torch::AutoGradMode grad_mode(grad);
  auto [ids, mask] = backbone_->prepare_inputs(input_ids, attention_mask);
  const int64_t L = backbone_->num_layers(), B = ids.size(0), T = ids.size(1);
  const std::vector<int64_t> hooks = hooked_layers();

  std::vector<torch::Tensor> states(L + 1);
  if (hidden) {
    for (int64_t l : hooks) {
      auto it = hidden->find(l);
      if (it == hidden->end()) throw ValueError("cached hidden states lack layer " + std::to_string(l));
      const auto& t = it->second;
      if (t.dim() != 3 || t.size(0) != B || t.size(1) != T || t.size(2) != backbone_->config().hidden_size) {
        throw ShapeError("cached hidden states for layer " + std::to_string(l) + " have shape " + shape_str(t.sizes()));
      }
      states[l] = t.to(backbone_->device(), backbone_->dtype());
    }
  } else {
    std::vector<bool> wanted(L + 1, false);
    for (int64_t l : hooks) wanted[l] = true;
    if (grad && backbone_needs_grad()) {
      states = backbone_->run(ids, mask, hooks.back(), wanted);
    } else {
      // Frozen backbone: no graph, and only up to the deepest hooked layer.
      torch::NoGradGuard no_grad;
      states = backbone_->run(ids, mask, hooks.back(), wanted);
    }
  }

  torch::Tensor seq_len;
  bool any_ignore = false;
  for (const auto& h : heads_) any_ignore |= h.config().ignore_pads;
  if (any_ignore) {
    const ModelConfig& mc = backbone_->config();
    auto pad = mc.pad_token_id ? mc.pad_token_id : mc.eos_token_id;
    if (!pad) throw ConfigError("a head ignores pads but the model config has neither pad_token_id nor eos_token_id");
    // First pad position minus one, modulo T (Python's %): no pad, or left padding, gives T - 1.
    seq_len = torch::remainder(ids.eq(*pad).to(torch::kInt).argmax(-1) - 1, T);
  }

  HeadedOutput out;
  out.loss = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(backbone_->device()));
  for (const auto& h : heads_) {
    const HeadConfig& c = h.config();
    auto it = labels.find(c.target);
    const bool has_loss = it != labels.end() && it->second.defined() && c.loss_fct != LossFn::None;
    // A head nobody reads (no loss, no predictions asked for) costs nothing: an lm_head kept for generation would
    // otherwise compute [B, T, vocab] logits at every training step.
    if (!has_loss && !want_preds) continue;
    torch::Tensor logits = h.forward(states[backbone_->normalize_layer(c.layer_hook)]);
    if (want_preds) out.preds_by_head.emplace_back(c.name, logits.detach());
    if (!has_loss) continue;
    out.loss_by_head.emplace_back(c.name, head_loss(h, logits, it->second, seq_len));
  }

  if (options_.adaptive_loss) {
    for (const auto& [name, loss] : out.loss_by_head) {
      torch::Tensor a;
      if (adaptive_.empty()) {
        a = loss * 0.0;
      } else {
        Welford& w = adaptive_[name];
        if (w.count < options_.adaptive_warmup) a = loss * 0.0;
        else if (loss.item<double>() == 0.0) a = loss;
        else a = (loss - w.mean) / std::max(w.std(), 1e-6);
      }
      out.adapted_loss_by_head.emplace_back(name, a);
    }
  } else {
    out.adapted_loss_by_head = out.loss_by_head;
  }
  for (const auto& [name, loss] : out.adapted_loss_by_head) {
    if (!loss.isfinite().all().item<bool>()) continue;
    out.loss = out.loss + loss * find_head(name).config().loss_weight;
  }
  if (options_.adaptive_loss && training) {
    for (const auto& [name, loss] : out.loss_by_head) {
      const double v = loss.item<double>();
      if (std::isfinite(v) && v != 0.0) {
        Welford& w = adaptive_[name];
        w.count += 1;
        const double d = v - w.mean;
        w.mean += d / w.count;
        w.m2 += d * (v - w.mean);
      }
    }
  }
  return out;
}

HeadedOutput HeadedModel::forward(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, bool want_preds,
                                  const HiddenMap* hidden) {
  std::lock_guard<std::mutex> lock(mutex_);
  HeadedOutput out = run(ids, mask, labels, want_preds, /*training=*/false, hidden);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> HeadedModel::decode(const torch::Tensor& ids, const torch::Tensor& mask,
                                                                      KVCache* cache) {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  const int64_t L = backbone_->num_layers();
  std::vector<bool> wanted(L + 1, false);
  for (int64_t l : hooked_layers()) wanted[l] = true;
  // The cache needs every block's keys, so the run always goes to the end, whatever the heads hook.
  std::vector<torch::Tensor> states = backbone_->run(ids, mask, L, wanted, cache);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& h : heads_) {
    const torch::Tensor& s = states[backbone_->normalize_layer(h.config().layer_hook)];
    out.emplace_back(h.config().name, h.forward(s.select(1, s.size(1) - 1)));
  }
  return out;
}

HeadedOutput HeadedModel::train_step(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, double scale,
                                     const HiddenMap* hidden) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (options_.only_inference) throw ValueError("this model was loaded with onlyInference: true and cannot be trained");
  HeadedOutput out = run(ids, mask, labels, /*want_preds=*/false, /*training=*/true, hidden);
  if (out.loss.requires_grad()) (out.loss * scale).backward();
  out.loss = out.loss.detach();
  for (auto& [k, v] : out.loss_by_head) v = v.detach();
  for (auto& [k, v] : out.adapted_loss_by_head) v = v.detach();
  return out;
}

std::vector<torch::Tensor> HeadedModel::trainable_tensors() const {
  std::vector<torch::Tensor> out;
  std::set<const void*> seen;
  auto add = [&](const torch::Tensor& t) {
    if (t.requires_grad() && seen.insert(t.unsafeGetTensorImpl()).second) out.push_back(t);
  };
  for (const auto& [n, t] : backbone_->named_parameters()) add(t);
  for (const auto& [n, t] : backbone_->lora_parameters()) add(t);
  for (const auto& h : heads_) for (const auto& [n, t] : h.named_parameters()) add(t);
  return out;
}

void HeadedModel::configure_optimizer(const OptimizerOptions& o) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (o.lr <= 0 || o.weight_decay < 0 || o.eps <= 0 || o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1) {
    throw ValueError("optimizer settings out of range (lr > 0, weight_decay >= 0, 0 <= betas < 1, eps > 0)");
  }
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& t : trainable_tensors()) (t.dim() >= 2 ? decay : no_decay).push_back(t);
  if (decay.empty() && no_decay.empty()) throw ValueError("nothing to train: no head is trainable and the backbone is frozen");
  auto opts = [&](double wd) {
    auto p = std::make_unique<torch::optim::AdamWOptions>(o.lr);
    p->betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(wd);
    return p;
  };
  // HF Trainer: weight decay on weight matrices only, never on biases or norm weights.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, opts(o.weight_decay));
  groups.emplace_back(no_decay, opts(0.0));
  optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
  opt_options_ = o;
}

double HeadedModel::optimizer_step(double lr) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!optimizer_) throw ValueError("the optimizer is not configured; call configureOptimizer first");
  std::vector<torch::Tensor> params;
  for (auto& g : optimizer_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    for (auto& p : g.params()) params.push_back(p);
  }
  double norm = 0.0;
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> norms;
    for (auto& p : params) if (p.grad().defined()) norms.push_back(p.grad().detach().to(torch::kFloat32).norm());
    if (!norms.empty()) norm = torch::stack(norms).norm().item<double>();
    if (opt_options_.max_grad_norm > 0 && std::isfinite(norm)) {
      const double coef = opt_options_.max_grad_norm / (norm + 1e-6);
      if (coef < 1.0) for (auto& p : params) if (p.grad().defined()) p.grad().mul_(coef);
    }
  }
  optimizer_->step();
  // Gradients back to "none" (not zero), as PyTorch's zero_grad(set_to_none=True): a tensor that gets no gradient in
  // the next step is then not moved by AdamW's momentum.
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  return norm;
}

void HeadedModel::save_optimizer(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!optimizer_) throw ValueError("the optimizer is not configured");
  torch::save(*optimizer_, path);
}

void HeadedModel::save_trainable(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<torch::Tensor> ts;
  for (auto& t : trainable_tensors()) ts.push_back(t.detach().cpu());
  torch::save(ts, path);
}

void HeadedModel::load_trainable(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<torch::Tensor> saved;
  try {
    torch::load(saved, path);
  } catch (const c10::Error& e) {
    throw FileError("trainable weights '" + path + "' could not be loaded: " + torch_message(e));
  }
  auto mine = trainable_tensors();
  if (saved.size() != mine.size()) {
    throw ConfigError("'" + path + "' holds " + std::to_string(saved.size()) + " tensors but this model trains " +
                      std::to_string(mine.size()) + ": it was saved from a different model or head set");
  }
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < mine.size(); ++i) {
    if (saved[i].sizes() != mine[i].sizes()) throw ConfigError("'" + path + "' does not match this model's trainable tensors");
    mine[i].copy_(saved[i]);
  }
}

void HeadedModel::load_optimizer(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!optimizer_) throw ValueError("the optimizer is not configured");
  try {
    torch::load(*optimizer_, path);
  } catch (const c10::Error& e) {
    throw FileError("optimizer state '" + path + "' could not be loaded: " + torch_message(e));
  }
}

HiddenMap HeadedModel::hooked_hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  auto [ids, mask] = backbone_->prepare_inputs(input_ids, attention_mask);
  const auto hooks = hooked_layers();
  std::vector<bool> wanted(backbone_->num_layers() + 1, false);
  for (int64_t l : hooks) wanted[l] = true;
  auto states = backbone_->run(ids, mask, hooks.back(), wanted);
  HiddenMap out;
  for (int64_t l : hooks) out[l] = states[l];
  return out;
}

Head& HeadedModel::find_head(const std::string& name) {
  for (auto& h : heads_) if (h.config().name == name) return h;
  throw ValueError("no head named '" + name + "'");
}

std::vector<std::pair<std::string, torch::Tensor>> HeadedModel::head_state(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto out = find_head(name).named_parameters();
  for (auto& [k, t] : out) t = t.detach().clone();  // a snapshot: training keeps changing the live tensors
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> HeadedModel::head_grads(const std::string& name) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [k, t] : find_head(name).named_parameters()) {
    if (t.grad().defined()) out.emplace_back(k, t.grad().detach().clone());
  }
  return out;
}

double HeadedModel::backbone_grad_norm() {
  std::lock_guard<std::mutex> lock(mutex_);
  double sq = 0.0;
  const torch::Tensor lm = backbone_->lm_head_weight();
  for (const auto& [k, t] : backbone_->named_parameters()) {
    if (t.is_same(lm)) continue;  // the LM head is the 'lm_head' head's weight (tied: the embeddings too)
    if (t.grad().defined()) sq += t.grad().detach().to(torch::kFloat64).pow(2).sum().item<double>();
  }
  return std::sqrt(sq);
}

void HeadedModel::load_head_state(const std::string& name, const std::map<std::string, torch::Tensor>& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  Head& h = find_head(name);
  if (h.is_lm_head()) throw ValueError("'lm_head' is the model's own LM head and is loaded with the model, not from a head file");
  h.load(state);
}

std::vector<std::pair<std::string, torch::Tensor>> HeadedModel::lora_state() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto out = backbone_->lora_parameters();
  for (auto& [k, t] : out) t = t.detach().clone();
  return out;
}

void HeadedModel::load_lora_state(const std::map<std::string, torch::Tensor>& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto mine = backbone_->lora_parameters();
  if (mine.empty()) throw ConfigError("this model has no LoRA adapters to load weights into");
  std::set<std::string> names;
  for (auto& [k, t] : mine) names.insert(k);
  for (auto& [k, t] : state) {
    if (!names.count(k)) throw ConfigError("adapter tensor '" + k + "' matches no LoRA module of this model (a different model or targetModules?)");
  }
  torch::NoGradGuard no_grad;
  for (auto& [k, t] : mine) {
    auto it = state.find(k);
    if (it == state.end()) throw ConfigError("the adapter file has no tensor '" + k + "'");
    if (it->second.sizes() != t.sizes()) {
      throw ConfigError("adapter tensor '" + k + "' has shape " + shape_str(it->second.sizes()) + " but this model expects " +
                        shape_str(t.sizes()) + " (an adapter for a model of a different shape or rank?)");
    }
    t.copy_(it->second);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> HeadedModel::trained_backbone_state() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const torch::Tensor lm = backbone_->lm_head_weight();
  for (const auto& [k, t] : backbone_->named_parameters()) {
    if (t.requires_grad() && !t.is_same(lm)) out.emplace_back(backbone_->base_prefix() + k, t.detach().clone());
  }
  return out;
}

void HeadedModel::load_backbone_tensors(const std::map<std::string, torch::Tensor>& state) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, torch::Tensor> mine;
  for (const auto& [k, t] : backbone_->named_parameters()) mine[backbone_->base_prefix() + k] = t;
  torch::NoGradGuard no_grad;
  for (const auto& [k, t] : state) {
    auto it = mine.find(k);
    if (it == mine.end()) throw ConfigError("tensor '" + k + "' names no weight of this model");
    if (it->second.sizes() != t.sizes()) {
      throw ConfigError("tensor '" + k + "' has shape " + shape_str(t.sizes()) + " but this model's weight is " + shape_str(it->second.sizes()));
    }
    it->second.copy_(t);
  }
}

void HeadedModel::merge_lora() {
  std::lock_guard<std::mutex> lock(mutex_);
  backbone_->merge_lora();
  optimizer_.reset();  // its tensors are gone
}

std::vector<std::pair<std::string, torch::Tensor>> HeadedModel::backbone_state() {
  std::lock_guard<std::mutex> lock(mutex_);
  return backbone_->hf_state_dict();
}

int64_t HeadedModel::head_bytes() const {
  int64_t n = 0;
  for (const auto& h : heads_) {
    if (h.is_lm_head()) continue;
    for (const auto& [k, t] : h.named_parameters()) n += t.numel() * t.element_size();
  }
  return n;
}

int64_t HeadedModel::trainable_parameters() const {
  int64_t n = 0;
  for (const auto& t : trainable_tensors()) n += t.numel();
  return n;
}

int64_t HeadedModel::total_parameters() const {
  int64_t n = 0;
  std::set<const void*> seen;
  for (const auto& [k, t] : backbone_->named_parameters()) if (seen.insert(t.unsafeGetTensorImpl()).second) n += t.numel();
  for (const auto& [k, t] : backbone_->lora_parameters()) if (seen.insert(t.unsafeGetTensorImpl()).second) n += t.numel();
  for (Linear* l : backbone_->linears()) {
    if (l->q4) n += l->q4->shape[0] * l->q4->shape[1];
    if (l->q8) n += l->q8->shape[0] * l->q8->shape[1];
  }
  for (const auto& h : heads_) for (const auto& [k, t] : h.named_parameters()) if (seen.insert(t.unsafeGetTensorImpl()).second) n += t.numel();
  return n;
}

}  // namespace th
