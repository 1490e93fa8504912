// Heads attached to a backbone: the model users train and run (the Python library's HeadedModel, reference/formats.md
// section 1). It owns which tensors train (heads, LoRA adapters and biases, or the whole backbone), runs the backbone
// only up to the deepest hooked layer, sums the heads' weighted losses, and serialises runs and state changes under one
// lock, since the binding's workers may call it from several threads at once. Heads are in heads.h, their losses in
// losses.h, AdamW in optimizer.h.
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
#include "heads.h"
#include "losses.h"
#include "optimizer.h"

namespace th {

namespace dist {
class ProcessGroup;
}

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
  // `positions`: caller-given position ids [B, T] (Hugging Face's position_ids); undefined = the backbone's mode.
  HeadedOutput forward(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, bool want_preds,
                       const HiddenMap* hidden = nullptr, const torch::Tensor& positions = {});
  // One micro-batch of training: forward with autograd, backward of loss * scale (1 / gradient-accumulation steps).
  HeadedOutput train_step(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, double scale,
                          const HiddenMap* hidden = nullptr, const torch::Tensor& positions = {});
  // Clips gradients, applies AdamW with learning rate `lr`, drops gradients. Returns the gradient norm before
  // clipping. A non-finite return means nothing was applied: either the norm itself is NaN or inf, or a train_step
  // since the last optimizer step had a non-finite loss (then NaN is returned whatever the norm); the weights and
  // AdamW's moments are then untouched and the gradients dropped, so the caller may stop or go on with the next batch.
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
  // Hidden states at the hooked layers without autograd (to fill the activation cache); with all_layers, every one
  // of the L + 1 (Python's output_hidden_states=True).
  HiddenMap hooked_hidden(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& positions = {},
                          bool all_layers = false);

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

  // Data-parallel training (data_parallel.cpp). attach_group overwrites the trainable tensors with rank 0's, then
  // every optimizer_step first averages the gradients over the group's ranks (bucketed all-reduce; a non-finite loss
  // on any rank makes every rank skip the step). nullptr detaches.
  void attach_group(std::shared_ptr<dist::ProcessGroup> group);
  // What every rank must agree on before training: digests of the backbone's weights and shapes, and of the trainable
  // tensors' shapes, by field name.
  std::vector<std::pair<std::string, std::string>> fingerprint();

 private:
  HeadedOutput run(const torch::Tensor& ids, const torch::Tensor& mask, const Labels& labels, bool want_preds,
                   bool training, const HiddenMap* hidden, const torch::Tensor& positions);
  std::vector<torch::Tensor> trainable_tensors() const;
  bool reduce_gradients(bool poisoned);  // data_parallel.cpp; returns whether any rank is poisoned
  Head& find_head(const std::string& name);

  std::shared_ptr<Backbone> backbone_;
  std::vector<Head> heads_;  // configured order, with 'lm_head' moved last as in Python
  HeadedOptions options_;
  Optimizer optimizer_;
  bool nonfinite_loss_since_step_ = false;  // a train_step's total loss was NaN or inf since the last optimizer step
  AdaptiveLoss adaptive_;
  std::shared_ptr<dist::ProcessGroup> group_;  // data parallel, when attached
  std::mutex mutex_;
};

}  // namespace th
