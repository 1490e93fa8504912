// Reading model sources: TorchScript archives written by scripts/export_torchscript.py, and Hugging Face model
// folders (config.json + safetensors weights).
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"

namespace th {

class SafetensorsFile;

// Tensors by their Hugging Face names with the base-model prefix ("transformer." / "model.") removed,
// plus the text files that travel with the model.
struct Checkpoint {
  std::map<std::string, torch::Tensor> tensors;
  std::string config_json;
  std::string tokenizer_json;         // empty when the archive has none
  std::string tokenizer_config_json;  // empty when the archive has none
  ModelConfig config;
  // Hugging Face folders read with `defer`: tensors still in their (memory-mapped) files, read when the backbone
  // takes them, so that a loader quantizing each projection as it goes never holds the whole model in float.
  struct Deferred {
    std::shared_ptr<const SafetensorsFile> file;
    std::string name;  // as stored in the file
  };
  std::map<std::string, Deferred> deferred;
  std::optional<torch::ScalarType> float_dtype;  // applied to deferred tensors when read
};

// Loads the archive on the CPU. Throws FileError (missing / not an archive) or ConfigError (no or bad config.json).
Checkpoint load_torchscript_checkpoint(const std::string& path);

// Loads a Hugging Face model folder on the CPU: config.json, the weights from model.safetensors or from the shards
// that model.safetensors.index.json names, and tokenizer.json / tokenizer_config.json when present. Tensor names
// are accepted with or without the base-model prefix; GPT-2's attention-mask buffers and rotary inv_freq buffers
// are skipped. Floating-point weights are converted to `float_dtype` when given (saves a copy of the model).
// With `defer`, tensors are left in Checkpoint::deferred (every header is still validated here).
// Throws ConfigError (no or bad config.json) or FileError (no weights, malformed safetensors or index).
Checkpoint load_hf_checkpoint(const std::string& dir, std::optional<torch::ScalarType> float_dtype = std::nullopt, bool defer = false);

// A folder is read as a Hugging Face model folder, anything else as a TorchScript archive (always read whole).
Checkpoint load_checkpoint(const std::string& path, std::optional<torch::ScalarType> float_dtype = std::nullopt, bool defer = false);

// The archive's own forward, kept as the parity oracle for tests and benchmarks.
class TorchScriptModel {
 public:
  explicit TorchScriptModel(const std::string& path);
  struct Output {
    torch::Tensor logits;
    std::vector<torch::Tensor> hidden_states;
  };
  Output forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);

 private:
  torch::jit::Module module_;
};

}  // namespace th
