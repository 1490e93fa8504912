#include "config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <sstream>

#include "errors.h"
#include "json_strict.h"

namespace th {
namespace {

using json = nlohmann::json;

// Reads the fields of one JSON object; `where` prefixes field names in messages ("" for the top level,
// "rope_scaling." inside it). A field given as null counts as absent, as in transformers.
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  const json* find(const char* key) const {
    auto it = obj_.find(key);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  // The first of `keys` that is present (GPT-2's n_embd / hidden_size aliases), or nullptr.
  const json* find_any(std::initializer_list<const char*> keys, const char** found) const {
    for (const char* k : keys) {
      if (const json* v = find(k)) {
        *found = k;
        return v;
      }
    }
    *found = *keys.begin();
    return nullptr;
  }

  [[noreturn]] void fail(const char* key, const std::string& requirement, const json& v) const {
    throw ConfigError("config.json field '" + where_ + key + "' must be " + requirement + ", got " + describe_json(v));
  }

  // An integer in [lo, hi]; 768.0 is not one (torch would refuse it as a size, so transformers fails on it too).
  int64_t integer(const char* key, const json& v, int64_t lo, int64_t hi) const {
    const std::string req = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    if (!v.is_number_integer()) fail(key, req, v);
    // Above INT64_MAX nlohmann holds the value unsigned; get<int64_t> would wrap it to a negative number.
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) fail(key, req, v);
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) fail(key, req, v);
    return x;
  }

  int64_t required_int(std::initializer_list<const char*> keys, int64_t lo, int64_t hi) const {
    const char* key = nullptr;
    const json* v = find_any(keys, &key);
    if (!v) throw ConfigError("config.json has no '" + where_ + key + "' (required for this model type)");
    return integer(key, *v, lo, hi);
  }

  int64_t optional_int(std::initializer_list<const char*> keys, int64_t fallback, int64_t lo, int64_t hi) const {
    const char* key = nullptr;
    const json* v = find_any(keys, &key);
    return v ? integer(key, *v, lo, hi) : fallback;
  }

  // A finite number with lo < x < hi (exclusive bounds: an epsilon of 0 or a base of 0 is what the checks are for).
  double number(const char* key, double fallback, double lo, double hi, const std::string& requirement) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, requirement, *v);
    const double x = v->get<double>();
    if (!std::isfinite(x) || !(x > lo) || !(x < hi)) fail(key, requirement, *v);
    return x;
  }

  bool boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "true or false", *v);
    return v->get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) fail(key, "a string", *v);
    return v->get<std::string>();
  }

 private:
  const json& obj_;
  std::string where_;
};

// A token id, or a list of them (Llama 3's eos_token_id), each in [0, vocab). An empty list is no id.
std::vector<int64_t> token_ids(const Fields& f, const char* key, int64_t vocab, bool negative_is_none) {
  const json* v = f.find(key);
  if (!v) return {};
  const std::string req = "a token id from 0 to " + std::to_string(vocab - 1) + " (vocab_size - 1), a list of them, or null";
  auto one = [&](const json& e) -> int64_t {
    if (!e.is_number_integer()) f.fail(key, req, *v);
    if (e.is_number_unsigned() && e.get<uint64_t>() >= static_cast<uint64_t>(vocab)) f.fail(key, req, *v);
    const int64_t id = e.get<int64_t>();
    if (id >= vocab || (id < 0 && !negative_is_none)) f.fail(key, req, *v);
    return id;
  };
  if (v->is_number()) {
    const int64_t id = one(*v);
    if (id < 0) return {};
    return {id};
  }
  if (!v->is_array()) f.fail(key, req, *v);
  std::vector<int64_t> ids;
  for (const json& e : *v) {
    const int64_t id = one(e);
    if (id < 0) f.fail(key, req, *v);  // -1 means "none" as a single value, not inside a list
    ids.push_back(id);
  }
  return ids;
}

std::optional<int64_t> first(const std::vector<int64_t>& ids) {
  if (ids.empty()) return std::nullopt;
  return ids.front();
}

// Fixed-point text for a message ("1e-05", "500000").
std::string num_str(double x) {
  std::ostringstream o;
  o << x;
  return o.str();
}

void parse_rope(const json& j, ModelConfig& c) {
  const Fields top(j, "");
  const double kMaxTheta = std::numeric_limits<double>::max();
  // transformers v5 nests the rope settings in rope_parameters; older files use rope_theta + rope_scaling.
  const json* params = top.find("rope_parameters");
  const char* rs_key = params ? "rope_parameters" : "rope_scaling";
  const json* rs = params ? params : top.find("rope_scaling");
  if (rs && !rs->is_object()) top.fail(rs_key, "an object", *rs);
  const std::string theta_req = "a finite number > 0";
  c.rope_theta = top.number("rope_theta", 10000.0, 0.0, kMaxTheta, theta_req);
  if (params) c.rope_theta = Fields(*params, "rope_parameters.").number("rope_theta", c.rope_theta, 0.0, kMaxTheta, theta_req);
  if (rs) {
    const Fields f(*rs, std::string(rs_key) + ".");
    std::string type = f.find("rope_type") ? f.string("rope_type", "default") : f.string("type", "default");
    if (type != "default" && type != "linear" && type != "dynamic" && type != "llama3") {
      throw ConfigError(std::string(rs_key) + " type '" + bounded_name(type, 40) +
                        "' is not supported (supported: default, linear, dynamic, llama3)");
    }
    c.rope_scaling.type = type;
    if (type != "default") {
      if (!f.find("factor")) throw ConfigError(std::string("config.json has no '") + rs_key + ".factor' (required for " + type + " rope scaling)");
      // Scaling stretches positions by at most the ratio of two context lengths.
      c.rope_scaling.factor = f.number("factor", 1.0, 0.0, 1e6, "a finite number > 0 and < 1e6");
    }
    if (type == "llama3") {
      c.rope_scaling.low_freq_factor = f.number("low_freq_factor", 1.0, 0.0, 1e6, "a finite number > 0 and < 1e6");
      c.rope_scaling.high_freq_factor = f.number("high_freq_factor", 4.0, 0.0, 1e6, "a finite number > 0 and < 1e6");
      if (c.rope_scaling.high_freq_factor <= c.rope_scaling.low_freq_factor) {
        throw ConfigError(std::string(rs_key) + ": high_freq_factor (" + num_str(c.rope_scaling.high_freq_factor) +
                          ") must be larger than low_freq_factor (" + num_str(c.rope_scaling.low_freq_factor) + ") for llama3 scaling");
      }
      c.rope_scaling.original_max_position_embeddings =
          static_cast<double>(f.optional_int({"original_max_position_embeddings"}, 8192, 1, kMaxPositions));
    }
  }
  const json* partial = top.find("partial_rotary_factor");
  if (partial && !(partial->is_number() && partial->get<double>() == 1.0)) {
    throw ConfigError("config.json field 'partial_rotary_factor' is " + describe_json(*partial) + "; only 1 (rotating the whole head) is supported");
  }
}

}  // namespace

ModelConfig parse_config(const std::string& text) {
  json j;
  std::string error;
  JsonOptions options;
  options.reject_duplicate_keys = false;  // as Python's json.load, which transformers uses: the last one wins
  if (!parse_json(text, j, error, options)) throw ConfigError("config.json is not valid JSON: " + error);
  if (!j.is_object()) throw ConfigError("config.json must hold a JSON object, got " + describe_json(j));
  const Fields f(j, "");
  ModelConfig c;
  c.model_type = f.string("model_type", "");
  if (c.model_type.empty()) throw ConfigError("config.json has no 'model_type' (supported: gpt2, llama, mistral, qwen2)");

  if (c.model_type == "gpt2") {
    c.arch = Arch::GPT2;
    // transformers' GPT2Config maps hidden_size, num_hidden_layers, ... onto its own names.
    c.vocab_size = f.required_int({"vocab_size"}, 1, kMaxVocabSize);
    c.hidden_size = f.required_int({"n_embd", "hidden_size"}, 1, kMaxHiddenSize);
    c.num_layers = f.required_int({"n_layer", "num_hidden_layers"}, 1, kMaxLayers);
    c.num_heads = f.required_int({"n_head", "num_attention_heads"}, 1, kMaxHeads);
    c.max_position_embeddings = f.optional_int({"n_positions", "max_position_embeddings"}, 1024, 1, kMaxPositions);
    c.intermediate_size = f.optional_int({"n_inner"}, 4 * c.hidden_size, 1, kMaxIntermediateSize);
    c.norm_eps = f.number("layer_norm_epsilon", 1e-5, 0.0, 1.0, "a finite number > 0 and < 1");
    c.activation = f.string("activation_function", "gelu_new");
    c.scale_attn_weights = f.boolean("scale_attn_weights", true);
    c.tie_word_embeddings = f.boolean("tie_word_embeddings", true);
    if (f.boolean("scale_attn_by_inverse_layer_idx", false) || f.boolean("reorder_and_upcast_attn", false)) {
      throw ConfigError("GPT-2 options scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported");
    }
    if (c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh" && c.activation != "gelu_fast" &&
        c.activation != "gelu" && c.activation != "relu" && c.activation != "silu") {
      throw ConfigError("GPT-2 activation_function '" + bounded_name(c.activation, 40) + "' is not supported (gelu_new, gelu, relu, silu)");
    }
    c.num_kv_heads = c.num_heads;
    // GPT2Attention splits the hidden size evenly and has no head_dim setting.
    if (c.hidden_size % c.num_heads != 0) {
      throw ConfigError("config.json: n_embd " + std::to_string(c.hidden_size) + " is not divisible by n_head " + std::to_string(c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  } else if (c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2") {
    c.arch = Arch::Llama;
    c.vocab_size = f.required_int({"vocab_size"}, 1, kMaxVocabSize);
    c.hidden_size = f.required_int({"hidden_size"}, 1, kMaxHiddenSize);
    c.num_layers = f.required_int({"num_hidden_layers"}, 1, kMaxLayers);
    c.num_heads = f.required_int({"num_attention_heads"}, 1, kMaxHeads);
    c.num_kv_heads = f.optional_int({"num_key_value_heads"}, c.num_heads, 1, kMaxHeads);
    c.intermediate_size = f.required_int({"intermediate_size"}, 1, kMaxIntermediateSize);
    c.max_position_embeddings = f.optional_int({"max_position_embeddings"}, 2048, 1, kMaxPositions);
    c.norm_eps = f.number("rms_norm_eps", 1e-6, 0.0, 1.0, "a finite number > 0 and < 1");
    c.activation = f.string("hidden_act", "silu");
    if (c.activation != "silu") {
      throw ConfigError("hidden_act '" + bounded_name(c.activation, 40) + "' is not supported for " + c.model_type + " (silu)");
    }
    c.tie_word_embeddings = f.boolean("tie_word_embeddings", false);
    const bool attention_bias = f.boolean("attention_bias", false);
    // Qwen2 always has q/k/v biases and never an o_proj bias.
    c.qkv_bias = c.model_type == "qwen2" ? true : attention_bias;
    c.o_bias = c.model_type == "qwen2" ? false : attention_bias;
    c.mlp_bias = f.boolean("mlp_bias", false);
    if (c.num_kv_heads > c.num_heads || c.num_heads % c.num_kv_heads != 0) {
      throw ConfigError("num_attention_heads (" + std::to_string(c.num_heads) + ") must be a multiple of num_key_value_heads (" +
                        std::to_string(c.num_kv_heads) + ")");
    }
    // transformers takes head_dim when given (it need not be hidden_size / heads) and hidden_size // heads otherwise.
    if (f.find("head_dim")) {
      c.head_dim = f.optional_int({"head_dim"}, 0, 2, kMaxHeadDim);
    } else {
      if (c.hidden_size % c.num_heads != 0) {
        throw ConfigError("config.json: hidden_size " + std::to_string(c.hidden_size) + " is not divisible by num_attention_heads " +
                          std::to_string(c.num_heads) + " and there is no head_dim");
      }
      c.head_dim = c.hidden_size / c.num_heads;
    }
    if (c.head_dim % 2 != 0) throw ConfigError("head_dim must be even for rotary embeddings, got " + std::to_string(c.head_dim));
    parse_rope(j, c);
    // Dynamic NTK raises the base to the power head_dim / (head_dim - 2).
    if (c.rope_scaling.type == "dynamic" && c.head_dim <= 2) throw ConfigError("dynamic rope scaling needs head_dim > 2, got " + std::to_string(c.head_dim));
    if (c.model_type == "mistral" || c.model_type == "qwen2") {
      // transformers' defaults when the field is absent: a 4096-token window, and for Qwen2 the window from layer 28
      // on; null is no window. Checked even where unused (Qwen2 without use_sliding_window), as transformers keeps it.
      const bool used = c.model_type == "mistral" || f.boolean("use_sliding_window", false);
      const bool absent = j.find("sliding_window") == j.end();
      const int64_t window = f.optional_int({"sliding_window"}, absent ? 4096 : 0, 0, kMaxPositions);
      const int64_t max_window_layers = c.model_type == "qwen2" ? f.optional_int({"max_window_layers"}, 28, 0, kMaxLayers) : 0;
      if (used && f.find("sliding_window") && window == 0) {
        f.fail("sliding_window", "null or a positive integer", *f.find("sliding_window"));
      }
      if (used) {
        c.sliding_window = window;
        c.max_window_layers = max_window_layers;
      }
    }
  } else {
    throw ConfigError("model_type '" + bounded_name(c.model_type, 40) + "' is not supported (supported: gpt2, llama, mistral, qwen2)");
  }
  c.bos_token_id = first(token_ids(f, "bos_token_id", c.vocab_size, false));
  c.eos_token_ids = token_ids(f, "eos_token_id", c.vocab_size, false);
  c.eos_token_id = first(c.eos_token_ids);
  c.pad_token_id = first(token_ids(f, "pad_token_id", c.vocab_size, true));
  return c;
}

std::string config_to_json(const ModelConfig& c) {
  auto id = [](const std::optional<int64_t>& v) { return v ? json(*v) : json(nullptr); };
  json o = {
      {"modelType", c.model_type},
      {"vocabSize", c.vocab_size},
      {"hiddenSize", c.hidden_size},
      {"numLayers", c.num_layers},
      {"numAttentionHeads", c.num_heads},
      {"numKeyValueHeads", c.num_kv_heads},
      {"headDim", c.head_dim},
      {"intermediateSize", c.intermediate_size},
      {"maxPositionEmbeddings", c.max_position_embeddings},
      {"tieWordEmbeddings", c.tie_word_embeddings},
      {"bosTokenId", id(c.bos_token_id)},
      {"eosTokenId", id(c.eos_token_id)},
      {"eosTokenIds", c.eos_token_ids},
      {"padTokenId", id(c.pad_token_id)},
      {"normEps", c.norm_eps},
      {"activation", c.activation},
  };
  if (c.arch == Arch::GPT2) {
    o["scaleAttnWeights"] = c.scale_attn_weights;
  } else {
    o["ropeTheta"] = c.rope_theta;
    if (c.rope_scaling.type == "default") {
      o["ropeScaling"] = nullptr;
    } else {
      json rs = {{"type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
      if (c.rope_scaling.type == "llama3") {
        rs["lowFreqFactor"] = c.rope_scaling.low_freq_factor;
        rs["highFreqFactor"] = c.rope_scaling.high_freq_factor;
        rs["originalMaxPositionEmbeddings"] = c.rope_scaling.original_max_position_embeddings;
      }
      o["ropeScaling"] = rs;
    }
    o["slidingWindow"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
    o["maxWindowLayers"] = c.max_window_layers;
    o["qkvBias"] = c.qkv_bias;
    o["oBias"] = c.o_bias;
    o["mlpBias"] = c.mlp_bias;
  }
  return o.dump();
}

}  // namespace th
