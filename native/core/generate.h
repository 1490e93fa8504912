// Text generation with a headed model (reference/formats.md section 1.8, the Python library's `generate`): each step
// runs the model on the new token(s), picks the next token from the causal-LM head's logits at the last position,
// and reports the log-probability of that token under the raw logits and every other head's output there.
// Decoding runs on the CPU in float32 whatever the model's device, so a seed gives the same tokens everywhere.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "headed_model.h"

namespace th {

struct SamplingOptions {
  bool do_sample = false;
  double temperature = 1.0;  // with do_sample; 0 means greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
  double min_p = 0.0;        // 0 = off
  double repetition_penalty = 1.0;  // 1 = off
};

// Hugging Face's logits processors and warpers, in their order: repetition penalty over the real (mask 1) tokens of
// `context`, then, when sampling, temperature, top-k, top-p, min-p. Removed entries become -inf.
// logits: float32 [B, V] on the CPU; context: int64 [B, S]; context_mask: int64 [B, S] (undefined = all real).
torch::Tensor process_logits(const torch::Tensor& logits, const torch::Tensor& context, const torch::Tensor& context_mask,
                             const SamplingOptions& options);

// Checks the sampling options; throws ConfigError naming the field.
void validate_sampling(const SamplingOptions& options);

struct GenerateOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 20;
  std::optional<uint64_t> seed;      // none: seeded from std::random_device
  std::vector<int64_t> eos_token_ids;  // a row that emits one of them is finished
  std::optional<int64_t> pad_token_id;  // appended to finished rows; defaults to the first eos id
  bool use_cache = true;             // false: recompute the whole sequence each step (reference / benchmark)
};

struct GenerateStep {
  int64_t index = 0;         // 0-based step number
  torch::Tensor tokens;      // int64 [B]: the token appended to each row
  torch::Tensor logprobs;    // float32 [B]: log_softmax(raw LM logits) at that token
  torch::Tensor finished;    // bool [B]: rows finished after this step
  torch::Tensor lm_logits;   // float32 [B, V]: raw LM logits of this step (only when keep_logits is set)
  std::vector<std::pair<std::string, torch::Tensor>> heads;  // every non-LM head's output [B, C], float32, CPU
  bool done = false;         // no further step will run
};

class Generator {
 public:
  // ids/mask: int64 [B, T], left-padded (every row's last position is real). Throws on invalid input or options.
  Generator(std::shared_ptr<HeadedModel> model, const torch::Tensor& ids, const torch::Tensor& mask, GenerateOptions options);

  GenerateStep step();
  // Marks rows finished (stop strings are matched by the caller, which holds the tokenizer).
  void finish(const std::vector<int64_t>& rows);
  bool done() const { return done_; }
  // Prompt and generated tokens so far, int64 [B, T + steps] on the CPU, and its attention mask.
  torch::Tensor sequences() const;
  torch::Tensor attention_mask() const;
  const std::string& lm_head_name() const { return lm_name_; }
  int64_t steps() const { return steps_; }
  // Keep each step's raw LM logits in GenerateStep::lm_logits (tests compare them).
  void set_keep_logits(bool on) { keep_logits_ = on; }
  int64_t cache_bytes() const { return cache_.bytes(); }

 private:
  std::shared_ptr<HeadedModel> model_;
  GenerateOptions options_;
  std::string lm_name_;
  torch::Tensor seqs_, mask_;          // CPU int64 [B, S]
  torch::Tensor dev_mask_;             // mask_ on the model's device
  torch::Tensor next_input_;           // device int64: what the next forward consumes
  torch::Tensor finished_;             // CPU bool [B]
  torch::Generator gen_;
  KVCache cache_;
  int64_t steps_ = 0;
  int64_t fill_ = -1;                  // token appended to finished rows (-1: none known)
  bool done_ = false, keep_logits_ = false;
  mutable std::mutex mutex_;
};

}  // namespace th
