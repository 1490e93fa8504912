// The subset of a Hugging Face config.json that the native backbones need, parsed and checked once: every field a
// backbone reads is type- and range-checked here and nowhere else, so that no config can reach a backbone with a
// size of zero, a NaN-producing epsilon or a shape whose product overflows.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace th {

enum class Arch { GPT2, Llama };

struct RopeScaling {
  std::string type = "default";  // default | linear | dynamic | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type;  // gpt2 | llama | mistral | qwen2
  Arch arch = Arch::GPT2;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-5;
  bool tie_word_embeddings = false;
  std::string activation;  // gelu_new | gelu | relu | silu ...
  // GPT-2
  bool scale_attn_weights = true;
  // Llama family
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  int64_t sliding_window = 0;     // 0 = full causal attention
  int64_t max_window_layers = 0;  // Qwen2: layers >= this use the window
  // Token ids lie in [0, vocab_size). eos_token_id is the first of eos_token_ids (Llama 3 lists several; generation
  // stops at any of them). A negative pad_token_id (older Llama conversions write -1) reads as "none".
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;

  // Sliding window of layer `i` (0 = none).
  int64_t window_for_layer(int64_t i) const { return (sliding_window > 0 && i >= max_window_layers) ? sliding_window : 0; }
};

// Largest values accepted, far above every published model (largest vocabularies ~262k, hidden sizes ~25k, context
// windows ~10M, layers ~130) and small enough that any product of two of them, as the backbones form when they
// derive weight shapes, is an exact int64.
constexpr int64_t kMaxVocabSize = int64_t{1} << 24;
constexpr int64_t kMaxHiddenSize = int64_t{1} << 20;
constexpr int64_t kMaxIntermediateSize = int64_t{1} << 22;
constexpr int64_t kMaxLayers = int64_t{1} << 12;
constexpr int64_t kMaxHeads = int64_t{1} << 14;
constexpr int64_t kMaxHeadDim = int64_t{1} << 14;
constexpr int64_t kMaxPositions = int64_t{1} << 28;

// Parses config.json text. Throws ConfigError naming the field and its (bounded) value on anything missing,
// mistyped, out of range or unsupported.
ModelConfig parse_config(const std::string& json_text);

// The normalized fields of a parsed config as a JSON object (camelCase, as the TypeScript ModelConfig): modelType,
// vocabSize, hiddenSize, numLayers, numAttentionHeads, numKeyValueHeads, headDim, intermediateSize,
// maxPositionEmbeddings, tieWordEmbeddings, bosTokenId, eosTokenId, eosTokenIds, padTokenId, normEps, activation,
// and for the Llama family ropeTheta, ropeScaling ({type, factor, lowFreqFactor, highFreqFactor,
// originalMaxPositionEmbeddings} or null), slidingWindow (null or the window), maxWindowLayers, qkvBias, oBias,
// mlpBias; for GPT-2 scaleAttnWeights. Absent token ids are null. `config_to_json(parse_config(text))` is the
// validation the loader applies, for callers that only read a config.
std::string config_to_json(const ModelConfig& config);

}  // namespace th
