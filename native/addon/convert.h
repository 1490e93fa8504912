// Values across the boundary. Inputs (token ids, labels, hidden states, head weights) are copied out of JS memory on
// the main thread with memcpy into HostArrays, so the compute thread never touches memory the caller could change or
// free meanwhile, and the main thread runs no libtorch kernel (a conversion there would start an OpenMP team on the
// main thread); HostArray::tensor() makes the tensor on the compute thread. Outputs go back as { data, shape }
// objects whose Buffer borrows the tensor's memory where the runtime allows it; the compute thread prepares them
// (prepare_f32 / prepare_i32) so that the main thread only wraps memory.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.h"
#include "core/headed_model.h"

namespace th::addon {

// A typed array's bytes, copied on the main thread, with its shape and element type.
struct HostArray {
  std::shared_ptr<void> bytes;  // malloc'd
  std::vector<int64_t> shape;
  torch::ScalarType type = torch::kFloat32;  // kInt, kLong, kFloat or kDouble: as the JS array was
  // On the compute thread: integers as int64, floats as float32 (what the core takes).
  torch::Tensor tensor() const;
};

// (data: typed array, shape: number[]) -> a HostArray: Int32Array / BigInt64Array, and Float32Array / Float64Array
// when `allow_float`. `what` names the argument in error messages.
HostArray host_from_js(const Napi::Value& data, const Napi::Value& shape_v, const std::string& what_s, bool allow_float);
// input_ids / attention_mask: (Int32Array | BigInt64Array, shape [B, T]).
HostArray tokens_from_js(const Napi::Value& data, const Napi::Value& shape_v, const char* what);

template <typename Key>
using HostList = std::vector<std::pair<Key, HostArray>>;

// [{ <key>: string|number, data, shape }] -> (key, array) pairs, for labels, cached hidden states and head weights.
template <typename Key>
HostList<Key> host_list_from_js(const Napi::Value& v, const char* key, const char* what) {
  Napi::Env env = v.Env();
  HostList<Key> out;
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
    out.emplace_back(k, host_from_js(o.Get("data"), o.Get("shape"), label, /*allow_float=*/true));
  }
  return out;
}

// On the compute thread: a tensor ready to be wrapped for JS (float32, or int32 for token ids; contiguous; CPU).
torch::Tensor prepare_f32(const torch::Tensor& t);
torch::Tensor prepare_i32(const torch::Tensor& t);
using Named = std::vector<std::pair<std::string, torch::Tensor>>;
Named prepare_f32(Named ts);
// Scalar tensors (losses by head) read as numbers, on the compute thread.
std::vector<std::pair<std::string, double>> scalars(const Named& ts);

// A prepared float32 tensor handed to JS. The JS Buffer borrows its memory (no copy) where the runtime allows
// external buffers, and NewOrCopy copies where it does not (Electron's memory cage).
Napi::Object tensor_to_js(Napi::Env env, const torch::Tensor& t);
// Token ids (prepared int32) cross as an Int32Array (float32 would round ids above 2^24) with their shape.
Napi::Object ints_to_js(Napi::Env env, const torch::Tensor& t);
// [{ <key>: name, data, shape }], for state dicts, head outputs and hidden states (prepared float32 tensors).
Napi::Array named_tensors_to_js(Napi::Env env, const Named& ts, const char* key);
// [[name, number]] (losses by head).
Napi::Array scalars_to_js(Napi::Env env, const std::vector<std::pair<std::string, double>>& ts);

// The arguments every batch-taking call shares: ids, shape, mask, maskShape, labels, hidden.
struct BatchArgs {
  HostArray ids;
  std::optional<HostArray> mask;
  HostList<std::string> labels;
  std::optional<HostList<int64_t>> hidden;
  std::optional<HostArray> positions;  // Hugging Face's position_ids, when the batch has them

  // The core's inputs, made on the compute thread.
  struct Tensors {
    torch::Tensor ids, mask, positions;  // mask, positions undefined when not given
    th::Labels labels;
    std::optional<th::HiddenMap> hidden;
  };
  Tensors tensors() const;
};
// Reads ids, shape, mask, maskShape from info[0..3], labels from info[labels_at] and cached hidden states from
// info[hidden_at] when present (an index past the arguments means the call takes none), and position ids and their
// shape from info[positions_at], info[positions_at + 1] when present and not null.
BatchArgs batch_from_js(const Napi::CallbackInfo& info, size_t labels_at, size_t hidden_at, size_t positions_at);

// V8 only sees the JS wrappers; telling it about the weights makes the GC collect dropped models promptly.
// Adjusted in steps below 512 MiB as node-llama-cpp does, since large single adjustments can trip V8 heuristics.
void adjust(Napi::Env env, int64_t bytes);

}  // namespace th::addon
