// The subset of a Hugging Face config.json that the native backbones need, parsed and checked once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;

  // Sliding window of layer `i` (0 = none).
  int64_t window_for_layer(int64_t i) const { return (sliding_window > 0 && i >= max_window_layers) ? sliding_window : 0; }
};

// Parses config.json text. Throws ConfigError naming the field on anything missing, mistyped or unsupported.
ModelConfig parse_config(const std::string& json_text);

}  // namespace th
