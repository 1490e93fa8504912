// AdamW as the Hugging Face Trainer sets it up (two parameter groups, global-norm clipping, zero_grad(set_to_none)).
// libtorch's AdamW does the update itself; this file only decides what it sees.
#include "optimizer.h"

#include <cmath>

#include "device.h"
#include "errors.h"

namespace th {

void Optimizer::configure(const std::vector<torch::Tensor>& params, const OptimizerOptions& o) {
  if (o.lr <= 0 || o.weight_decay < 0 || o.eps <= 0 || o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1) {
    throw ValueError("optimizer settings out of range (lr > 0, weight_decay >= 0, 0 <= betas < 1, eps > 0)");
  }
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& t : params) (t.dim() >= 2 ? decay : no_decay).push_back(t);
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
  adamw_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
  options_ = o;
}

double Optimizer::step(double lr) {
  if (!adamw_) throw ValueError("the optimizer is not configured; call configureOptimizer first");
  std::vector<torch::Tensor> params;
  for (auto& g : adamw_->param_groups()) {
    static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    for (auto& p : g.params()) params.push_back(p);
  }
  double norm = 0.0;
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> norms;
    for (auto& p : params) if (p.grad().defined()) norms.push_back(p.grad().detach().to(torch::kFloat32).norm());
    if (!norms.empty()) norm = torch::stack(norms).norm().item<double>();
    if (!std::isfinite(norm)) {
      // AdamW would write NaN into every weight and into its moments, for good. Skip the update and report it.
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
      return norm;
    }
    if (options_.max_grad_norm > 0) {
      const double coef = options_.max_grad_norm / (norm + 1e-6);
      if (coef < 1.0) for (auto& p : params) if (p.grad().defined()) p.grad().mul_(coef);
    }
  }
  adamw_->step();
  // Gradients back to "none" (not zero), as PyTorch's zero_grad(set_to_none=True): a tensor that gets no gradient in
  // the next step is then not moved by AdamW's momentum.
  for (auto& p : params) p.mutable_grad() = torch::Tensor();
  return norm;
}

void Optimizer::discard_gradients() {
  if (!adamw_) return;
  for (auto& g : adamw_->param_groups()) for (auto& p : g.params()) p.mutable_grad() = torch::Tensor();
}

void Optimizer::save(const std::string& path) {
  if (!adamw_) throw ValueError("the optimizer is not configured");
  torch::save(*adamw_, path);
}

void Optimizer::load(const std::string& path) {
  if (!adamw_) throw ValueError("the optimizer is not configured");
  try {
    torch::load(*adamw_, path);
  } catch (const c10::Error& e) {
    throw FileError("optimizer state '" + path + "' could not be loaded: " + torch_message(e));
  }
}

}  // namespace th
