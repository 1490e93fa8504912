// Training's optimizer: AdamW over a model's trainable tensors with the Hugging Face Trainer's parameter groups (no
// weight decay on biases and norm weights), clipping by the global gradient norm, gradients reset to none after each
// step, and its state saved and loaded for exact resume. It holds no lock: its owner (HeadedModel) serialises calls.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace th {

struct OptimizerOptions {
  double lr = 5e-5;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double max_grad_norm = 1.0;  // <= 0 disables clipping
};

class Optimizer {
 public:
  // Checks the options and builds a fresh AdamW over `params` (the tensors that require grad), replacing any before.
  void configure(const std::vector<torch::Tensor>& params, const OptimizerOptions& options);
  // Clips gradients, applies AdamW with learning rate `lr`, drops gradients. Returns the gradient norm before
  // clipping. When that norm is NaN or inf nothing is applied (weights and moments untouched) and the gradients are
  // dropped; the non-finite norm is returned.
  double step(double lr);
  // Drops the accumulated gradients without an update.
  void discard_gradients();
  void save(const std::string& path);
  void load(const std::string& path);
  // Drops the optimizer (its tensors are gone, e.g. after merging LoRA); configure() must run again before a step.
  void reset() { adamw_.reset(); }

 private:
  OptimizerOptions options_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
};

}  // namespace th
