// HeadedModel's data-parallel members (declared in headed_model.h, kept here so that the model's own file stays about
// one process): attaching a process group, the configuration fingerprint, and the gradient average before each step.
#include <sstream>

#include "distributed.h"
#include "headed_model.h"

namespace th {

void HeadedModel::attach_group(std::shared_ptr<dist::ProcessGroup> group) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (group) {
    // DDP's _sync_module_states: heads start from rank 0's initialisation even where seeds or files differed.
    group->broadcast(trainable_tensors(), "the trainable weights");
  }
  group_ = std::move(group);
}

std::vector<std::pair<std::string, std::string>> HeadedModel::fingerprint() {
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  // Names, shapes, dtypes and two float64 moments per backbone tensor: the same file loaded the same way gives the
  // same digest on every machine (a sum is exact enough to tell two checkpoints apart, and costs one pass).
  std::ostringstream shapes, values;
  for (const auto& [name, t] : backbone_->named_parameters()) {
    shapes << name << t.sizes() << t.scalar_type() << ';';
    const auto d = t.detach().to(torch::kFloat64);
    values.precision(17);
    values << name << ':' << d.sum().item<double>() << ',' << d.abs().sum().item<double>() << ';';
  }
  std::ostringstream trainable;
  for (const auto& t : trainable_tensors()) trainable << t.sizes() << t.scalar_type() << ';';
  return {{"backbone architecture", dist::digest(shapes.str())},
          {"backbone weights", dist::digest(values.str())},
          {"trainable tensors", dist::digest(trainable.str())}};
}

bool HeadedModel::reduce_gradients(bool poisoned) {
  auto params = trainable_tensors();
  const int64_t n = static_cast<int64_t>(params.size());
  // flags[0]: ranks with a non-finite loss; flags[1 + i]: ranks where tensor i got a gradient. A tensor no rank
  // touched keeps no gradient (AdamW then leaves it alone, as in one process); one that some rank touched gets the
  // average with zeros from the others, as DDP does.
  torch::Tensor flags = torch::zeros({1 + n}, torch::kFloat64);
  auto f = flags.accessor<double, 1>();
  f[0] = poisoned ? 1 : 0;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size() + 1);
  for (int64_t i = 0; i < n; ++i) {
    auto& p = params[i];
    if (p.grad().defined()) {
      f[1 + i] = 1;
    } else {
      p.mutable_grad() = torch::zeros_like(p);
    }
    grads.push_back(p.grad());
  }
  grads.push_back(flags);
  group_->allreduce_sum(grads, "the gradients");
  torch::NoGradGuard no_grad;
  const double inv = 1.0 / group_->world_size();
  for (int64_t i = 0; i < n; ++i) {
    if (f[1 + i] == 0) params[i].mutable_grad() = torch::Tensor();
    else params[i].grad().mul_(inv);
  }
  return f[0] > 0;
}

}  // namespace th
