// HeadConfig parsing (strict: wrong types and impossible combinations are ConfigErrors naming the head and field) and
// the Head module: initialisation as Hugging Face's _init_weights, forward, and strict loading of head weight files.
#include "heads.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <set>

#include "backbone.h"
#include "config.h"
#include "errors.h"
#include "format.h"
#include "json_strict.h"

namespace th {
namespace {

using json = nlohmann::json;

Activation parse_activation(const std::string& head, const std::string& s) {
  if (s == "linear") return Activation::Linear;
  if (s == "sigmoid") return Activation::Sigmoid;
  if (s == "relu") return Activation::Relu;
  throw ConfigError("head '" + head + "': output_activation '" + s + "' is not one of linear, sigmoid, relu");
}

LossFn parse_loss(const std::string& head, const json& v) {
  if (v.is_null()) return LossFn::None;
  if (!v.is_string()) throw ConfigError("head '" + head + "': field 'loss_fct' must be a string or null, got " + describe_json(v));
  const std::string s = v.get<std::string>();
  if (s == "cross_entropy") return LossFn::CrossEntropy;
  if (s == "mse") return LossFn::MSE;
  if (s == "masked_mse") return LossFn::MaskedMSE;
  if (s == "bce") return LossFn::BCE;
  if (s == "bce_with_logits") return LossFn::BCEWithLogits;
  throw ConfigError("head '" + head + "': loss_fct '" + s + "' is not one of cross_entropy, mse, masked_mse, bce, bce_with_logits");
}

template <typename T>
T field(const json& o, const char* key, const std::string& head, T fallback) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw ConfigError("head '" + head + "': field '" + key + "' has the wrong type: " + describe_json(*it));
  }
}

// An integer field: a JSON integer (not 1.5, not 1e6, which Python's json reads as a float) in [lo, hi].
int64_t int_field(const json& o, const char* key, const std::string& head, int64_t fallback, int64_t lo, int64_t hi) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return fallback;
  if (!it->is_number_integer()) throw ConfigError("head '" + head + "': field '" + key + "' must be an integer, got " + describe_json(*it));
  bool in_range;
  if (it->is_number_unsigned()) {  // nlohmann reads every non-negative integer as unsigned
    const uint64_t u = it->get<uint64_t>();
    in_range = hi >= 0 && u <= static_cast<uint64_t>(hi) && static_cast<int64_t>(u) >= lo;
  } else {
    const int64_t v = it->get<int64_t>();
    in_range = v >= lo && v <= hi;
  }
  if (!in_range) {
    throw ConfigError("head '" + head + "': field '" + key + "' must be from " + std::to_string(lo) + " to " + std::to_string(hi) +
                      ", got " + describe_json(*it));
  }
  return it->get<int64_t>();
}

}  // namespace

double head_parameter_count(const HeadConfig& c, int64_t out_features) {
  const double in = static_cast<double>(c.in_size), h = static_cast<double>(c.hidden_size), out = static_cast<double>(out_features);
  const double out_bias = c.output_bias ? out : 0.0;
  if (c.num_layers == 1) return in * out + out_bias;
  return in * h + h + static_cast<double>(c.num_layers - 2) * (h * h + h) + h * out + out_bias;
}

void check_head_size(const HeadConfig& c) {
  if (c.num_layers < 1 || c.num_layers > kMaxHeadLayers) {
    throw ConfigError("head '" + c.name + "': num_layers must be from 1 to " + std::to_string(kMaxHeadLayers) + ", got " +
                      std::to_string(c.num_layers));
  }
  auto width = [&](const char* field, int64_t v, int64_t lo) {
    if (v < lo || v > kMaxHeadWidth) {
      throw ConfigError("head '" + c.name + "': " + field + " must be from " + std::to_string(lo) + " to " + std::to_string(kMaxHeadWidth) +
                        ", got " + std::to_string(v));
    }
  };
  width("in_size", c.in_size, 1);
  width("hidden_size", c.hidden_size, 0);
  if (c.num_outputs) width("num_outputs", *c.num_outputs, 1);
  if (c.num_layers > 1 && c.hidden_size < 1) throw ConfigError("head '" + c.name + "': an MLP head (num_layers > 1) needs hidden_size > 0");
  const double n = head_parameter_count(c, c.num_outputs.value_or(1));
  if (n > static_cast<double>(kMaxHeadParameters)) {
    throw ConfigError("head '" + c.name + "': " + std::to_string(static_cast<long long>(n)) + " parameters is more than the " +
                      std::to_string(kMaxHeadParameters) + " a head may have (8 GiB in float32); lower num_layers, hidden_size or num_outputs");
  }
}

std::vector<HeadConfig> parse_head_configs(const std::string& text) {
  json arr;
  std::string error;
  if (!parse_json_strict(text, arr, error)) throw ConfigError("head configs are not valid JSON: " + error);
  if (!arr.is_array()) throw ConfigError("head configs must be a JSON array");
  std::vector<HeadConfig> out;
  for (const auto& o : arr) {
    if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) throw ConfigError("every head config needs a string 'name'");
    HeadConfig c;
    c.name = o["name"].get<std::string>();
    if (!o.contains("in_size") || o["in_size"].is_null()) throw ConfigError("head '" + c.name + "': 'in_size' is required");
    // Sizes are bounded here, before anything is allocated: num_layers 1e6 would otherwise build a million layers.
    c.in_size = int_field(o, "in_size", c.name, 0, 1, kMaxHeadWidth);
    if (o.contains("num_outputs") && !o["num_outputs"].is_null()) c.num_outputs = int_field(o, "num_outputs", c.name, 1, 1, kMaxHeadWidth);
    c.layer_hook = int_field(o, "layer_hook", c.name, -1, -kMaxLayers - 1, kMaxLayers);
    c.hidden_size = int_field(o, "hidden_size", c.name, 0, 0, kMaxHeadWidth);
    c.num_layers = int_field(o, "num_layers", c.name, 1, 1, kMaxHeadLayers);
    c.output_activation = parse_activation(c.name, field<std::string>(o, "output_activation", c.name, "linear"));
    c.target = field<std::string>(o, "target", c.name, c.name);
    c.is_causal_lm = field<bool>(o, "is_causal_lm", c.name, false);
    c.pred_for_sequence = field<bool>(o, "pred_for_sequence", c.name, false);
    c.is_regression = field<bool>(o, "is_regression", c.name, false);
    c.output_bias = field<bool>(o, "output_bias", c.name, false);
    c.loss_fct = o.contains("loss_fct") ? parse_loss(c.name, o["loss_fct"]) : LossFn::CrossEntropy;
    c.trainable = field<bool>(o, "trainable", c.name, true);
    c.loss_weight = field<double>(o, "loss_weight", c.name, 1.0);
    c.ignore_pads = field<bool>(o, "ignore_pads", c.name, !c.is_causal_lm);
    c.block_gradients = field<bool>(o, "block_gradients", c.name, false);
    if (c.is_causal_lm && c.pred_for_sequence) throw ConfigError("head '" + c.name + "': pred_for_sequence cannot be combined with is_causal_lm");
    if (!std::isfinite(c.loss_weight)) throw ConfigError("head '" + c.name + "': loss_weight must be a finite number");
    check_head_size(c);
    out.push_back(std::move(c));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- Head

Head::Head(const HeadConfig& cfg, int64_t out_features, torch::Device device, torch::Generator& gen) : cfg_(cfg) {
  // Hugging Face's _init_weights for new Linear modules: weight ~ N(0, initializer_range = 0.02), bias = 0.
  auto make = [&](int64_t in, int64_t out, bool bias) {
    auto w = (at::randn({out, in}, gen, torch::TensorOptions().dtype(torch::kFloat32)) * 0.02).to(device);
    weights_.push_back(w);
    biases_.push_back(bias ? torch::zeros({out}, torch::TensorOptions().dtype(torch::kFloat32).device(device)) : torch::Tensor());
  };
  if (cfg.num_layers == 1) {
    make(cfg.in_size, out_features, cfg.output_bias);
  } else {
    make(cfg.in_size, cfg.hidden_size, true);
    for (int64_t i = 0; i < cfg.num_layers - 2; ++i) make(cfg.hidden_size, cfg.hidden_size, true);
    make(cfg.hidden_size, out_features, cfg.output_bias);
  }
}

// The projection's weight is read through the pointer at each use, not kept: merging or quantizing the backbone
// replaces it (a 4-bit tied table has no dense weight at all).
Head::Head(const HeadConfig& cfg, const Linear* lm_head) : cfg_(cfg), is_lm_head_(true), lm_head_(lm_head) {}

torch::Tensor Head::forward(const torch::Tensor& input) const {
  // Python casts the hooked state to the head's dtype and the logits to float32.
  if (is_lm_head_) {
    // a bare Linear in Python (PEFT-wrapped when adapted); a 4-bit one casts to its compute dtype itself
    const torch::Tensor& w = lm_head_->weight;
    return (*lm_head_)(w.defined() ? input.to(w.scalar_type()) : input).to(torch::kFloat32);
  }
  torch::Tensor x = input.to(weights_[0].scalar_type());
  if (cfg_.block_gradients) x = x.detach();
  for (size_t i = 0; i < weights_.size(); ++i) {
    x = torch::linear(x, weights_[i], biases_[i]);
    if (i + 1 < weights_.size()) x = torch::relu(x);
  }
  if (cfg_.output_activation == Activation::Sigmoid) x = torch::sigmoid(x);
  if (cfg_.output_activation == Activation::Relu) x = torch::relu(x);
  return x.to(torch::kFloat32);
}

std::vector<std::pair<std::string, torch::Tensor>> Head::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (is_lm_head_) {
    if (lm_head_->weight.defined()) out.emplace_back("lins.0.weight", lm_head_->weight);
    return out;
  }
  for (size_t i = 0; i < weights_.size(); ++i) {
    out.emplace_back("lins." + std::to_string(i) + ".weight", weights_[i]);
    if (biases_[i].defined()) out.emplace_back("lins." + std::to_string(i) + ".bias", biases_[i]);
  }
  return out;
}

void Head::load(const std::map<std::string, torch::Tensor>& state) {
  auto mine = named_parameters();
  std::set<std::string> expected;
  for (const auto& [k, t] : mine) expected.insert(k);
  for (const auto& [k, t] : state) {
    if (!expected.count(k)) throw ConfigError("head '" + cfg_.name + "': unexpected tensor '" + k + "' in its weights file");
  }
  torch::NoGradGuard no_grad;
  for (auto& [k, t] : mine) {
    auto it = state.find(k);
    if (it == state.end()) throw ConfigError("head '" + cfg_.name + "': its weights file has no tensor '" + k + "'");
    torch::Tensor src = it->second.dim() == 0 ? it->second.reshape({1}) : it->second;  // Python's patch_state_dict
    if (src.sizes() != t.sizes()) {
      throw ConfigError("head '" + cfg_.name + "': tensor '" + k + "' has shape " + shape_str(src.sizes()) +
                        " in the file but the head config implies " + shape_str(t.sizes()));
    }
    t.copy_(src);
  }
}

}  // namespace th
