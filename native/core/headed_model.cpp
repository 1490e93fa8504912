// HeadedModel: building it (which heads, which tensors train, quantization, LoRA, checkpointing), running it
// (training steps, evaluation, incremental decoding, the activation cache's hidden states) and its state in and out
// (head, adapter and backbone tensors; trainable tensors for exact resume).
#include "headed_model.h"

#include <cmath>
#include <limits>
#include <set>

#include "device.h"
#include "errors.h"
#include "format.h"

namespace th {

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
    check_head_size(c);  // configs built in C++ skip parse_head_configs
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
    // A backbone loaded with LoadOptions::quant was quantized projection by projection while it was read.
    if (!backbone_->is_quantized()) backbone_->quantize(*options_.quant);
  }
  if (options_.lora) {
    backbone_->add_lora(*options_.lora);
    if (!lm_cfg && backbone_->lm_head_projection()->lora_a.defined()) {
      // The adapter would train and be saved but never act: only the 'lm_head' head reads the output projection.
      throw ConfigError("LoRA targetModules names 'lm_head', but this model has no head named 'lm_head' (the model's own LM "
                        "head) for the adapter to act on: add one ({ name: 'lm_head', inSize: hidden size, numOutputs: vocab "
                        "size, isCausalLm: true }) or leave 'lm_head' out of targetModules");
    }
  }
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
    heads_.emplace_back(*lm_cfg, backbone_->lm_head_projection());
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
      if (!on) continue;
      auto p = h.named_parameters();
      if (p.empty()) {
        throw ConfigError("the head 'lm_head' would train the model's LM head, which quantizeEmbeddings stores in 4-bit with the "
                          "token embeddings it is tied to; set trainable: false on that head (or fullyTrainedHeads: false), "
                          "or adapt it with LoRA ('lm_head' in targetModules)");
      }
      p[0].second.requires_grad_(true);
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
  // An lm_head adapter acts after the last block: it alone needs no graph through the backbone.
  for (Linear* l : backbone_->linears()) {
    if (l->lora_a.defined() && (l->lora_a.requires_grad() || l->lora_b.requires_grad())) return true;
  }
  return false;
}

HeadedOutput HeadedModel::run(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, const Labels& labels,
                              bool want_preds, bool training, const HiddenMap* hidden, const torch::Tensor& positions) {
  const bool grad = training && !options_.only_inference;
  torch::AutoGradMode grad_mode(grad);
  auto [ids, mask] = backbone_->prepare_inputs(input_ids, attention_mask);
  const torch::Tensor pos = backbone_->prepare_positions(positions, ids);
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
      states = backbone_->run(ids, mask, hooks.back(), wanted, nullptr, pos);
    } else {
      // Frozen backbone: no graph, and only up to the deepest hooked layer.
      torch::NoGradGuard no_grad;
      states = backbone_->run(ids, mask, hooks.back(), wanted, nullptr, pos);
    }
  }

  torch::Tensor seq_len;
  bool any_ignore = false;
  for (const auto& h : heads_) any_ignore |= h.config().ignore_pads;
  if (any_ignore) seq_len = last_token_positions(ids, backbone_->config());

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
    out.loss_by_head.emplace_back(c.name, head_loss(c, logits, it->second, seq_len, backbone_->config().vocab_size));
  }

  if (options_.adaptive_loss) {
    out.adapted_loss_by_head = adaptive_.adapt(out.loss_by_head, options_.adaptive_warmup);
  } else {
    out.adapted_loss_by_head = out.loss_by_head;
  }
  // A NaN or inf head loss makes the total NaN or inf: a diverged run must never look like a finite loss.
  for (const auto& [name, loss] : out.adapted_loss_by_head) out.loss = out.loss + loss * find_head(name).config().loss_weight;
  if (options_.adaptive_loss && training) adaptive_.observe(out.loss_by_head);
  return out;
}

HeadedOutput HeadedModel::forward(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, bool want_preds,
                                  const HiddenMap* hidden, const torch::Tensor& positions) {
  std::lock_guard<std::mutex> lock(mutex_);
  HeadedOutput out = run(ids, mask, labels, want_preds, /*training=*/false, hidden, positions);
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
  std::vector<torch::Tensor> states = backbone_->run(ids, mask, L, wanted, cache, {}, /*generation=*/true);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& h : heads_) {
    const torch::Tensor& s = states[backbone_->normalize_layer(h.config().layer_hook)];
    out.emplace_back(h.config().name, h.forward(s.select(1, s.size(1) - 1)));
  }
  return out;
}

HeadedOutput HeadedModel::train_step(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, double scale,
                                     const HiddenMap* hidden, const torch::Tensor& positions) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (options_.only_inference) throw ValueError("this model was loaded with onlyInference: true and cannot be trained");
  HeadedOutput out = run(ids, mask, labels, /*want_preds=*/false, /*training=*/true, hidden, positions);
  // Its gradients are poisoned even where they look finite (a NaN loss times a zero weight): the next optimizer
  // step must not apply them.
  if (!std::isfinite(out.loss.item<double>())) nonfinite_loss_since_step_ = true;
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
  optimizer_.configure(trainable_tensors(), o);
}

double HeadedModel::optimizer_step(double lr) {
  std::lock_guard<std::mutex> lock(mutex_);
  bool poisoned = nonfinite_loss_since_step_;
  nonfinite_loss_since_step_ = false;
  if (group_) poisoned = reduce_gradients(poisoned);  // every rank takes the same decision
  if (poisoned) {
    optimizer_.discard_gradients();
    return std::numeric_limits<double>::quiet_NaN();
  }
  return optimizer_.step(lr);
}

void HeadedModel::save_optimizer(const std::string& path) {
  std::lock_guard<std::mutex> lock(mutex_);
  optimizer_.save(path);
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
  optimizer_.load(path);
}

HiddenMap HeadedModel::hooked_hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                     const torch::Tensor& positions, bool all_layers) {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  auto [ids, mask] = backbone_->prepare_inputs(input_ids, attention_mask);
  const torch::Tensor pos = backbone_->prepare_positions(positions, ids);
  std::vector<int64_t> hooks = hooked_layers();
  if (all_layers) {
    hooks.clear();
    for (int64_t l = 0; l <= backbone_->num_layers(); ++l) hooks.push_back(l);
  }
  std::vector<bool> wanted(backbone_->num_layers() + 1, false);
  for (int64_t l : hooks) wanted[l] = true;
  auto states = backbone_->run(ids, mask, hooks.back(), wanted, nullptr, pos);
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
