#include "checkpoint.h"

#include <filesystem>
#include <fstream>

#include "device.h"
#include "errors.h"

namespace th {
namespace {

void check_readable(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw FileError("model file '" + path + "' does not exist");
  if (std::filesystem::is_directory(path, ec)) {
    throw FileError("'" + path + "' is a directory; expected a TorchScript archive (.pt) made by scripts/export_torchscript.py");
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FileError("model file '" + path + "' cannot be opened for reading");
  char magic[2] = {0, 0};
  f.read(magic, 2);
  // TorchScript archives are zip files; checking the magic first gives a clearer message than the zip reader.
  if (!f || magic[0] != 'P' || magic[1] != 'K') {
    throw FileError("'" + path + "' is not a TorchScript archive (no zip header); export one with scripts/export_torchscript.py");
  }
}

torch::jit::Module load_module(const std::string& path, torch::jit::ExtraFilesMap& extra) {
  check_readable(path);
  try {
    return torch::jit::load(path, torch::Device(torch::kCPU), extra);
  } catch (const c10::Error& e) {
    throw FileError("'" + path + "' could not be read as a TorchScript archive: " + torch_message(e));
  }
}

std::string strip_prefix(const std::string& name, Arch arch) {
  const std::string prefix = arch == Arch::GPT2 ? "transformer." : "model.";
  if (name.rfind(prefix, 0) == 0) return name.substr(prefix.size());
  return name;
}

}  // namespace

Checkpoint load_torchscript_checkpoint(const std::string& path) {
  torch::jit::ExtraFilesMap extra{{"config.json", ""}, {"tokenizer.json", ""}, {"tokenizer_config.json", ""}};
  torch::jit::Module m = load_module(path, extra);
  Checkpoint ck;
  ck.config_json = extra["config.json"];
  ck.tokenizer_json = extra["tokenizer.json"];
  ck.tokenizer_config_json = extra["tokenizer_config.json"];
  if (ck.config_json.empty()) {
    throw ConfigError("TorchScript archive '" + path +
                      "' has no config.json extra file; export it with scripts/export_torchscript.py, which stores the "
                      "Hugging Face config next to the weights");
  }
  ck.config = parse_config(ck.config_json);
  for (const auto& p : m.named_parameters(/*recurse=*/true)) {
    ck.tensors.emplace(strip_prefix(p.name, ck.config.arch), p.value.detach());
  }
  for (const auto& b : m.named_buffers(/*recurse=*/true)) {
    ck.tensors.emplace(strip_prefix(b.name, ck.config.arch), b.value.detach());
  }
  return ck;
}

TorchScriptModel::TorchScriptModel(const std::string& path) {
  torch::jit::ExtraFilesMap extra;
  module_ = load_module(path, extra);
  module_.eval();
}

TorchScriptModel::Output TorchScriptModel::forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask) {
  torch::NoGradGuard no_grad;
  torch::IValue out = module_.forward({input_ids, attention_mask});
  if (!out.isTuple()) throw ConfigError("the TorchScript module's forward must return (logits, hidden_states)");
  const auto& elems = out.toTuple()->elements();
  if (elems.size() != 2) throw ConfigError("the TorchScript module's forward must return (logits, hidden_states)");
  Output o;
  o.logits = elems[0].toTensor();
  const torch::IValue& hs = elems[1];
  if (hs.isTensorList()) {
    for (const auto& t : hs.toTensorVector()) o.hidden_states.push_back(t);
  } else if (hs.isList()) {
    for (const auto& v : hs.toListRef()) o.hidden_states.push_back(v.toTensor());
  } else if (hs.isTuple()) {
    for (const auto& v : hs.toTuple()->elements()) o.hidden_states.push_back(v.toTensor());
  } else {
    throw ConfigError("the TorchScript module's hidden_states output must be a list or tuple of tensors");
  }
  return o;
}

}  // namespace th
