// The loss rules of a HeadConfig. Kept apart from headed_model.cpp so that what a loss sees (which positions, which
// labels, which function) can be read and tested without running a backbone.
#include "losses.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "device.h"
#include "errors.h"
#include "format.h"

namespace th {

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

torch::Tensor last_token_positions(const torch::Tensor& ids, const ModelConfig& mc) {
  auto pad = mc.pad_token_id ? mc.pad_token_id : mc.eos_token_id;
  if (!pad) throw ConfigError("a head ignores pads but the model config has neither pad_token_id nor eos_token_id");
  // First pad position minus one, modulo T (Python's %): no pad, or left padding, gives T - 1.
  return torch::remainder(ids.eq(*pad).to(torch::kInt).argmax(-1) - 1, ids.size(1));
}

namespace {

// Refuses labels a loss cannot learn from: NaN or infinite values anywhere, and for losses that compare values
// (everything but cross-entropy) magnitudes above kMaxLabelMagnitude. A finite 3e38 would otherwise square to inf
// in float32 and turn into a non-finite loss far from its cause. Names the first bad element by its flat index.
void check_label_values(const HeadConfig& c, const torch::Tensor& labels) {
  if (!labels.is_floating_point()) return;
  const torch::Tensor flat = labels.reshape({-1});
  torch::Tensor bad = torch::logical_not(torch::isfinite(flat));
  const bool bounded = c.loss_fct != LossFn::CrossEntropy;
  if (bounded) bad = bad.logical_or(flat.abs() > kMaxLabelMagnitude);
  if (!bad.any().item<bool>()) return;
  const int64_t i = bad.nonzero().select(1, 0)[0].item<int64_t>();
  const double v = flat[i].item<double>();
  std::ostringstream number;
  number << std::setprecision(9) << v;
  const std::string what = std::isnan(v) ? "NaN" : std::isinf(v) ? (v > 0 ? "Infinity" : "-Infinity") : number.str();
  throw ValueError("labels '" + c.target + "' for head '" + c.name + "' hold " + what + " at index " + std::to_string(i) +
                   " (of " + std::to_string(flat.numel()) + " values, shape " + shape_str(labels.sizes()) + "); labels must be " +
                   (bounded ? "finite numbers of magnitude at most 1e18" : "finite") + ": fix or drop that example");
}

}  // namespace

torch::Tensor head_loss(const HeadConfig& c, const torch::Tensor& logits, const torch::Tensor& raw_labels,
                        const torch::Tensor& seq_len, int64_t vocab_size) {
  torch::Tensor labels = raw_labels.to(logits.device());
  check_label_values(c, labels);
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
    const int64_t C = c.num_outputs.value_or(vocab_size);
    use_logits = c.is_regression ? use_logits.reshape({-1}) : use_logits.reshape({-1, C});
    // When no position of this head has a target (every label -100 for the losses that ignore it, or no position
    // left after the pad rules), the mean over nothing is NaN: Python swaps in a zero that stays connected to the
    // graph. That is decided from the labels, never from the loss, so a loss that overflows or a NaN from the
    // weights stays what it is and the caller sees it.
    const bool ignores = c.loss_fct == LossFn::CrossEntropy || c.loss_fct == LossFn::MaskedMSE;
    const bool nothing_to_learn = use_labels.numel() == 0 || (ignores && use_labels.eq(-100).all().item<bool>());
    // The sum over an empty slice is an exact 0 (even when the logits are NaN) with a zero gradient.
    if (nothing_to_learn) return use_logits.reshape({-1}).narrow(0, 0, 0).sum();
    return compute_loss(c.loss_fct, use_logits, use_labels);
  } catch (const c10::Error& e) {
    throw ShapeError("head '" + c.name + "': labels '" + c.target + "' of shape " + shape_str(labels.sizes()) +
                     " do not fit its predictions of shape " + shape_str(logits.sizes()) + " (" + torch_message(e) + ")");
  }
}

AdaptiveLoss::Losses AdaptiveLoss::adapt(const Losses& losses, int64_t warmup) {
  Losses out;
  for (const auto& [name, loss] : losses) {
    torch::Tensor a;
    if (stats_.empty()) {
      a = loss * 0.0;
    } else {
      Welford& w = stats_[name];
      if (w.count < warmup) a = loss * 0.0;
      else if (loss.item<double>() == 0.0) a = loss;
      else a = (loss - w.mean) / std::max(w.std(), 1e-6);
    }
    out.emplace_back(name, a);
  }
  return out;
}

void AdaptiveLoss::observe(const Losses& losses) {
  for (const auto& [name, loss] : losses) {
    const double v = loss.item<double>();
    if (std::isfinite(v) && v != 0.0) {
      Welford& w = stats_[name];
      w.count += 1;
      const double d = v - w.mean;
      w.mean += d / w.count;
      w.m2 += d * (v - w.mean);
    }
  }
}

}  // namespace th
