// Values across the boundary. Inputs (token ids, labels, hidden states, head weights) are copied out of JS memory on
// the main thread, so a worker never touches memory the caller could change or free meanwhile; outputs go back as
// { data, shape } objects whose Buffer borrows the tensor's memory where the runtime allows it.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.h"
#include "core/headed_model.h"

namespace th::addon {

// (data: typed array, shape: number[]) -> a tensor: int64 from Int32Array / BigInt64Array, float32 from Float32Array /
// Float64Array when `allow_float`. `what` names the argument in error messages.
torch::Tensor tensor_from_js(const Napi::Value& data, const Napi::Value& shape_v, const std::string& what_s, bool allow_float);
// input_ids / attention_mask: (Int32Array | BigInt64Array, shape [B, T]).
torch::Tensor tokens_from_js(const Napi::Value& data, const Napi::Value& shape_v, const char* what);

// [{ <key>: string|number, data, shape }] -> (key, tensor) pairs, for labels, cached hidden states and head weights.
template <typename Key>
std::vector<std::pair<Key, torch::Tensor>> tensor_list_from_js(const Napi::Value& v, const char* key, const char* what) {
  Napi::Env env = v.Env();
  std::vector<std::pair<Key, torch::Tensor>> out;
  if (v.IsNull() || v.IsUndefined()) return out;
  if (!v.IsArray()) throw_error(env, "ERR_TH_ARG", std::string(what) + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsObject()) throw_error(env, "ERR_TH_ARG", std::string(what) + " entries must be objects");
    Napi::Object o = e.As<Napi::Object>();
    Key k;
    if constexpr (std::is_same_v<Key, std::string>) {
      k = o.Get(key).ToString().Utf8Value();
    } else {
      k = static_cast<Key>(o.Get(key).ToNumber().Int64Value());
    }
    std::string label = std::string(what) + " '" + o.Get(key).ToString().Utf8Value() + "'";
    out.emplace_back(k, tensor_from_js(o.Get("data"), o.Get("shape"), label, /*allow_float=*/true));
  }
  return out;
}

// A tensor handed to JS: float32, contiguous, on the CPU. The JS Buffer borrows its memory (no copy) where the
// runtime allows external buffers, and NewOrCopy copies where it does not (Electron's memory cage).
Napi::Object tensor_to_js(Napi::Env env, const torch::Tensor& t);
// Token ids cross as an Int32Array (float32 would round ids above 2^24) with their shape.
Napi::Object ints_to_js(Napi::Env env, const torch::Tensor& t);
// [{ <key>: name, data, shape }], for state dicts, head outputs and hidden states.
Napi::Array named_tensors_to_js(Napi::Env env, const std::vector<std::pair<std::string, torch::Tensor>>& ts, const char* key);
// [[name, number]] from scalar tensors (losses by head).
Napi::Array scalars_to_js(Napi::Env env, const std::vector<std::pair<std::string, torch::Tensor>>& ts);

// The arguments every batch-taking call shares: ids, shape, mask, maskShape, labels, hidden.
struct BatchArgs {
  torch::Tensor ids, mask;
  th::Labels labels;
  std::optional<th::HiddenMap> hidden;
};
// Reads ids, shape, mask, maskShape from info[0..3], labels from info[labels_at] and cached hidden states from
// info[hidden_at] when present (an index past the arguments means the call takes none).
BatchArgs batch_from_js(const Napi::CallbackInfo& info, size_t labels_at, size_t hidden_at);

// V8 only sees the JS wrappers; telling it about the weights makes the GC collect dropped models promptly.
// Adjusted in steps below 512 MiB as node-llama-cpp does, since large single adjustments can trip V8 heuristics.
void adjust(Napi::Env env, int64_t bytes);

}  // namespace th::addon
