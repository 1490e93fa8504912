#include "generate.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <limits>
#include <random>

#include "errors.h"
#include "format.h"
#include "small_gemm.h"

namespace th {

void validate_sampling(const SamplingOptions& o) {
  if (!std::isfinite(o.temperature) || o.temperature < 0) {
    throw ConfigError("temperature must be a finite number >= 0 (0 = greedy), got " + std::to_string(o.temperature));
  }
  if (o.top_k < 0) throw ConfigError("topK must be >= 0 (0 = off), got " + std::to_string(o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1)) throw ConfigError("topP must be in (0, 1], got " + std::to_string(o.top_p));
  if (!(o.min_p >= 0 && o.min_p <= 1)) throw ConfigError("minP must be in [0, 1], got " + std::to_string(o.min_p));
  if (!(o.repetition_penalty > 0) || !std::isfinite(o.repetition_penalty)) {
    throw ConfigError("repetitionPenalty must be a finite number > 0 (1 = off), got " + std::to_string(o.repetition_penalty));
  }
}

torch::Tensor process_logits(const torch::Tensor& logits, const torch::Tensor& context, const torch::Tensor& context_mask,
                             const SamplingOptions& o) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  torch::Tensor s = logits.to(torch::kCPU, torch::kFloat32).clone();
  const int64_t V = s.size(-1);
  if (o.repetition_penalty != 1.0 && context.defined() && context.numel() > 0) {
    // HF RepetitionPenaltyLogitsProcessor: a seen token's logit is divided by the penalty when positive and
    // multiplied by it when negative. Presence is counted over real tokens only: left padding (often the eos id)
    // is not text the model wrote, where HF would penalise it too.
    torch::Tensor weight = context_mask.defined() ? context_mask.to(torch::kLong) : torch::ones_like(context);
    torch::Tensor seen = torch::zeros({s.size(0), V}, torch::kLong).scatter_add_(1, context.to(torch::kLong), weight).gt(0);
    const double p = o.repetition_penalty;
    s = torch::where(seen, torch::where(s < 0, s * p, s / p), s);
  }
  if (!o.do_sample || o.temperature == 0) return s;
  if (o.temperature != 1.0) s = s / o.temperature;
  if (o.top_k > 0 && o.top_k < V) {
    torch::Tensor kth = std::get<0>(s.topk(o.top_k, -1)).narrow(1, o.top_k - 1, 1);
    s = s.masked_fill(s < kth, neg_inf);
  }
  if (o.top_p < 1.0) {
    // HF TopPLogitsWarper: drop the tokens whose ascending cumulative probability is <= 1 - p, always keeping the
    // most likely one; what remains is the smallest set of most likely tokens with mass >= p.
    auto [sorted, index] = s.sort(-1, /*descending=*/false);
    torch::Tensor remove = sorted.softmax(-1).cumsum(-1) <= (1.0 - o.top_p);
    remove.select(1, V - 1).fill_(false);
    s = s.masked_fill(remove.scatter(1, index, remove), neg_inf);
  }
  if (o.min_p > 0) {
    // HF MinPLogitsWarper: drop tokens less likely than min_p times the most likely one.
    torch::Tensor probs = s.softmax(-1);
    s = s.masked_fill(probs < probs.amax(-1, /*keepdim=*/true) * o.min_p, neg_inf);
  }
  return s;
}

Generator::Generator(std::shared_ptr<HeadedModel> model, const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                     GenerateOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  if (!model_) throw ValueError("generate needs a model");
  Backbone& bb = model_->backbone();
  const ModelConfig& mc = bb.config();
  const Head* lm = nullptr;
  for (const auto& h : model_->heads()) {
    if (!h.config().is_causal_lm) continue;
    if (!lm || h.config().name == "lm_head") lm = &h;
  }
  if (!lm) {
    throw ConfigError("generate needs a causal-LM head (isCausalLm: true), usually the pretrained one: "
                      "{ name: 'lm_head', inSize: hidden size, numOutputs: vocab size, isCausalLm: true, ... }; "
                      "this model's heads are all non-LM heads");
  }
  lm_name_ = lm->config().name;
  if (lm->config().num_outputs && *lm->config().num_outputs != mc.vocab_size) {
    throw ConfigError("causal-LM head '" + lm_name_ + "' has " + std::to_string(*lm->config().num_outputs) +
                      " outputs but the vocabulary has " + std::to_string(mc.vocab_size) + " tokens");
  }
  if (options_.max_new_tokens <= 0) {
    throw ConfigError("maxNewTokens must be a positive integer, got " + std::to_string(options_.max_new_tokens));
  }
  validate_sampling(options_.sampling);
  for (int64_t e : options_.eos_token_ids) {
    if (e < 0 || e >= mc.vocab_size) {
      throw ConfigError("eosTokenId " + std::to_string(e) + " is outside the vocabulary [0, " + std::to_string(mc.vocab_size) + ")");
    }
  }
  if (options_.pad_token_id && (*options_.pad_token_id < 0 || *options_.pad_token_id >= mc.vocab_size)) {
    throw ConfigError("padTokenId " + std::to_string(*options_.pad_token_id) + " is outside the vocabulary");
  }

  auto [ids, mask] = bb.prepare_inputs(input_ids, attention_mask);  // shape, range and 0/1 checks
  seqs_ = ids.to(torch::kCPU);
  mask_ = mask.to(torch::kCPU);
  const int64_t B = seqs_.size(0), T = seqs_.size(1);
  torch::Tensor real = mask_.sum(1);
  for (int64_t b = 0; b < B; ++b) {
    if (real[b].item<int64_t>() == 0) throw ShapeError("prompt " + std::to_string(b) + " is empty (no token with attention_mask 1)");
    if (mask_[b][T - 1].item<int64_t>() == 0) {
      throw ShapeError("prompt " + std::to_string(b) + " ends with padding: batched prompts must be left-padded, so that every "
                       "row's last position is a real token");
    }
  }
  if (mc.arch == Arch::GPT2) {
    // The last generated token is never fed back, so the deepest position used is real + new - 2.
    const int64_t need = real.max().item<int64_t>() + options_.max_new_tokens - 1;
    if (need > mc.max_position_embeddings) {
      throw ShapeError("a prompt of " + std::to_string(real.max().item<int64_t>()) + " tokens plus maxNewTokens " +
                       std::to_string(options_.max_new_tokens) + " needs " + std::to_string(need) +
                       " positions but this GPT-2 model has " + std::to_string(mc.max_position_embeddings) + " (n_positions)");
    }
  }
  dev_mask_ = mask;
  next_input_ = ids;
  finished_ = torch::zeros({B}, torch::kBool);
  if (options_.pad_token_id) fill_ = *options_.pad_token_id;
  else if (!options_.eos_token_ids.empty()) fill_ = options_.eos_token_ids.front();
  const uint64_t seed = options_.seed ? *options_.seed : (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  gen_ = at::make_generator<at::CPUGeneratorImpl>(seed);
  cache_.reserve(T + options_.max_new_tokens);
}

GenerateStep Generator::step() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (done_) throw ValueError("generation has finished; start a new one");
  std::vector<std::pair<std::string, torch::Tensor>> outs;
  {
    SmallGemmScope decoding;  // few-row products on BLIS (small_gemm.h)
    outs = model_->decode(next_input_, dev_mask_, options_.use_cache ? &cache_ : nullptr);
  }

  GenerateStep st;
  st.index = steps_;
  torch::Tensor raw;
  for (auto& [name, t] : outs) {
    if (name == lm_name_) raw = t.to(torch::kCPU, torch::kFloat32);
    else st.heads.emplace_back(name, t.to(torch::kCPU, torch::kFloat32).contiguous());
  }
  const SamplingOptions& so = options_.sampling;
  torch::Tensor scores = process_logits(raw, seqs_, mask_, so);
  torch::Tensor next = so.do_sample && so.temperature > 0
                           ? torch::multinomial(scores.softmax(-1), 1, /*replacement=*/false, gen_).squeeze(1)
                           : scores.argmax(-1);
  if (fill_ >= 0) next = torch::where(finished_, torch::full_like(next, fill_), next);
  // As Python: the log-probability under the raw logits, before any processor.
  st.logprobs = torch::log_softmax(raw, -1).gather(1, next.unsqueeze(1)).squeeze(1).contiguous();
  st.tokens = next;
  if (keep_logits_) st.lm_logits = raw;

  const int64_t B = seqs_.size(0);
  seqs_ = torch::cat({seqs_, next.unsqueeze(1)}, 1);
  mask_ = torch::cat({mask_, torch::ones({B, 1}, torch::kLong)}, 1);
  dev_mask_ = torch::cat({dev_mask_, torch::ones({B, 1}, dev_mask_.options())}, 1);
  for (int64_t e : options_.eos_token_ids) finished_ |= next.eq(e);
  ++steps_;
  done_ = steps_ >= options_.max_new_tokens || finished_.all().item<bool>();
  const torch::Device dev = model_->backbone().device();
  next_input_ = options_.use_cache ? next.view({B, 1}).to(dev) : seqs_.to(dev);
  st.finished = finished_.clone();
  st.done = done_;
  return st;
}

void Generator::finish(const std::vector<int64_t>& rows) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t B = seqs_.size(0);
  for (int64_t r : rows) {
    if (r < 0 || r >= B) throw ValueError("row " + std::to_string(r) + " is outside the batch of " + std::to_string(B));
    finished_[r] = true;
  }
  if (finished_.all().item<bool>()) done_ = true;
}

torch::Tensor Generator::sequences() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return seqs_;
}

torch::Tensor Generator::attention_mask() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return mask_;
}

}  // namespace th
