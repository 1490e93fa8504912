// Reading model sources: TorchScript archives written by scripts/export_torchscript.py.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.h"

namespace th {

// Tensors by their Hugging Face names with the base-model prefix ("transformer." / "model.") removed,
// plus the text files that travel with the model.
struct Checkpoint {
  std::map<std::string, torch::Tensor> tensors;
  std::string config_json;
  std::string tokenizer_json;         // empty when the archive has none
  std::string tokenizer_config_json;  // empty when the archive has none
  ModelConfig config;
};

// Loads the archive on the CPU. Throws FileError (missing / not an archive) or ConfigError (no or bad config.json).
Checkpoint load_torchscript_checkpoint(const std::string& path);

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
