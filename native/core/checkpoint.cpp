#include "checkpoint.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "device.h"
#include "errors.h"
#include "json_strict.h"
#include "safetensors.h"
#include "torchscript_check.h"

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
  check_torchscript_records(path);
  try {
    return torch::jit::load(path, torch::Device(torch::kCPU), extra);
  } catch (const c10::Error& e) {
    throw FileError("'" + path + "' could not be read as a TorchScript archive: " + bounded_name(torch_message(e), 400));
  } catch (const std::exception& e) {
    // The TorchScript compiler reports broken code records with its own exception types (ErrorReport, ...).
    throw FileError("'" + path + "' could not be read as a TorchScript archive: " + bounded_name(e.what(), 400));
  }
}

std::string strip_prefix(const std::string& name, Arch arch) {
  const std::string prefix = arch == Arch::GPT2 ? "transformer." : "model.";
  if (name.rfind(prefix, 0) == 0) return name.substr(prefix.size());
  return name;
}

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Buffers that Hugging Face files may carry but no backbone reads: GPT-2's causal-mask tables (h.N.attn.bias,
// h.N.attn.masked_bias, [1, 1, n_positions, n_positions] each) and old Llama checkpoints' rotary inv_freq.
bool ignored_buffer(const std::string& name, Arch arch) {
  if (ends_with(name, ".rotary_emb.inv_freq")) return true;
  return arch == Arch::GPT2 && name.rfind("h.", 0) == 0 && (ends_with(name, ".attn.bias") || ends_with(name, ".attn.masked_bias"));
}

// The whole file as text; nullopt when it does not exist.
std::optional<std::string> read_text(const fs::path& p) {
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return std::nullopt;
  std::ifstream f(p, std::ios::binary);
  if (!f) throw FileError("'" + p.string() + "' cannot be opened for reading");
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// The shard files of model.safetensors.index.json, each with the tensor names the index maps to it.
std::map<std::string, std::set<std::string>> read_index(const fs::path& index_path) {
  const std::string where = "'" + index_path.string() + "'";
  const std::string text = *read_text(index_path);
  nlohmann::json j;
  std::string error;
  if (!parse_json_strict(text, j, error)) throw FileError(where + " is not valid JSON: " + error);
  if (!j.is_object()) throw FileError(where + " must hold a JSON object");
  auto wm = j.find("weight_map");
  if (wm == j.end() || !wm->is_object()) throw FileError(where + " has no \"weight_map\" object");
  if (wm->empty()) throw FileError(where + " has an empty weight_map");
  std::map<std::string, std::set<std::string>> shards;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) {
      throw FileError(where + ": weight_map entry '" + bounded_name(it.key()) + "' is not a file name, got " + describe_json(it.value()));
    }
    const std::string shard = it.value().get<std::string>();
    // Only files next to the index: a name with a path in it could point anywhere on the disk.
    if (shard.empty() || shard == "." || shard == ".." || shard.find('/') != std::string::npos ||
        shard.find('\\') != std::string::npos) {
      throw FileError(where + ": weight_map maps '" + bounded_name(it.key()) + "' to '" + bounded_name(shard) +
                      "', which is not a file name in the same folder");
    }
    shards[shard].insert(it.key());
  }
  return shards;
}

}  // namespace

Checkpoint load_hf_checkpoint(const std::string& dir, std::optional<torch::ScalarType> float_dtype, bool defer) {
  const fs::path root(dir);
  Checkpoint ck;
  auto config = read_text(root / "config.json");
  if (!config) {
    throw ConfigError("model folder '" + dir + "' has no config.json; a Hugging Face model folder needs config.json next to its weights");
  }
  ck.config_json = std::move(*config);
  try {
    ck.config = parse_config(ck.config_json);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + " (in '" + (root / "config.json").string() + "')");
  }
  ck.tokenizer_json = read_text(root / "tokenizer.json").value_or("");
  ck.tokenizer_config_json = read_text(root / "tokenizer_config.json").value_or("");

  // As transformers: the single file wins over an index when both are there.
  std::map<std::string, std::set<std::string>> shards;
  std::error_code ec;
  const fs::path single = root / "model.safetensors", index = root / "model.safetensors.index.json";
  if (fs::exists(single, ec)) {
    shards[single.filename().string()];
  } else if (fs::exists(index, ec)) {
    shards = read_index(index);
    for (const auto& [shard, names] : shards) {
      if (!fs::exists(root / shard, ec)) {
        throw FileError("'" + index.string() + "' maps " + std::to_string(names.size()) + " tensors (e.g. '" + bounded_name(*names.begin()) +
                        "') to '" + bounded_name(shard) + "', which is not in the folder");
      }
    }
  } else {
    std::string hint;
    if (fs::exists(root / "pytorch_model.bin", ec) || fs::exists(root / "pytorch_model.bin.index.json", ec)) {
      hint = "; pytorch_model.bin (pickle) is not read: save the model with safe_serialization=True, or export a TorchScript "
             "archive with scripts/export_torchscript.py";
    }
    throw FileError("model folder '" + dir + "' has no weights: expected model.safetensors or model.safetensors.index.json" + hint);
  }

  std::map<std::string, std::string> origin;  // stripped name -> file it came from
  for (const auto& [shard, listed] : shards) {
    const fs::path file = root / shard;
    auto file_ptr = std::shared_ptr<const SafetensorsFile>(std::make_shared<SafetensorsFile>(file.string()));
    const SafetensorsFile& st = *file_ptr;
    for (const std::string& name : listed) {
      if (!st.contains(name)) {
        throw FileError("'" + index.string() + "' maps tensor '" + bounded_name(name) + "' to '" + bounded_name(shard) +
                        "', which does not contain it");
      }
    }
    for (const std::string& name : st.names()) {
      const std::string key = strip_prefix(name, ck.config.arch);
      if (ignored_buffer(key, ck.config.arch)) continue;
      auto [it, fresh] = origin.emplace(key, file.string());
      if (!fresh) {
        const std::string where = it->second == file.string() ? "in '" + file.string() + "' (with and without the base-model prefix)"
                                                              : "in '" + it->second + "' and in '" + file.string() + "'";
        throw FileError("tensor '" + bounded_name(key) + "' is stored twice, " + where + "; each tensor must appear exactly once");
      }
      if (defer) {
        ck.deferred.emplace(key, Checkpoint::Deferred{file_ptr, name});
      } else {
        ck.tensors.emplace(key, st.load(name, float_dtype));
      }
    }
  }
  if (defer) ck.float_dtype = float_dtype;
  return ck;
}

Checkpoint load_checkpoint(const std::string& path, std::optional<torch::ScalarType> float_dtype, bool defer) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_hf_checkpoint(path, float_dtype, defer);
  if (ends_with(path, ".safetensors") && fs::is_regular_file(path, ec)) {
    throw FileError("'" + path + "' is a safetensors file; pass the folder that holds it together with config.json");
  }
  return load_torchscript_checkpoint(path);
}

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
  try {
    ck.config = parse_config(ck.config_json);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string(e.what()) + " (in the config.json of '" + path + "')");
  }
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
  torch::IValue out;
  try {
    out = module_.forward({input_ids, attention_mask});
  } catch (const c10::Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    // The interpreter reports a failure of the archive's own code as torch::jit::JITException, a plain
    // std::runtime_error: the archive is at fault (found by fuzzing: bit flips in its serialized code), not the
    // library. Its traceback can run to kilobytes of the archive's source; the head of it says where.
    const std::string what = e.what();
    throw FileError("the TorchScript archive's own forward failed (a damaged archive, or code this libtorch cannot run): " +
                    (what.size() > 800 ? what.substr(0, 800) + " [...]" : what));
  }
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
