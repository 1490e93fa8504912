// Conversions between JS values and tensors (see convert.h), and the external-memory accounting of models.
#include "convert.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace th::addon {

// Copied here, on the main thread, so that the compute thread never touches JS memory that the caller could change or
// free meanwhile; plain memcpy, since a libtorch conversion here would run a kernel (and an OpenMP team) on the
// main thread.
HostArray host_from_js(const Napi::Value& data, const Napi::Value& shape_v, const std::string& what_s, bool allow_float) {
  const char* what = what_s.c_str();
  Napi::Env env = data.Env();
  if (!shape_v.IsArray()) throw_error(env, "ERR_TH_ARG", std::string(what) + ": shape must be an array [batch, seq]");
  Napi::Array shape_a = shape_v.As<Napi::Array>();
  HostArray out;
  int64_t numel = 1;
  for (uint32_t i = 0; i < shape_a.Length(); ++i) {
    Napi::Value d = shape_a.Get(i);
    if (!d.IsNumber()) throw_error(env, "ERR_TH_ARG", std::string(what) + ": shape entries must be numbers");
    int64_t v = d.As<Napi::Number>().Int64Value();
    if (v < 0) throw_error(env, "ERR_TH_ARG", std::string(what) + ": shape entries must not be negative");
    out.shape.push_back(v);
    numel *= v;
  }
  if (!data.IsTypedArray()) throw_error(env, "ERR_TH_ARG", std::string(what) + " must be an Int32Array or BigInt64Array");
  Napi::TypedArray ta = data.As<Napi::TypedArray>();
  if (static_cast<int64_t>(ta.ElementLength()) != numel) {
    throw_error(env, "ERR_TH_SHAPE", std::string(what) + " has " + std::to_string(ta.ElementLength()) +
                                         " elements but its shape needs " + std::to_string(numel));
  }
  const napi_typedarray_type t = ta.TypedArrayType();
  if (t == napi_int32_array) {
    out.type = torch::kInt;
  } else if (t == napi_bigint64_array) {
    out.type = torch::kLong;
  } else if (allow_float && t == napi_float32_array) {
    out.type = torch::kFloat;
  } else if (allow_float && t == napi_float64_array) {
    out.type = torch::kDouble;
  } else {
    throw_error(env, "ERR_TH_ARG", std::string(what) + (allow_float ? " must be a Float32Array, Float64Array, Int32Array or BigInt64Array"
                                                                      : " must be an Int32Array or BigInt64Array"));
  }
  const size_t bytes = ta.ByteLength();
  void* p = std::malloc(bytes > 0 ? bytes : 1);
  if (p == nullptr) throw_error(env, "ERR_TH_MEMORY", std::string("out of memory copying ") + what);
  if (bytes > 0) std::memcpy(p, static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), bytes);
  out.bytes = std::shared_ptr<void>(p, std::free);
  return out;
}

HostArray tokens_from_js(const Napi::Value& data, const Napi::Value& shape_v, const char* what) {
  return host_from_js(data, shape_v, what, /*allow_float=*/false);
}

torch::Tensor HostArray::tensor() const {
  // The tensor borrows the copied bytes (keeping them alive) when no conversion is needed.
  auto keep = bytes;
  torch::Tensor t = torch::from_blob(bytes.get(), shape, [keep](void*) {}, torch::TensorOptions().dtype(type));
  switch (type) {
    case torch::kInt: return t.to(torch::kLong);
    case torch::kDouble: return t.to(torch::kFloat32);
    default: return t;
  }
}

BatchArgs::Tensors BatchArgs::tensors() const {
  Tensors t;
  t.ids = ids.tensor();
  if (mask) t.mask = mask->tensor();
  if (positions) t.positions = positions->tensor();
  for (auto& [k, a] : labels) t.labels[k] = a.tensor();
  if (hidden) {
    t.hidden.emplace();
    for (auto& [k, a] : *hidden) (*t.hidden)[k] = a.tensor();
  }
  return t;
}

torch::Tensor prepare_f32(const torch::Tensor& t) { return t.to(torch::kCPU, torch::kFloat32).contiguous(); }
torch::Tensor prepare_i32(const torch::Tensor& t) { return t.to(torch::kCPU, torch::kInt32).contiguous(); }

Named prepare_f32(Named ts) {
  for (auto& [k, t] : ts) t = prepare_f32(t);
  return ts;
}

std::vector<std::pair<std::string, double>> scalars(const Named& ts) {
  std::vector<std::pair<std::string, double>> out;
  out.reserve(ts.size());
  for (const auto& [k, t] : ts) out.emplace_back(k, t.item<double>());
  return out;
}

namespace {

// The wrappers below only read a prepared tensor's metadata and borrow its memory: a tensor that was not prepared on
// the compute thread is a bug in the binding, reported as such rather than converted here on the main thread.
void check_prepared(const torch::Tensor& t, torch::ScalarType type) {
  if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != type || !t.is_contiguous()) {
    throw std::logic_error("internal: a result tensor was not prepared on the compute thread");
  }
}

Napi::Array shape_to_js(Napi::Env env, const torch::Tensor& t) {
  Napi::Array shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  return shape;
}

}  // namespace

Napi::Object tensor_to_js(Napi::Env env, const torch::Tensor& t) {
  check_prepared(t, torch::kFloat32);
  auto* owned = new torch::Tensor(t);
  const size_t bytes = static_cast<size_t>(owned->numel()) * sizeof(float);
  auto buf = Napi::Buffer<uint8_t>::NewOrCopy(env, static_cast<uint8_t*>(owned->data_ptr()), bytes,
                                              [](Napi::Env, uint8_t*, torch::Tensor* hint) { delete hint; }, owned);
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", buf);
  o.Set("shape", shape_to_js(env, *owned));
  return o;
}

Napi::Object ints_to_js(Napi::Env env, const torch::Tensor& t) {
  check_prepared(t, torch::kInt32);
  Napi::Int32Array a = Napi::Int32Array::New(env, static_cast<size_t>(t.numel()));
  if (t.numel() > 0) std::memcpy(a.Data(), t.data_ptr<int32_t>(), static_cast<size_t>(t.numel()) * sizeof(int32_t));
  Napi::Object o = Napi::Object::New(env);
  o.Set("data", a);
  o.Set("shape", shape_to_js(env, t));
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

Napi::Array named_tensors_to_js(Napi::Env env, const Named& ts, const char* key) {
  Napi::Array a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    Napi::Object o = tensor_to_js(env, ts[i].second);
    o.Set(key, ts[i].first);
    a.Set(static_cast<uint32_t>(i), o);
  }
  return a;
}

Napi::Array scalars_to_js(Napi::Env env, const std::vector<std::pair<std::string, double>>& ts) {
  Napi::Array a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, ts[i].first);
    pair.Set(1u, Napi::Number::New(env, ts[i].second));
    a.Set(static_cast<uint32_t>(i), pair);
  }
  return a;
}

BatchArgs batch_from_js(const Napi::CallbackInfo& info, size_t labels_at, size_t hidden_at, size_t positions_at) {
  BatchArgs b;
  b.ids = tokens_from_js(info[0], info[1], "input_ids");
  if (!info[2].IsNull() && !info[2].IsUndefined()) b.mask = tokens_from_js(info[2], info[3], "attention_mask");
  if (labels_at < info.Length()) b.labels = host_list_from_js<std::string>(info[labels_at], "name", "labels");
  if (hidden_at < info.Length() && info[hidden_at].IsArray()) b.hidden = host_list_from_js<int64_t>(info[hidden_at], "layer", "hidden states");
  if (positions_at + 1 < info.Length() && !info[positions_at].IsNull() && !info[positions_at].IsUndefined()) {
    b.positions = tokens_from_js(info[positions_at], info[positions_at + 1], "position_ids");
  }
  return b;
}

}  // namespace th::addon
