// Heads as the Python transformer-heads library defines them (reference/formats.md section 1): the HeadConfig fields
// and their JSON form, and the Head module itself (an MLP, or the backbone's own LM head for the special 'lm_head').
// What a head's output is compared against lives in losses.h; heads attached to a backbone in headed_model.h.
#pragma once

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace th {

struct Linear;  // backbone.h

enum class Activation { Linear, Sigmoid, Relu };
enum class LossFn { None, CrossEntropy, MSE, MaskedMSE, BCE, BCEWithLogits };

struct HeadConfig {
  std::string name;
  int64_t in_size = 0;
  std::optional<int64_t> num_outputs;  // none: 1 output, and classification losses use the vocabulary size
  int64_t layer_hook = -1;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  Activation output_activation = Activation::Linear;
  std::string target;  // label column; defaults to name
  bool is_causal_lm = false;
  bool pred_for_sequence = false;
  bool is_regression = false;
  bool output_bias = false;
  LossFn loss_fct = LossFn::CrossEntropy;
  bool trainable = true;
  double loss_weight = 1.0;
  bool ignore_pads = true;
  bool block_gradients = false;
};

// Head size bounds, checked by parse_head_configs before anything is allocated (and mirrored by the TypeScript
// validation). 64 layers is far beyond any probe or MLP head in use (the Python library's examples use 1 to 3);
// 2^20 covers every hidden size the config parser accepts (kMaxHiddenSize) and every vocabulary size in use (a
// causal-LM head has one output per token); 2^31 parameters (8 GiB in float32) is a whole 256k-vocabulary LM head
// on an 8192-wide model, while two 2^20-wide layers (2^40) are refused.
constexpr int64_t kMaxHeadLayers = 64;
constexpr int64_t kMaxHeadWidth = int64_t{1} << 20;
constexpr int64_t kMaxHeadParameters = int64_t{1} << 31;

// The number of weights and biases of a head with `out_features` outputs (as a double: it may exceed int64 for
// configs that are then refused).
double head_parameter_count(const HeadConfig& c, int64_t out_features);
// Throws ConfigError naming the head and field when num_layers, in_size, hidden_size, num_outputs or the total
// parameter count is out of bounds.
void check_head_size(const HeadConfig& c);

// Parses a JSON array of head configs in the Python library's snake_case form (as in head_configs.json values).
std::vector<HeadConfig> parse_head_configs(const std::string& json_text);

// An MLP head: Linear layers with ReLU between them, then the output activation. Float32, on the model's device.
class Head {
 public:
  Head(const HeadConfig& cfg, int64_t out_features, torch::Device device, torch::Generator& gen);
  // Wraps the backbone's output projection (the special head named 'lm_head'), with its LoRA adapter when it has one.
  // The backbone must outlive the head.
  Head(const HeadConfig& cfg, const Linear* lm_head);

  torch::Tensor forward(const torch::Tensor& x) const;
  const HeadConfig& config() const { return cfg_; }
  bool is_lm_head() const { return is_lm_head_; }
  // Tensors by their Python state-dict keys: lins.K.weight [out, in], lins.K.bias.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  // Strict load: every key present with the right shape, no extra keys; values are copied in place.
  void load(const std::map<std::string, torch::Tensor>& state);

 private:
  HeadConfig cfg_;
  std::vector<torch::Tensor> weights_, biases_;  // bias undefined when the layer has none
  bool is_lm_head_ = false;
  const Linear* lm_head_ = nullptr;
};

}  // namespace th
