// Conversions between JS values and tensors (see convert.h), and the external-memory accounting of models.
#include "convert.h"

#include <algorithm>
#include <cstring>

namespace th::addon {

// input_ids / attention_mask cross as (Int32Array | BigInt64Array, shape [B, T]). Copied here, on the main thread,
// so the worker never touches JS memory that the caller could change or free meanwhile.
torch::Tensor tensor_from_js(const Napi::Value& data, const Napi::Value& shape_v, const std::string& what_s, bool allow_float) {
  const char* what = what_s.c_str();
  Napi::Env env = data.Env();
  if (!shape_v.IsArray()) throw_error(env, "ERR_TH_ARG", std::string(what) + ": shape must be an array [batch, seq]");
  Napi::Array shape_a = shape_v.As<Napi::Array>();
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (uint32_t i = 0; i < shape_a.Length(); ++i) {
    Napi::Value d = shape_a.Get(i);
    if (!d.IsNumber()) throw_error(env, "ERR_TH_ARG", std::string(what) + ": shape entries must be numbers");
    int64_t v = d.As<Napi::Number>().Int64Value();
    if (v < 0) throw_error(env, "ERR_TH_ARG", std::string(what) + ": shape entries must not be negative");
    shape.push_back(v);
    numel *= v;
  }
  if (!data.IsTypedArray()) throw_error(env, "ERR_TH_ARG", std::string(what) + " must be an Int32Array or BigInt64Array");
  Napi::TypedArray ta = data.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != numel) {
    throw_error(env, "ERR_TH_SHAPE", std::string(what) + " has " + std::to_string(ta.ElementLength()) +
                                         " elements but its shape needs " + std::to_string(numel));
  }
  torch::Tensor out;
  if (ta.TypedArrayType() == napi_int32_array) {
    auto a = ta.As<Napi::Int32Array>();
    out = torch::from_blob(a.Data(), shape, torch::kInt32).to(torch::kLong);
  } else if (ta.TypedArrayType() == napi_bigint64_array) {
    auto a = ta.As<Napi::TypedArrayOf<int64_t>>();
    out = torch::from_blob(a.Data(), shape, torch::kLong).clone();
  } else if (allow_float && ta.TypedArrayType() == napi_float32_array) {
    auto a = ta.As<Napi::Float32Array>();
    out = torch::from_blob(a.Data(), shape, torch::kFloat32).clone();
  } else if (allow_float && ta.TypedArrayType() == napi_float64_array) {
    auto a = ta.As<Napi::Float64Array>();
    out = torch::from_blob(a.Data(), shape, torch::kFloat64).to(torch::kFloat32);
  } else {
    throw_error(env, "ERR_TH_ARG", std::string(what) + (allow_float ? " must be a Float32Array, Float64Array, Int32Array or BigInt64Array"
                                                                      : " must be an Int32Array or BigInt64Array"));
  }
  return out;
}

torch::Tensor tokens_from_js(const Napi::Value& data, const Napi::Value& shape_v, const char* what) {
  return tensor_from_js(data, shape_v, what, /*allow_float=*/false);
}

Napi::Object tensor_to_js(Napi::Env env, const torch::Tensor& t) {
  auto* owned = new torch::Tensor(t.to(torch::kCPU, torch::kFloat32).contiguous());
  const size_t bytes = static_cast<size_t>(owned->numel()) * sizeof(float);
  auto buf = Napi::Buffer<uint8_t>::NewOrCopy(env, static_cast<uint8_t*>(owned->data_ptr()), bytes,
                                              [](Napi::Env, uint8_t*, torch::Tensor* hint) { delete hint; }, owned);
  Napi::Array shape = Napi::Array::New(env, owned->dim());
  for (int64_t i = 0; i < owned->dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(owned->size(i))));
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", buf);
  o.Set("shape", shape);
  return o;
}

Napi::Object ints_to_js(Napi::Env env, const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kCPU, torch::kInt32).contiguous();
  Napi::Int32Array a = Napi::Int32Array::New(env, static_cast<size_t>(c.numel()));
  if (c.numel() > 0) std::memcpy(a.Data(), c.data_ptr<int32_t>(), static_cast<size_t>(c.numel()) * sizeof(int32_t));
  Napi::Array shape = Napi::Array::New(env, c.dim());
  for (int64_t i = 0; i < c.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(c.size(i))));
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", a);
  o.Set("shape", shape);
  return o;
}

void adjust(Napi::Env env, int64_t bytes) {
  const int64_t step = int64_t(1) << 29;
  while (bytes != 0) {
    const int64_t d = bytes > 0 ? std::min(bytes, step) : std::max(bytes, -step);
    Napi::MemoryManagement::AdjustExternalMemory(env, d);
    bytes -= d;
  }
}

Napi::Array named_tensors_to_js(Napi::Env env, const std::vector<std::pair<std::string, torch::Tensor>>& ts, const char* key) {
  Napi::Array a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    Napi::Object o = tensor_to_js(env, ts[i].second);
    o.Set(key, ts[i].first);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Array scalars_to_js(Napi::Env env, const std::vector<std::pair<std::string, torch::Tensor>>& ts) {
  Napi::Array a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, ts[i].first);
    pair.Set(1u, Napi::Number::New(env, ts[i].second.item<double>()));
    a.Set(static_cast<uint32_t>(i), pair);
  }
  return a;
}

BatchArgs batch_from_js(const Napi::CallbackInfo& info, size_t labels_at, size_t hidden_at) {
  BatchArgs b;
  b.ids = tokens_from_js(info[0], info[1], "input_ids");
  if (!info[2].IsNull() && !info[2].IsUndefined()) b.mask = tokens_from_js(info[2], info[3], "attention_mask");
  if (labels_at < info.Length()) {
    for (auto& [k, t] : tensor_list_from_js<std::string>(info[labels_at], "name", "labels")) b.labels[k] = t;
  }
  if (hidden_at < info.Length() && info[hidden_at].IsArray()) {
    b.hidden.emplace();
    for (auto& [k, t] : tensor_list_from_js<int64_t>(info[hidden_at], "layer", "hidden states")) (*b.hidden)[k] = t;
  }
  return b;
}

}  // namespace th::addon
