// Heads attached to a backbone, their losses, and training (AdamW) — the semantics of the Python transformer-heads
// library (reference/formats.md section 1): HeadConfig fields, hidden-state hooks, pad-based last-token selection,
// the causal shift, ignore_pads slicing, the five loss functions, the special 'lm_head' head, adaptive loss.
#pragma once

#include <torch/torch.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backbone.h"

namespace th {

enum class Activation { Linear, Sigmoid, Relu };
enum class LossFn { None, CrossEntropy, MSE, MaskedMSE, BCE, BCEWithLogits };

struct HeadConfig {
  std::string name;
  int64_t in_size = 0;
  std::optional<int64_t> num_outputs;  // none: 1 output, and classification losses use the vocabulary size
  int64_t layer_hook = -1;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  Activation output_activation = Activation::Linear;
  std::string target;  // label column; defaults to name
  bool is_causal_lm = false;
  bool pred_for_sequence = false;
  bool is_regression = false;
  bool output_bias = false;
  LossFn loss_fct = LossFn::CrossEntropy;
  bool trainable = true;
  double loss_weight = 1.0;
  bool ignore_pads = true;
  bool block_gradients = false;
};

// Parses a JSON array of head configs in the Python library's snake_case form (as in head_configs.json values).
std::vector<HeadConfig> parse_head_configs(const std::string& json_text);

// An MLP head: Linear layers with ReLU between them, then the output activation. Float32, on the model's device.
class Head {
 public:
  Head(const HeadConfig& cfg, int64_t out_features, torch::Device device, torch::Generator& gen);
  // Wraps the backbone's LM head weight (the special head named 'lm_head').
  Head(const HeadConfig& cfg, torch::Tensor lm_head_weight);

  torch::Tensor forward(const torch::Tensor& x) const;
  const HeadConfig& config() const { return cfg_; }
  bool is_lm_head() const { return is_lm_head_; }
  // Tensors by their Python state-dict keys: lins.K.weight [out, in], lins.K.bias.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  // Strict load: every key present with the right shape, no extra keys; values are copied in place.
  void load(const std::map<std::string, torch::Tensor>& state);

 private:
  HeadConfig cfg_;
  std::vector<torch::Tensor> weights_, biases_;  // bias undefined when the layer has none
  bool is_lm_head_ = false;
};

struct HeadedOptions {
  std::optional<QuantOptions> quant;  // 4/8-bit backbone projections
  std::optional<LoraOptions> lora;    // LoRA adapters on the projections (the base weights then stay frozen)
  std::string lora_bias = "none";     // none | all | lora_only: which biases train with LoRA (PEFT's `bias`)
  bool fully_trained_heads = true;    // with LoRA: whether trainable heads train too
  bool gradient_checkpointing = false;  // recompute blocks in the backward pass
  bool freeze_base = true;
  bool only_inference = false;
  bool adaptive_loss = false;
  int64_t adaptive_warmup = 5;
  uint64_t seed = 42;  // head initialisation
};

struct OptimizerOptions {
  double lr = 5e-5;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;  // <= 0 disables clipping
};

struct HeadedOutput {
  torch::Tensor loss;  // scalar float32
  std::vector<std::pair<std::string, torch::Tensor>> loss_by_head, adapted_loss_by_head;
  std::vector<std::pair<std::string, torch::Tensor>> preds_by_head;  // [B, T, C] float32, when asked for
};

// Hidden states provided by the caller (the activation cache) instead of running the backbone: index -> [B, T, H].
using HiddenMap = std::map<int64_t, torch::Tensor>;
using Labels = std::map<std::string, torch::Tensor>;

class HeadedModel {
 public:
  HeadedModel(std::shared_ptr<Backbone> backbone, std::vector<HeadConfig> heads, HeadedOptions options);

  Backbone& backbone() { return *backbone_; }
  const std::vector<Head>& heads() const { return heads_; }
  // Hidden-state indices (normalised, 0..L) the heads read, ascending.
  std::vector<int64_t> hooked_layers() const;
  // Whether the backbone must run with autograd (some backbone weight trains).
  bool backbone_needs_grad() const;

  // Inference or evaluation: no autograd, adaptive-loss statistics untouched.
  HeadedOutput forward(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, bool want_preds,
                       const HiddenMap* hidden = nullptr);
  // One micro-batch of training: forward with autograd, backward of loss * scale (1 / gradient-accumulation steps).
  HeadedOutput train_step(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, double scale,
                          const HiddenMap* hidden = nullptr);
  // Clips gradients, applies AdamW with learning rate `lr`, zeroes gradients. Returns the gradient norm before clipping.
  double optimizer_step(double lr);
  void configure_optimizer(const OptimizerOptions& options);
  void save_optimizer(const std::string& path);
  // Every trainable tensor (heads, and backbone weights when not frozen), in a fixed order: exact resume of training.
  void save_trainable(const std::string& path);
  void load_trainable(const std::string& path);
  void load_optimizer(const std::string& path);
  // Incremental decoding (no autograd): runs `ids` [B, T] — the positions after the cached ones when a cache is given —
  // through every block and returns each head's output at the last position, [B, C] float32, in head order.
  // `ids` and `mask` ([B, cached + T]) must already be checked and on the model's device (Backbone::prepare_inputs).
  std::vector<std::pair<std::string, torch::Tensor>> decode(const torch::Tensor& ids, const torch::Tensor& mask, KVCache* cache);
  // Hidden states at the hooked layers without autograd (to fill the activation cache).
  HiddenMap hooked_hidden(const torch::Tensor& ids, const torch::Tensor& mask);

  std::vector<std::pair<std::string, torch::Tensor>> head_state(const std::string& name);
  // Gradients accumulated since the last optimizer step (undefined tensors left out): per head tensor, and the
  // L2 norm over all backbone weights except the LM head (0 when none has a gradient).
  std::vector<std::pair<std::string, torch::Tensor>> head_grads(const std::string& name);
  double backbone_grad_norm();
  void load_head_state(const std::string& name, const std::map<std::string, torch::Tensor>& state);
  // LoRA tensors by PEFT name without "base_model.model." (snapshots), and a strict load of them.
  std::vector<std::pair<std::string, torch::Tensor>> lora_state();
  void load_lora_state(const std::map<std::string, torch::Tensor>& state);
  // Backbone weights that train besides the adapters (LoRA biases with bias 'all' / 'lora_only'), by Hugging Face
  // name with the base prefix (snapshots); and loading such tensors back by name.
  std::vector<std::pair<std::string, torch::Tensor>> trained_backbone_state();
  void load_backbone_tensors(const std::map<std::string, torch::Tensor>& state);
  // Folds LoRA adapters (and 4-bit weights) into dense weights; the model then has no adapters.
  void merge_lora();
  // The backbone's current weights as a Hugging Face state dict (Backbone::hf_state_dict), taken under the model's lock.
  std::vector<std::pair<std::string, torch::Tensor>> backbone_state();
  int64_t head_bytes() const;
  int64_t trainable_parameters() const;
  int64_t total_parameters() const;

 private:
  HeadedOutput run(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, bool want_preds,
                   bool training, const HiddenMap* hidden);
  torch::Tensor head_loss(const Head& head, const torch::Tensor& logits, const torch::Tensor& labels,
                          const torch::Tensor& seq_len) const;
  std::vector<torch::Tensor> trainable_tensors() const;
  Head& find_head(const std::string& name);

  std::shared_ptr<Backbone> backbone_;
  std::vector<Head> heads_;  // configured order, with 'lm_head' moved last as in Python
  HeadedOptions options_;
  OptimizerOptions opt_options_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  struct Welford {
    int64_t count = 0;
    double mean = 0, m2 = 0;
    double std() const { return count > 1 ? std::sqrt(m2 / count) : 0.0; }
  };
  std::map<std::string, Welford> adaptive_;
  bool adaptive_seen_ = false;
  std::mutex mutex_;
};

// The loss functions of the Python library (reduction 'mean'); exposed for tests.
torch::Tensor compute_loss(LossFn fn, const torch::Tensor& input, const torch::Tensor& target);

}  // namespace th
