#include "config.h"

#include <nlohmann/json.hpp>

#include "errors.h"

namespace th {
namespace {

using json = nlohmann::json;

const json* find(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

int64_t get_int(const json& j, const char* key, std::optional<int64_t> fallback = std::nullopt) {
  const json* v = find(j, key);
  if (!v) {
    if (fallback) return *fallback;
    throw ConfigError(std::string("config.json has no '") + key + "' (required for this model type)");
  }
  if (!v->is_number_integer()) throw ConfigError(std::string("config.json field '") + key + "' must be an integer, got " + v->dump());
  return v->get<int64_t>();
}

double get_num(const json& j, const char* key, double fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_number()) throw ConfigError(std::string("config.json field '") + key + "' must be a number, got " + v->dump());
  return v->get<double>();
}

bool get_bool(const json& j, const char* key, bool fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) throw ConfigError(std::string("config.json field '") + key + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

std::string get_str(const json& j, const char* key, const std::string& fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_string()) throw ConfigError(std::string("config.json field '") + key + "' must be a string, got " + v->dump());
  return v->get<std::string>();
}

// Llama 3 lists several eos ids; the first is the one generation defaults to.
std::optional<int64_t> get_token_id(const json& j, const char* key) {
  const json* v = find(j, key);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_array() && !v->empty() && (*v)[0].is_number_integer()) return (*v)[0].get<int64_t>();
  throw ConfigError(std::string("config.json field '") + key + "' must be a token id or a list of them, got " + v->dump());
}

void require_positive(int64_t v, const char* name) {
  if (v <= 0) throw ConfigError(std::string("config.json field '") + name + "' must be positive, got " + std::to_string(v));
}

void parse_rope(const json& j, ModelConfig& c) {
  // transformers v5 nests the rope settings in rope_parameters; older files use rope_theta + rope_scaling.
  const json* params = find(j, "rope_parameters");
  c.rope_theta = get_num(params ? *params : j, "rope_theta", get_num(j, "rope_theta", 10000.0));
  const json* rs = params ? params : find(j, "rope_scaling");
  if (rs) {
    if (!rs->is_object()) throw ConfigError("config.json field 'rope_scaling' must be an object, got " + rs->dump());
    std::string type = get_str(*rs, "rope_type", get_str(*rs, "type", "default"));
    if (type != "default" && type != "linear" && type != "dynamic" && type != "llama3") {
      throw ConfigError("rope_scaling type '" + type + "' is not supported (supported: default, linear, dynamic, llama3)");
    }
    c.rope_scaling.type = type;
    c.rope_scaling.factor = get_num(*rs, "factor", 1.0);
    c.rope_scaling.low_freq_factor = get_num(*rs, "low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = get_num(*rs, "high_freq_factor", 4.0);
    c.rope_scaling.original_max_position_embeddings = get_num(*rs, "original_max_position_embeddings", 8192);
    if (type != "default" && c.rope_scaling.factor <= 0) throw ConfigError("rope_scaling.factor must be positive");
    if (type == "llama3" && c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor) {
      throw ConfigError("rope_scaling: high_freq_factor must be larger than low_freq_factor for llama3 scaling");
    }
  }
  if (get_num(j, "partial_rotary_factor", 1.0) != 1.0) throw ConfigError("partial_rotary_factor != 1 is not supported");
}

}  // namespace

ModelConfig parse_config(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw ConfigError(std::string("config.json is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ConfigError("config.json must hold a JSON object");
  ModelConfig c;
  c.model_type = get_str(j, "model_type", "");
  if (c.model_type.empty()) throw ConfigError("config.json has no 'model_type' (supported: gpt2, llama, mistral, qwen2)");
  c.bos_token_id = get_token_id(j, "bos_token_id");
  c.eos_token_id = get_token_id(j, "eos_token_id");
  c.pad_token_id = get_token_id(j, "pad_token_id");

  if (c.model_type == "gpt2") {
    c.arch = Arch::GPT2;
    c.vocab_size = get_int(j, "vocab_size");
    c.hidden_size = get_int(j, "n_embd", get_int(j, "hidden_size", 0));
    c.num_layers = get_int(j, "n_layer", get_int(j, "num_hidden_layers", 0));
    c.num_heads = get_int(j, "n_head", get_int(j, "num_attention_heads", 0));
    c.max_position_embeddings = get_int(j, "n_positions", get_int(j, "max_position_embeddings", 1024));
    c.intermediate_size = get_int(j, "n_inner", 4 * c.hidden_size);
    c.norm_eps = get_num(j, "layer_norm_epsilon", 1e-5);
    c.activation = get_str(j, "activation_function", "gelu_new");
    c.scale_attn_weights = get_bool(j, "scale_attn_weights", true);
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", true);
    if (get_bool(j, "scale_attn_by_inverse_layer_idx", false) || get_bool(j, "reorder_and_upcast_attn", false)) {
      throw ConfigError("GPT-2 options scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported");
    }
    if (c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh" && c.activation != "gelu_fast" &&
        c.activation != "gelu" && c.activation != "relu" && c.activation != "silu") {
      throw ConfigError("GPT-2 activation_function '" + c.activation + "' is not supported (gelu_new, gelu, relu, silu)");
    }
    c.num_kv_heads = c.num_heads;
  } else if (c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2") {
    c.arch = Arch::Llama;
    c.vocab_size = get_int(j, "vocab_size");
    c.hidden_size = get_int(j, "hidden_size");
    c.num_layers = get_int(j, "num_hidden_layers");
    c.num_heads = get_int(j, "num_attention_heads");
    c.num_kv_heads = get_int(j, "num_key_value_heads", c.num_heads);
    c.intermediate_size = get_int(j, "intermediate_size");
    c.max_position_embeddings = get_int(j, "max_position_embeddings", 2048);
    c.norm_eps = get_num(j, "rms_norm_eps", 1e-6);
    c.activation = get_str(j, "hidden_act", "silu");
    if (c.activation != "silu") throw ConfigError("hidden_act '" + c.activation + "' is not supported for " + c.model_type + " (silu)");
    c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false);
    bool attention_bias = get_bool(j, "attention_bias", false);
    // Qwen2 always has q/k/v biases and never an o_proj bias.
    c.qkv_bias = c.model_type == "qwen2" ? true : attention_bias;
    c.o_bias = c.model_type == "qwen2" ? false : attention_bias;
    c.mlp_bias = get_bool(j, "mlp_bias", false);
    parse_rope(j, c);
    if (c.model_type == "mistral") {
      c.sliding_window = get_int(j, "sliding_window", 0);
    } else if (c.model_type == "qwen2" && get_bool(j, "use_sliding_window", false)) {
      c.sliding_window = get_int(j, "sliding_window", 0);
      c.max_window_layers = get_int(j, "max_window_layers", 0);
    }
    if (c.sliding_window < 0) throw ConfigError("config.json field 'sliding_window' must not be negative");
  } else {
    throw ConfigError("model_type '" + c.model_type + "' is not supported (supported: gpt2, llama, mistral, qwen2)");
  }
  require_positive(c.vocab_size, "vocab_size");
  require_positive(c.hidden_size, "hidden_size");
  require_positive(c.num_layers, "num_hidden_layers");
  require_positive(c.num_heads, "num_attention_heads");
  require_positive(c.num_kv_heads, "num_key_value_heads");
  require_positive(c.max_position_embeddings, "max_position_embeddings");
  c.head_dim = get_int(j, "head_dim", c.hidden_size / c.num_heads);
  if (c.arch == Arch::GPT2 && c.hidden_size % c.num_heads != 0) {
    throw ConfigError("hidden size " + std::to_string(c.hidden_size) + " is not divisible by the number of heads " +
                      std::to_string(c.num_heads));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    throw ConfigError("num_attention_heads (" + std::to_string(c.num_heads) + ") must be a multiple of num_key_value_heads (" +
                      std::to_string(c.num_kv_heads) + ")");
  }
  if (c.head_dim % 2 != 0 && c.arch == Arch::Llama) throw ConfigError("head_dim must be even for rotary embeddings");
  return c;
}

}  // namespace th
