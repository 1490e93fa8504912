// Backbone::add_lora: which projections get LoRA adapters, and each one's rank and scaling, by PEFT's rules
// (huggingface/peft tuners_utils.check_target_module_exists, utils/other.get_pattern_key, lora/model
// _create_and_replace), so that an adapter_config.json means here what it means to PEFT.
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <regex>
#include <set>

#include "backbone.h"
#include "errors.h"

namespace th {
namespace {

// Names from a config file go into messages cut short: a message must stay readable (and bounded) for any input.
std::string clip(const std::string& s) { return s.size() > 80 ? s.substr(0, 80) + "... (" + std::to_string(s.size()) + " characters)" : s; }

// `key` is what the config holds (named in the message); `expr` is PEFT's regular expression built around it.
std::regex compile(const std::string& expr, const std::string& field, const std::string& key) {
  try {
    // ECMAScript is the std::regex dialect closest to Python's re for the expressions PEFT configs hold (names,
    // '.', '\d', classes, alternation, lazy quantifiers); Python-only syntax ((?P<name>...)) is refused here.
    return std::regex(expr, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    throw ConfigError("LoRA " + field + " key '" + clip(key) + "' is not a regular expression this library can use (" + e.what() + ")");
  }
}

// Python's re.match: anchored at the start, not at the end.
bool match_start(const std::string& s, const std::regex& re, std::smatch* m = nullptr) {
  std::smatch local;
  return std::regex_search(s, m ? *m : local, re, std::regex_constants::match_continuous);
}

// get_pattern_key + dict.get: the value of the first key (in order) matching the end of `name`, else `fallback`.
template <class T>
T pattern_value(const std::vector<std::pair<std::regex, T>>& patterns, const std::string& name, T fallback) {
  for (const auto& [re, v] : patterns) {
    if (match_start(name, re)) return v;
  }
  return fallback;
}

}  // namespace

std::vector<std::string> Backbone::add_lora(const LoraOptions& o) {
  if (o.r <= 0) throw ConfigError("LoRA rank r must be positive, got " + std::to_string(o.r));
  if (o.dropout < 0 || o.dropout >= 1) throw ConfigError("LoRA dropout must be in [0, 1)");
  if (!std::isfinite(o.alpha)) throw ConfigError("LoRA alpha must be a finite number");
  std::vector<std::pair<std::regex, int64_t>> ranks;
  for (const auto& [k, v] : o.rank_pattern) {
    if (v <= 0) throw ConfigError("LoRA rank_pattern['" + clip(k) + "'] must be a positive rank, got " + std::to_string(v));
    ranks.emplace_back(compile("(.*\\.)?(" + k + ")$", "rank_pattern", k), v);
  }
  std::vector<std::pair<std::regex, double>> alphas;
  for (const auto& [k, v] : o.alpha_pattern) {
    if (!std::isfinite(v)) throw ConfigError("LoRA alpha_pattern['" + clip(k) + "'] must be a finite number");
    alphas.emplace_back(compile("(.*\\.)?(" + k + ")$", "alpha_pattern", k), v);
  }
  for (int64_t i : o.layers_to_transform) {
    if (i < 0 || i >= config_.num_layers) {
      throw ConfigError("LoRA layers_to_transform names block " + std::to_string(i) + " but this " + config_.model_type + " model has " +
                        std::to_string(config_.num_layers) + " blocks (0.." + std::to_string(config_.num_layers - 1) + ")");
    }
  }
  // PEFT inserts layers_pattern into its expression as it is (no group around it), and reads group 1.
  std::vector<std::regex> layer_res;
  if (o.layers_pattern.empty()) layer_res.push_back(std::regex(R"(.*?\.[^.]*\.(\d+)\.)", std::regex::ECMAScript));
  for (const auto& p : o.layers_pattern) layer_res.push_back(compile(".*?\\." + p + "\\.(\\d+)\\.", "layers_pattern", p));

  std::vector<std::string> targets = o.targets;
  if (targets.empty() && o.peft_default_targets) {
    // PEFT's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING for the families this library runs.
    targets = config_.arch == Arch::GPT2 ? std::vector<std::string>{"c_attn"} : std::vector<std::string>{"q_proj", "v_proj"};
  }
  const std::string prefix = base_prefix();
  auto wanted = [&](const std::string& key) {
    bool found = targets.empty();
    for (const auto& t : targets) {
      // PEFT: a module listed by its full name is taken as it is, without the layers_to_transform filter.
      if (key == t) return true;
      if (key.size() > t.size() && key.compare(key.size() - t.size() - 1, t.size() + 1, "." + t) == 0) found = true;
    }
    if (!found || o.layers_to_transform.empty()) return found;
    for (const auto& re : layer_res) {
      std::smatch m;
      if (match_start(key, re, &m)) {
        if (!m[1].matched) return false;
        const int64_t index = std::stoll(m[1].str());
        for (int64_t i : o.layers_to_transform) {
          if (i == index) return true;
        }
        return false;
      }
    }
    return false;
  };

  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  std::vector<std::string> wrapped;
  torch::NoGradGuard no_grad;
  // Candidates by their PEFT module names: the block projections under the base prefix, then the output projection,
  // which sits outside the base model ("lm_head"; the Python library's lm_head head is a top-level module). lm_head
  // is adapted only when a target names it: the default (no targets) is every block projection.
  std::vector<std::pair<std::string, Linear*>> candidates;
  for (Linear* l : linears()) candidates.emplace_back(prefix + l->name, l);
  if (!targets.empty()) candidates.emplace_back("lm_head", lm_head_projection());
  for (const auto& [key, l] : candidates) {
    if (!wanted(key)) continue;
    if (l->lora_a.defined()) throw ConfigError("module '" + l->name + "' already has a LoRA adapter");
    const int64_t r = pattern_value(ranks, key, o.r);
    const double alpha = pattern_value(alphas, key, o.alpha);
    // PEFT: kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0, so the adapter starts as a no-op.
    const double bound = 1.0 / std::sqrt(static_cast<double>(l->in));
    auto a = at::rand({r, l->in}, gen, torch::TensorOptions().dtype(torch::kFloat32)) * (2 * bound) - bound;
    l->lora_a = a.to(device_).requires_grad_(true);
    l->lora_b = torch::zeros({l->out, r}, torch::TensorOptions().dtype(torch::kFloat32).device(device_)).requires_grad_(true);
    l->scaling = o.rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
    l->dropout = o.dropout;
    wrapped.push_back(l->name);
  }
  if (wrapped.empty()) {
    std::set<std::string> names;
    for (Linear* l : linears()) names.insert(l->name.substr(l->name.rfind('.') + 1));
    names.insert("lm_head");
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    std::string asked;
    for (const auto& t : targets) {
      if (asked.size() > 400) {
        asked += ", ...";
        break;
      }
      asked += (asked.empty() ? "" : ", ") + clip(t);
    }
    std::string layers;
    for (int64_t i : o.layers_to_transform) layers += (layers.empty() ? "" : ", ") + std::to_string(i);
    if (layers.size() > 200) layers = layers.substr(0, 200) + ", ...";
    throw ConfigError("LoRA targetModules [" + asked + "]" + (layers.empty() ? "" : " in layers [" + layers + "]") + " name no module of this " +
                      config_.model_type + " model; available: " + list);
  }
  measure();
  return wrapped;
}

}  // namespace th
