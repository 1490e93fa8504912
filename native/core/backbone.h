// Native GPT-2 and Llama-family backbones built from a checkpoint's Hugging Face tensors.
//
// Hidden-state indexing follows Hugging Face `output_hidden_states` (and so the Python transformer-heads library):
// index 0 is the embedding output, i (1..L-1) the raw output of block i, L (= -1) the final-norm output.
// A forward runs the blocks only up to the deepest index asked for.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint.h"
#include "config.h"
#include "quant.h"

namespace th {

// Where a forward's position ids come from when the caller gives none.
//  FromMask:   cumsum(mask) - 1 (1 at padding), as Hugging Face's generate(): a row's first real token is position 0
//              whatever its padding.
//  Sequential: 0..T-1 for every row, as a Hugging Face forward called with position_ids=None (the Python
//              transformer-heads library's HeadedModel.forward). Query rows that see no key (left padding) then also
//              get transformers' eager-attention values (see AttentionContext::dead), so that every position, pads
//              included, equals the Python forward. Generation (the KV-cache path) keeps deriving positions from the
//              mask in both modes, as Hugging Face's generate() does.
enum class PositionMode { FromMask, Sequential };
PositionMode parse_position_mode(const std::string& name);  // "from-mask" | "sequential"; ConfigError otherwise
const char* position_mode_name(PositionMode mode);

struct ForwardRequest {
  torch::Tensor input_ids;       // int64 [B, T]
  torch::Tensor attention_mask;  // int64 [B, T] of 0/1; undefined = all ones
  std::vector<int64_t> layers;   // hidden-state indices, Python-style negatives allowed
  bool logits = false;
  // Last, so that {ids, mask, layers, logits} initializers keep their meaning.
  torch::Tensor position_ids;    // int64 [B, T] >= 0, as Hugging Face's forward takes them; undefined = the model's mode
};

struct ForwardResult {
  // One entry per requested layer, in request order, keyed by the index exactly as requested.
  std::vector<std::pair<int64_t, torch::Tensor>> hidden_states;
  torch::Tensor logits;  // [B, T, V] when asked for
};

// Keys and values of the positions already processed, per layer, for incremental decoding. Keys are kept after the
// rotary embedding and before the grouped-query expansion (as Hugging Face's DynamicCache), in buffers that grow by
// doubling, so a decoding step writes one position instead of concatenating the whole history.
class KVCache {
 public:
  // Positions cached so far (including left padding: the cache is indexed like the attention mask).
  int64_t length() const { return length_; }
  // Preallocates room for `capacity` positions on first use.
  void reserve(int64_t capacity) { reserve_ = capacity; }
  // Stores k/v [B, nkv, T, hd] of `layer` at positions [length, length + T) and returns the keys and values of all
  // length + T positions (views into the buffers).
  std::pair<torch::Tensor, torch::Tensor> update(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);
  void advance(int64_t t) { length_ += t; }
  int64_t bytes() const;

 private:
  std::vector<torch::Tensor> k_, v_;
  int64_t length_ = 0, reserve_ = 0;
};

// What the blocks of one forward share: the attention masks and (Llama) the rotary tables.
struct AttentionContext {
  torch::Tensor keep;         // bool [B, 1, T, S]: true where query i may attend to key j (S = past + T)
  torch::Tensor keep_window;  // same with the sliding window applied (undefined when no layer uses one)
  torch::Tensor cos, sin;     // [B, T, rotary_dim] in the model dtype (Llama family)
  KVCache* cache = nullptr;   // incremental decoding: keys/values of earlier positions
  // Sequential positions only: bool [B, 1, T, 1], true for query rows that see no key (left padding; dead_window:
  // under the sliding window). transformers' eager attention adds finfo.min to every masked score, so such a row's
  // scores all round to finfo.min and its softmax is uniform over the keys `keep` then lists; zeroing q reproduces
  // that exactly (every score 0). Undefined when no row is dead.
  torch::Tensor dead, dead_window;
};

// A projection of a transformer block: a dense weight, or a 4-bit / 8-bit quantized one (dequantized blockwise to the
// compute dtype at each use), plus an optional LoRA adapter: y = base(x) + B(A(dropout(x))) * scaling.
struct Linear {
  std::string name;      // Hugging Face module path without the base prefix, e.g. "h.0.attn.c_attn"
  int64_t in = 0, out = 0;
  torch::Tensor weight;  // [out, in]; undefined when quantized
  torch::Tensor bias;    // [out] or undefined
  std::shared_ptr<Quant4> q4;
  std::shared_ptr<Quant8> q8;
  torch::ScalarType compute_dtype = torch::kFloat32;
  double int8_threshold = kLlmInt8Threshold;  // 8-bit: LLM.int8 outlier threshold (0 = every column in int8)
  torch::Tensor lora_a, lora_b;  // [r, in], [out, r]
  double scaling = 0.0, dropout = 0.0;

  torch::Tensor operator()(const torch::Tensor& x) const;
  // The weight as a dense [out, in] tensor in `dtype` (dequantized when quantized).
  torch::Tensor dense(torch::ScalarType dtype) const;
  bool quantized() const { return q4 || q8; }
};

// y = x W^T + bias for a dense weight: libtorch's linear, or BLIS for a generation step's few rows (small_gemm.h).
torch::Tensor dense_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias);

struct QuantOptions {
  int bits = 4;  // 4 or 8
  QuantType type = QuantType::NF4;
  int64_t blocksize = 64;
  bool double_quant = false;
  torch::ScalarType compute_dtype = torch::kFloat32;
  double llm_int8_threshold = kLlmInt8Threshold;  // 8-bit only (bitsandbytes' llm_int8_threshold)
  // 4-bit only: the token-embedding table too (and the LM head when it is tied to it), as bitsandbytes'
  // Embedding4bit. Off by default, as in PEFT's QLoRA (which leaves embeddings and lm_head in float): on a small model
  // the table is a large share of the weights (GPT-2 small: 147 of 475 MiB).
  bool embeddings = false;
};

// Throws ConfigError for bits other than 4 / 8, or embeddings with 8 bits (load_backbone and Backbone::quantize).
void check_quant_options(const QuantOptions& o);

struct LoadOptions {
  std::string device = "cpu";
  std::string dtype = "float32";
  // Quantize the block projections while loading: each projection is read (from a Hugging Face folder: one tensor at
  // a time out of the mapped files) and quantized before the next, so the loading peak stays near the quantized
  // model's size instead of the float model's. A TorchScript archive is read whole first either way.
  std::optional<QuantOptions> quant;
  std::string positions = "from-mask";  // PositionMode by name
};

// A LoRA configuration with PEFT's LoraConfig semantics (lora.cpp). Module names here are full Hugging Face paths
// with the base prefix ("transformer.h.0.attn.c_attn", "model.layers.0.self_attn.q_proj"), as PEFT matches them.
struct LoraOptions {
  int64_t r = 8;
  double alpha = 8;
  double dropout = 0.0;
  bool rslora = false;
  // Module names or name suffixes (PEFT target_modules as a list: equal, or ending with "." + entry). Empty: every
  // block projection, or PEFT's default for the model type when peft_default_targets is set (an adapter_config.json
  // whose target_modules is null: gpt2 c_attn; llama, mistral, qwen2 q_proj and v_proj).
  std::vector<std::string> targets;
  bool peft_default_targets = false;
  // PEFT rank_pattern / alpha_pattern: (regular expression, value) in the config's key order. A module takes the value
  // of the first key whose expression matches the end of its full name after a '.' or the whole name (PEFT
  // get_pattern_key: re.match(rf"(.*\.)?({key})$", name)), else r / alpha. The two maps are looked up separately.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  std::vector<std::pair<std::string, double>> alpha_pattern;
  // PEFT layers_to_transform: only modules of these block indices get adapters (empty = every block). The index is
  // the first numbered path segment, or the one after a layers_pattern expression (PEFT check_target_module_exists).
  std::vector<int64_t> layers_to_transform;
  std::vector<std::string> layers_pattern;
  uint64_t seed = 0;
};

class Backbone {
 public:
  virtual ~Backbone() = default;
  Backbone(const Backbone&) = delete;
  Backbone& operator=(const Backbone&) = delete;

  const ModelConfig& config() const { return config_; }
  const std::string& config_json() const { return config_json_; }
  const std::string& tokenizer_json() const { return tokenizer_json_; }
  const std::string& tokenizer_config_json() const { return tokenizer_config_json_; }
  torch::Device device() const { return device_; }
  torch::ScalarType dtype() const { return dtype_; }
  int64_t num_layers() const { return config_.num_layers; }
  // Bytes held by the model's weights (shared tensors counted once).
  int64_t parameter_bytes() const { return parameter_bytes_; }
  // Transformer blocks executed since load; lets tests see that early exit really skips blocks.
  uint64_t blocks_run() const { return blocks_run_.load(); }

  // Maps a Python-style index (-1 = last) to 0..L; throws ValueError when out of range.
  int64_t normalize_layer(int64_t layer) const;

  // Thread-safe: one forward at a time per model. Runs without autograd.
  ForwardResult forward(const ForwardRequest& request);

  // Checks ids/mask (int64 [B, T] on the CPU; mask may be undefined = all ones) and returns them on the model's device.
  std::pair<torch::Tensor, torch::Tensor> prepare_inputs(const torch::Tensor& ids, const torch::Tensor& mask) const;
  // Checks caller-given position ids (int64 [B, T] like `ids`, >= 0, inside GPT-2's learned positions) and returns
  // them on the model's device; undefined in, undefined out (the model's PositionMode then applies).
  torch::Tensor prepare_positions(const torch::Tensor& position_ids, const torch::Tensor& ids) const;
  PositionMode position_mode() const { return position_mode_; }
  void set_position_mode(PositionMode mode) { position_mode_ = mode; }
  // Runs embeddings and blocks up to hidden-state index `stop` (0..L) and returns the states flagged in `wanted`
  // (size L+1; others undefined). Not locked and under the caller's grad mode: for HeadedModel, which owns the lock.
  // With a cache, `ids` [B, T] are the positions after the cached ones, `mask` [B, past + T] covers all of them, and
  // every block runs (stop must be L), appending its keys and values to the cache. No autograd through the cache.
  // `positions` (from prepare_positions) replaces the model's PositionMode; `generation` (set by decoding, with or
  // without a cache) derives positions from the mask whatever the mode, as Hugging Face's generate().
  std::vector<torch::Tensor> run(const torch::Tensor& ids, const torch::Tensor& mask, int64_t stop, const std::vector<bool>& wanted,
                                 KVCache* cache = nullptr, const torch::Tensor& positions = {}, bool generation = false);
  // The output projection (tied to the embeddings when the config says so); bias-free, [V, H]. Undefined when it is
  // the token-embedding table and that is quantized (QuantOptions::embeddings): lm_head_projection() has it then.
  torch::Tensor lm_head_weight() const { return tied_ ? tokens_.weight : lm_head_; }
  bool lm_head_tied() const { return tied_; }
  // The token-embedding table (name "wte" / "embed_tokens", [V, H]): q4 set when QuantOptions::embeddings.
  const Linear& token_embeddings() const { return tokens_; }
  // Weights by Hugging Face name (without the base-model prefix); shared tensors appear once. GPT-2 Conv1D weights
  // are listed in the [out, in] layout they are used in.
  const std::vector<std::pair<std::string, torch::Tensor>>& named_parameters() const { return params_; }
  // The weights as a Hugging Face state dict: full names with the base prefix (lm_head.weight without it, and absent
  // when tied), GPT-2 Conv1D weights back in their [in, out] layout; float32 copies on the CPU. LoRA adapters are not
  // included (the base weights are). Throws ConfigError for a quantized model.
  std::vector<std::pair<std::string, torch::Tensor>> hf_state_dict() const;
  // Enables or disables gradients for every backbone weight (full finetuning vs frozen).
  void set_requires_grad(bool on);

  // The block projections, by Hugging Face module path (without the base prefix).
  virtual std::vector<Linear*> linears() = 0;
  // The output projection as a Linear named "lm_head" (weight = lm_head_weight(), no bias), so that LoRA can adapt
  // it when targetModules names it, as PEFT does for the Python library's lm_head. Not among linears(): it is not
  // adapted by default, and quantized only as the tied token-embedding table (bitsandbytes skips lm_head). The head
  // named 'lm_head' runs through it.
  Linear* lm_head_projection() { return &lm_head_projection_; }
  // "transformer." (GPT-2) or "model." (Llama family): the base-model prefix of Hugging Face names.
  std::string base_prefix() const { return config_.arch == Arch::GPT2 ? "transformer." : "model."; }
  // Replaces every block projection's weight by its 4- or 8-bit form (biases, norms and position embeddings stay
  // dense; the token embeddings too unless options.embeddings).
  void quantize(const QuantOptions& options);
  bool is_quantized() const { return quantized_; }
  // Adds LoRA adapters (A Kaiming-uniform, B zero) to the matching projections, each with its own rank and scaling
  // (rank_pattern / alpha_pattern); returns their names (without the base prefix). Throws ConfigError when no
  // projection matches, or for an invalid pattern or layer index.
  std::vector<std::string> add_lora(const LoraOptions& options);
  // LoRA tensors by their PEFT names without the "base_model.model." prefix: "<hf path>.lora_A.weight" (the output
  // projection's: "lm_head.lora_A.weight", as lm_head sits outside the base model).
  std::vector<std::pair<std::string, torch::Tensor>> lora_parameters();
  // Folds the adapters into dense weights (quantized projections and embeddings become dense) and removes them. An lm_head adapter
  // is folded into the output projection in place; when that is tied to the embeddings it is refused (ConfigError),
  // as folding it would change the input embeddings too.
  void merge_lora();
  // Recompute each block in the backward pass instead of keeping its activations (training with autograd only).
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  bool gradient_checkpointing() const { return checkpointing_; }
  // One block, for the checkpointing recompute.
  torch::Tensor run_block(int64_t index, const torch::Tensor& x, const AttentionContext& ctx) { return block(index, x, ctx); }
  // Bytes by kind: dense weights, quantized weights (codes + scales), LoRA adapters.
  struct Footprint {
    int64_t dense = 0, quantized = 0, lora = 0;
  };
  Footprint footprint();

 protected:
  Backbone(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype, std::optional<QuantOptions> quant = std::nullopt);

  // Takes a tensor by name out of the checkpoint, moved to the model's device and dtype, checking its shape;
  // `transpose` stores a 2-D tensor as its contiguous transpose (GPT-2 Conv1D [in, out] -> [out, in]).
  torch::Tensor take(const std::string& name, std::vector<int64_t> shape, bool transpose = false);
  bool has(const std::string& name) const { return tensors_.count(name) > 0 || deferred_.count(name) > 0; }
  // Called by the architectures on each block projection right after taking its weight: with LoadOptions::quant,
  // quantizes it at once (the float weight is freed before the next one is read).
  void quantize_on_load(Linear& l);
  // The token-embedding table [V, H] by checkpoint name (quantized at once with QuantOptions::embeddings), and the
  // output projection: the same table when `tied`, else the checkpoint's lm_head.weight.
  void take_token_embeddings(const std::string& name);
  void take_lm_head(bool tied);
  torch::Tensor embed_tokens(const torch::Tensor& ids) const;
  torch::Tensor lm_head(const torch::Tensor& x) const;
  void finish_loading();  // drops unused checkpoint tensors and measures the weights
  void measure();

  virtual torch::Tensor embed(const torch::Tensor& ids, const torch::Tensor& positions) = 0;
  virtual void prepare(AttentionContext& ctx, const torch::Tensor& positions) = 0;
  virtual torch::Tensor block(int64_t index, const torch::Tensor& x, const AttentionContext& ctx) = 0;
  virtual torch::Tensor final_norm(const torch::Tensor& x) = 0;

  ModelConfig config_;
  torch::Device device_;
  torch::ScalarType dtype_;

 private:
  void check_inputs(const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& positions) const;

  void quantize_linear(Linear& l, const QuantOptions& o);
  // Points lm_head_projection_ at the current output weight (after loading, quantizing, merging); its adapter stays.
  void sync_lm_head();

  std::map<std::string, torch::Tensor> tensors_;
  std::map<std::string, Checkpoint::Deferred> deferred_;
  std::optional<torch::ScalarType> deferred_dtype_;
  std::optional<QuantOptions> load_quant_;
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::set<std::string> transposed_;  // names stored transposed from the checkpoint (GPT-2 Conv1D)
  std::string config_json_, tokenizer_json_, tokenizer_config_json_;
  // The token-embedding table as a bias-free [V, H] projection: the tied LM head is this Linear, so a quantized
  // table serves both the lookup (embedding_4bit) and the logits (linear_4bit).
  Linear tokens_;
  torch::Tensor lm_head_;  // untied only
  bool tied_ = false;
  Linear lm_head_projection_;
  int64_t parameter_bytes_ = 0;
  bool quantized_ = false;
  bool checkpointing_ = false;
  PositionMode position_mode_ = PositionMode::FromMask;
  std::atomic<uint64_t> blocks_run_{0};
  std::mutex mutex_;
};


// Scaled dot-product attention over q [B, nh, T, hd], k/v [B, nh, T, hd] with a boolean keep-mask.
// Softmax runs in float32, as Hugging Face's eager Llama attention does.
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& keep,
                        double scale);

// HF generation's positions: cumsum(mask) - 1, and 1 at padding.
torch::Tensor positions_from_mask(const torch::Tensor& mask);

std::unique_ptr<Backbone> make_gpt2(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype,
                                    std::optional<QuantOptions> quant = std::nullopt);
std::unique_ptr<Backbone> make_llama(Checkpoint&& ck, torch::Device device, torch::ScalarType dtype,
                                     std::optional<QuantOptions> quant = std::nullopt);

// Loads a TorchScript archive (see scripts/export_torchscript.py) or a Hugging Face model folder into a native backbone.
std::shared_ptr<Backbone> load_backbone(const std::string& path, const LoadOptions& options);

}  // namespace th
