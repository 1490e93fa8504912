// What a head's output is compared against, as the Python transformer-heads library computes it (reference/formats.md
// section 1): the five loss functions, the per-head rules that pick the positions a loss sees (the causal shift,
// pad-based last-token selection for sequence heads, ignore_pads slicing for token heads), and adaptive loss
// (each head's loss standardised by its running statistics).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "heads.h"

namespace th {

// The largest label magnitude a value-comparing loss (MSE, masked MSE, BCE) accepts. Its square, 1e36, stays below
// float32's maximum (3.4e38) with room for a prediction of the same order and for the mean's running sum; a label
// beyond it would make the loss inf for any sensible prediction. Cross-entropy labels are class indices and are
// bounded by the class count instead.
constexpr double kMaxLabelMagnitude = 1e18;

// The loss functions of the Python library (reduction 'mean'); exposed for tests.
torch::Tensor compute_loss(LossFn fn, const torch::Tensor& input, const torch::Tensor& target);

// Per row of `ids` [B, T], the position of the last real token: the first pad minus one, modulo T (Python's %), so
// no pad, or left padding, gives T - 1. The pad is the config's pad_token_id, else its eos_token_id.
torch::Tensor last_token_positions(const torch::Tensor& ids, const ModelConfig& mc);

// One head's loss on its logits [B, T, C]: checks the labels (ShapeError naming head and label column for shapes,
// ValueError with the first bad index for NaN, infinite or, except for cross-entropy, larger than kMaxLabelMagnitude
// values), applies the head's position rules and its loss function. The loss is exactly 0 (connected to the graph)
// only when no position has a target (all -100, or none left); otherwise a NaN or inf loss is returned as computed. `seq_len` comes from last_token_positions (undefined when no head
// ignores pads); `vocab_size` is the class count of heads without num_outputs.
torch::Tensor head_loss(const HeadConfig& c, const torch::Tensor& logits, const torch::Tensor& raw_labels,
                        const torch::Tensor& seq_len, int64_t vocab_size);

// Adaptive loss (Python's adaptive_loss): each head's loss minus its running mean, over its running std. Zero until
// the head has `warmup` observations (and before any head has one); a zero loss stays zero.
class AdaptiveLoss {
 public:
  using Losses = std::vector<std::pair<std::string, torch::Tensor>>;
  Losses adapt(const Losses& losses, int64_t warmup);
  // Adds each finite, non-zero loss to its head's running statistics (training steps only).
  void observe(const Losses& losses);

 private:
  struct Welford {
    int64_t count = 0;
    double mean = 0, m2 = 0;
    double std() const { return count > 1 ? std::sqrt(m2 / count) : 0.0; }
  };
  std::map<std::string, Welford> stats_;
};

}  // namespace th
