// Thin N-API binding over native/core. It converts JS values to core types on the main thread, runs every long
// operation in an AsyncWorker (off the event loop) and turns each C++ exception into a JS Error with a `code`.
// No model logic lives here.
#include <napi.h>
#include <torch/version.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backbone.h"
#include "checkpoint.h"
#include "device.h"
#include "errors.h"
#include "generate.h"
#include "heads.h"

#if defined(__linux__)
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#elif defined(__APPLE__)
#include <stdio.h>  // renamex_np, RENAME_SWAP (macOS 10.12+)
#endif

namespace {

struct AddonData {
  Napi::FunctionReference backbone_ctor;
  Napi::FunctionReference torchscript_ctor;
  Napi::FunctionReference headed_ctor;
  Napi::FunctionReference generator_ctor;
};

// ------------------------------------------------------------------------------------------- errors

struct Failure {
  std::string code, message;
};

// Runs `fn`, catching what the core and libtorch throw. Returns true on success.
template <typename Fn>
bool guarded(Failure& f, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const th::Error& e) {
    f = {e.code(), e.what()};
  } catch (const c10::Error& e) {
    f = {"ERR_TH_TORCH", th::torch_message(e)};
  } catch (const std::bad_alloc&) {
    f = {"ERR_TH_MEMORY", "out of memory"};
  } catch (const std::exception& e) {
    f = {"ERR_TH_INTERNAL", e.what()};
  } catch (...) {
    f = {"ERR_TH_INTERNAL", "unknown native error"};
  }
  return false;
}

Napi::Error make_error(Napi::Env env, const Failure& f) {
  Napi::Error err = Napi::Error::New(env, f.message);
  err.Set("code", Napi::String::New(env, f.code));
  return err;
}

[[noreturn]] void throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = code == "ERR_TH_ARG" ? Napi::TypeError::New(env, message) : Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

// Runs synchronous core calls from a JS method, rethrowing failures as JS errors.
template <typename Fn>
auto sync_call(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  Failure f;
  decltype(fn()) result{};
  if (!guarded(f, [&] { result = fn(); })) throw make_error(env, f);
  return result;
}

// ------------------------------------------------------------------------------------------- tensors

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

// Token ids cross as an Int32Array (float32 would round ids above 2^24) with their shape.
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

// V8 only sees the JS wrappers; telling it about the weights makes the GC collect dropped models promptly.
// Adjusted in steps below 512 MiB as node-llama-cpp does, since large single adjustments can trip V8 heuristics.
void adjust(Napi::Env env, int64_t bytes) {
  const int64_t step = int64_t(1) << 29;
  while (bytes != 0) {
    const int64_t d = bytes > 0 ? std::min(bytes, step) : std::max(bytes, -step);
    Napi::MemoryManagement::AdjustExternalMemory(env, d);
    bytes -= d;
  }
}

// ------------------------------------------------------------------------------------------- workers

// An AsyncWorker whose Execute runs `work` with every exception captured, resolving a Promise in OnOK.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name) : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  virtual void Work() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

  void Execute() override {
    if (!guarded(failure_, [&] { Work(); })) SetError(failure_.message);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Failure f;
    Napi::Value v;
    try {
      v = Result(env);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    }
    deferred_.Resolve(v);
  }
  void OnError(const Napi::Error&) override { deferred_.Reject(make_error(Env(), failure_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Failure failure_;
};

Napi::Array named_tensors_to_js(Napi::Env env, const std::vector<std::pair<std::string, torch::Tensor>>& ts, const char* key);

// ------------------------------------------------------------------------------------------- Backbone

class BackboneWrap : public Napi::ObjectWrap<BackboneWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeBackbone",
                       {InstanceMethod<&BackboneWrap::Forward>("forward"),
                        InstanceMethod<&BackboneWrap::StateDict>("stateDict"),
                        InstanceMethod<&BackboneWrap::Info>("info"),
                        InstanceMethod<&BackboneWrap::Dispose>("dispose")});
  }

  explicit BackboneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BackboneWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      throw_error(info.Env(), "ERR_TH_ARG", "NativeBackbone cannot be constructed directly; use loadBackbone()");
    }
    model_ = *info[0].As<Napi::External<std::shared_ptr<th::Backbone>>>().Data();
    external_bytes_ = model_->parameter_bytes();
    adjust(info.Env(), external_bytes_);
  }

  ~BackboneWrap() override { release(Env()); }

  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::Backbone> model) {
    std::shared_ptr<th::Backbone> holder = std::move(model);
    auto ext = Napi::External<std::shared_ptr<th::Backbone>>::New(env, &holder);
    return env.GetInstanceData<AddonData>()->backbone_ctor.New({ext});
  }

 private:

  void release(Napi::Env env) {
    if (!model_) return;
    model_.reset();  // in-flight workers keep their own reference; the weights go when the last one finishes
    adjust(env, -external_bytes_);
    external_bytes_ = 0;
  }

  std::shared_ptr<th::Backbone> live(Napi::Env env) const {
    if (!model_) throw_error(env, "ERR_TH_DISPOSED", "this model was disposed; load it again to use it");
    return model_;
  }

  // forward(ids, shape, mask | null, maskShape | null, layers: number[], logits: boolean) -> Promise<{hidden, logits}>
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = live(env);
    if (info.Length() < 6) throw_error(env, "ERR_TH_ARG", "forward(ids, shape, mask, maskShape, layers, logits)");
    th::ForwardRequest req;
    req.input_ids = tokens_from_js(info[0], info[1], "input_ids");
    if (!info[2].IsNull() && !info[2].IsUndefined()) req.attention_mask = tokens_from_js(info[2], info[3], "attention_mask");
    if (!info[4].IsArray()) throw_error(env, "ERR_TH_ARG", "layers must be an array of integers");
    Napi::Array layers = info[4].As<Napi::Array>();
    for (uint32_t i = 0; i < layers.Length(); ++i) {
      Napi::Value l = layers.Get(i);
      if (!l.IsNumber()) throw_error(env, "ERR_TH_ARG", "layers must be an array of integers");
      double d = l.As<Napi::Number>().DoubleValue();
      if (d != static_cast<double>(static_cast<int64_t>(d))) throw_error(env, "ERR_TH_ARG", "layer indices must be integers, got " + std::to_string(d));
      req.layers.push_back(static_cast<int64_t>(d));
    }
    req.logits = info[5].ToBoolean().Value();

    class Worker : public PromiseWorker {
     public:
      Worker(Napi::Env env, std::shared_ptr<th::Backbone> m, th::ForwardRequest r)
          : PromiseWorker(env, "th:forward"), model_(std::move(m)), req_(std::move(r)) {}
      void Work() override {
        res_ = model_->forward(req_);
        // Convert on the worker thread so the main thread only wraps memory.
        for (auto& h : res_.hidden_states) h.second = h.second.to(torch::kCPU, torch::kFloat32).contiguous();
        if (res_.logits.defined()) res_.logits = res_.logits.to(torch::kCPU, torch::kFloat32).contiguous();
      }
      Napi::Value Result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        Napi::Array hidden = Napi::Array::New(env, res_.hidden_states.size());
        for (size_t i = 0; i < res_.hidden_states.size(); ++i) {
          Napi::Object h = tensor_to_js(env, res_.hidden_states[i].second);
          h.Set("layer", Napi::Number::New(env, static_cast<double>(res_.hidden_states[i].first)));
          hidden.Set(static_cast<uint32_t>(i), h);
        }
        o.Set("hidden", hidden);
        o.Set("logits", res_.logits.defined() ? tensor_to_js(env, res_.logits) : env.Null());
        return o;
      }

     private:
      std::shared_ptr<th::Backbone> model_;
      th::ForwardRequest req_;
      th::ForwardResult res_;
    };
    auto* w = new Worker(env, std::move(model), std::move(req));
    w->Queue();
    return w->Promise();
  }

  // stateDict() -> Promise<[{ key, data, shape }]>: float32 copies by Hugging Face name, gathered off the event loop.
  Napi::Value StateDict(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = live(env);
    class Worker : public PromiseWorker {
     public:
      Worker(Napi::Env env, std::shared_ptr<th::Backbone> m) : PromiseWorker(env, "th:state-dict"), model_(std::move(m)) {}
      void Work() override { state_ = model_->hf_state_dict(); }
      Napi::Value Result(Napi::Env env) override { return named_tensors_to_js(env, state_, "key"); }

     private:
      std::shared_ptr<th::Backbone> model_;
      std::vector<std::pair<std::string, torch::Tensor>> state_;
    };
    auto* w = new Worker(env, std::move(model));
    w->Queue();
    return w->Promise();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto model = live(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("config", model->config_json());
    o.Set("tokenizer", model->tokenizer_json());
    o.Set("tokenizerConfig", model->tokenizer_config_json());
    o.Set("device", model->device().str());
    o.Set("dtype", th::dtype_name(model->dtype()));
    o.Set("numLayers", Napi::Number::New(env, static_cast<double>(model->num_layers())));
    o.Set("parameterBytes", Napi::Number::New(env, static_cast<double>(model->parameter_bytes())));
    o.Set("blocksRun", Napi::Number::New(env, static_cast<double>(model->blocks_run())));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }

  std::shared_ptr<th::Backbone> model_;
  int64_t external_bytes_ = 0;
};

Napi::Value LoadBackbone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "loadBackbone(path, options): path must be a string");
  th::LoadOptions opts;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Has("device") && o.Get("device").IsString()) opts.device = o.Get("device").As<Napi::String>();
    if (o.Has("dtype") && o.Get("dtype").IsString()) opts.dtype = o.Get("dtype").As<Napi::String>();
  }
  class Worker : public PromiseWorker {
   public:
    Worker(Napi::Env env, std::string p, th::LoadOptions o) : PromiseWorker(env, "th:load"), path_(std::move(p)), opts_(std::move(o)) {}
    void Work() override { model_ = th::load_backbone(path_, opts_); }
    Napi::Value Result(Napi::Env env) override { return BackboneWrap::Create(env, std::move(model_)); }

   private:
    std::string path_;
    th::LoadOptions opts_;
    std::shared_ptr<th::Backbone> model_;
  };
  auto* w = new Worker(env, info[0].As<Napi::String>(), opts);
  w->Queue();
  return w->Promise();
}

// ------------------------------------------------------------------------------------------- TorchScript oracle

// The archive's own forward, run by torch::jit. Used by the parity tests and the benchmark as the reference.
class TorchScriptWrap : public Napi::ObjectWrap<TorchScriptWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeTorchScript", {InstanceMethod<&TorchScriptWrap::Forward>("forward"),
                                                  InstanceMethod<&TorchScriptWrap::Dispose>("dispose")});
  }
  explicit TorchScriptWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TorchScriptWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_error(info.Env(), "ERR_TH_ARG", "use loadTorchScript()");
    module_ = *info[0].As<Napi::External<std::shared_ptr<th::TorchScriptModel>>>().Data();
  }
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::TorchScriptModel> m) {
    auto ext = Napi::External<std::shared_ptr<th::TorchScriptModel>>::New(env, &m);
    return env.GetInstanceData<AddonData>()->torchscript_ctor.New({ext});
  }

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!module_) throw_error(env, "ERR_TH_DISPOSED", "this TorchScript module was disposed");
    torch::Tensor ids = tokens_from_js(info[0], info[1], "input_ids");
    torch::Tensor mask = tokens_from_js(info[2], info[3], "attention_mask");
    class Worker : public PromiseWorker {
     public:
      Worker(Napi::Env env, std::shared_ptr<th::TorchScriptModel> m, torch::Tensor i, torch::Tensor k)
          : PromiseWorker(env, "th:torchscript"), m_(std::move(m)), ids_(std::move(i)), mask_(std::move(k)) {}
      void Work() override {
        std::lock_guard<std::mutex> lock(m_mutex());
        out_ = m_->forward(ids_, mask_);
      }
      Napi::Value Result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("logits", tensor_to_js(env, out_.logits));
        Napi::Array hs = Napi::Array::New(env, out_.hidden_states.size());
        for (size_t i = 0; i < out_.hidden_states.size(); ++i) hs.Set(static_cast<uint32_t>(i), tensor_to_js(env, out_.hidden_states[i]));
        o.Set("hidden", hs);
        return o;
      }
      static std::mutex& m_mutex() {
        static std::mutex m;
        return m;
      }

     private:
      std::shared_ptr<th::TorchScriptModel> m_;
      torch::Tensor ids_, mask_;
      th::TorchScriptModel::Output out_;
    };
    auto* w = new Worker(env, module_, ids, mask);
    w->Queue();
    return w->Promise();
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    module_.reset();
    return info.Env().Undefined();
  }
  std::shared_ptr<th::TorchScriptModel> module_;
};

Napi::Value LoadTorchScript(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "loadTorchScript(path): path must be a string");
  class Worker : public PromiseWorker {
   public:
    Worker(Napi::Env env, std::string p) : PromiseWorker(env, "th:load-torchscript"), path_(std::move(p)) {}
    void Work() override { m_ = std::make_shared<th::TorchScriptModel>(path_); }
    Napi::Value Result(Napi::Env env) override { return TorchScriptWrap::Create(env, std::move(m_)); }

   private:
    std::string path_;
    std::shared_ptr<th::TorchScriptModel> m_;
  };
  auto* w = new Worker(env, info[0].As<Napi::String>());
  w->Queue();
  return w->Promise();
}


// ------------------------------------------------------------------------------------------- HeadedModel

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

// The arguments every batch-taking call shares: ids, shape, mask, maskShape, labels, hidden.
struct BatchArgs {
  torch::Tensor ids, mask;
  th::Labels labels;
  std::optional<th::HiddenMap> hidden;
};

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

// ------------------------------------------------------------------------------------------- Generator

// One generation in progress: each step() runs one forward off the event loop, so the caller can stream tokens,
// stop between steps (AbortSignal, stop strings) and keep the loop responsive. It keeps its model alive.
class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeGenerator",
                       {InstanceMethod<&GeneratorWrap::Step>("step"), InstanceMethod<&GeneratorWrap::Finish>("finish"),
                        InstanceMethod<&GeneratorWrap::Info>("info"), InstanceMethod<&GeneratorWrap::Dispose>("dispose")});
  }

  explicit GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_error(info.Env(), "ERR_TH_ARG", "use HeadedModel.generate()");
    gen_ = *info[0].As<Napi::External<std::shared_ptr<th::Generator>>>().Data();
  }

  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::Generator> g) {
    auto ext = Napi::External<std::shared_ptr<th::Generator>>::New(env, &g);
    return env.GetInstanceData<AddonData>()->generator_ctor.New({ext});
  }

 private:
  std::shared_ptr<th::Generator> live(Napi::Env env) const {
    if (!gen_) throw_error(env, "ERR_TH_DISPOSED", "this generation was disposed");
    return gen_;
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    class Worker : public PromiseWorker {
     public:
      Worker(Napi::Env env, std::shared_ptr<th::Generator> g) : PromiseWorker(env, "th:generate-step"), g_(std::move(g)) {}
      void Work() override { st_ = g_->step(); }
      Napi::Value Result(Napi::Env env) override {
        Napi::Object o = Napi::Object::New(env);
        o.Set("index", Napi::Number::New(env, static_cast<double>(st_.index)));
        o.Set("tokens", ints_to_js(env, st_.tokens));
        o.Set("logprobs", tensor_to_js(env, st_.logprobs));
        o.Set("finished", ints_to_js(env, st_.finished));
        o.Set("heads", named_tensors_to_js(env, st_.heads, "name"));
        if (st_.lm_logits.defined()) o.Set("logits", tensor_to_js(env, st_.lm_logits));
        o.Set("done", Napi::Boolean::New(env, st_.done));
        return o;
      }

     private:
      std::shared_ptr<th::Generator> g_;
      th::GenerateStep st_;
    };
    auto* w = new Worker(env, live(env));
    w->Queue();
    return w->Promise();
  }

  Napi::Value Finish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = live(env);
    if (info.Length() < 1 || !info[0].IsArray()) throw_error(env, "ERR_TH_ARG", "finish(rows): rows must be an array of row indices");
    Napi::Array a = info[0].As<Napi::Array>();
    std::vector<int64_t> rows;
    for (uint32_t i = 0; i < a.Length(); ++i) rows.push_back(a.Get(i).ToNumber().Int64Value());
    sync_call(env, [&] { g->finish(rows); return 0; });
    return env.Undefined();
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto g = live(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("done", Napi::Boolean::New(env, g->done()));
    o.Set("steps", Napi::Number::New(env, static_cast<double>(g->steps())));
    o.Set("lmHead", g->lm_head_name());
    o.Set("cacheBytes", Napi::Number::New(env, static_cast<double>(g->cache_bytes())));
    return o;
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    gen_.reset();  // a running step keeps its own reference until it ends
    return info.Env().Undefined();
  }

  std::shared_ptr<th::Generator> gen_;
};

class HeadedWrap : public Napi::ObjectWrap<HeadedWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeHeadedModel",
                       {InstanceMethod<&HeadedWrap::Forward>("forward"),
                        InstanceMethod<&HeadedWrap::TrainStep>("trainStep"),
                        InstanceMethod<&HeadedWrap::OptimizerStep>("optimizerStep"),
                        InstanceMethod<&HeadedWrap::ConfigureOptimizer>("configureOptimizer"),
                        InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::save_optimizer>>("saveOptimizer"),
                        InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::load_optimizer>>("loadOptimizer"),
                        InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::save_trainable>>("saveTrainable"),
                        InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::load_trainable>>("loadTrainable"),
                        InstanceMethod<&HeadedWrap::HookedHidden>("hookedHidden"),
                        InstanceMethod<&HeadedWrap::HeadTensors<&th::HeadedModel::head_state>>("headState"),
                        InstanceMethod<&HeadedWrap::LoadHeadState>("loadHeadState"),
                        InstanceMethod<&HeadedWrap::HeadTensors<&th::HeadedModel::head_grads>>("headGrads"),
                        InstanceMethod<&HeadedWrap::ModelTensors<&th::HeadedModel::lora_state>>("loraState"),
                        InstanceMethod<&HeadedWrap::LoadTensors<&th::HeadedModel::load_lora_state>>("loadLoraState"),
                        InstanceMethod<&HeadedWrap::MergeLora>("mergeLora"),
                        InstanceMethod<&HeadedWrap::BackboneState>("backboneState"),
                        InstanceMethod<&HeadedWrap::ModelTensors<&th::HeadedModel::trained_backbone_state>>("trainedBackboneState"),
                        InstanceMethod<&HeadedWrap::LoadTensors<&th::HeadedModel::load_backbone_tensors>>("loadBackboneTensors"),
                        InstanceMethod<&HeadedWrap::BackboneGradNorm>("backboneGradNorm"),
                        InstanceMethod<&HeadedWrap::Generator>("generator"),
                        InstanceMethod<&HeadedWrap::Info>("info"),
                        InstanceMethod<&HeadedWrap::Dispose>("dispose")});
  }

  explicit HeadedWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HeadedWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) throw_error(info.Env(), "ERR_TH_ARG", "use loadHeaded()");
    model_ = *info[0].As<Napi::External<std::shared_ptr<th::HeadedModel>>>().Data();
    external_bytes_ = model_->backbone().parameter_bytes();
    adjust(info.Env(), external_bytes_);
  }
  ~HeadedWrap() override { release(Env()); }

  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::HeadedModel> m) {
    auto ext = Napi::External<std::shared_ptr<th::HeadedModel>>::New(env, &m);
    return env.GetInstanceData<AddonData>()->headed_ctor.New({ext});
  }

 private:
  void release(Napi::Env env) {
    if (!model_) return;
    model_.reset();
    adjust(env, -external_bytes_);
    external_bytes_ = 0;
  }
  std::shared_ptr<th::HeadedModel> live(Napi::Env env) const {
    if (!model_) throw_error(env, "ERR_TH_DISPOSED", "this model was disposed; load it again to use it");
    return model_;
  }

  // A worker that runs `fn(model)` and converts the result with `to_js`.
  template <typename R, typename Fn, typename ToJs>
  Napi::Value queue(Napi::Env env, const char* name, Fn fn, ToJs to_js) {
    class Worker : public PromiseWorker {
     public:
      Worker(Napi::Env env, const char* name, Fn f, ToJs t) : PromiseWorker(env, name), fn_(std::move(f)), to_js_(std::move(t)) {}
      void Work() override { result_ = fn_(); }
      Napi::Value Result(Napi::Env env) override { return to_js_(env, result_); }

     private:
      Fn fn_;
      ToJs to_js_;
      R result_{};
    };
    auto* w = new Worker(env, name, std::move(fn), std::move(to_js));
    w->Queue();
    return w->Promise();
  }

  static Napi::Object output_to_js(Napi::Env env, const th::HeadedOutput& o) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("loss", Napi::Number::New(env, o.loss.item<double>()));
    r.Set("lossByHead", scalars_to_js(env, o.loss_by_head));
    r.Set("adaptedLossByHead", scalars_to_js(env, o.adapted_loss_by_head));
    r.Set("preds", named_tensors_to_js(env, o.preds_by_head, "name"));
    return r;
  }

  // forward(ids, shape, mask, maskShape, labels, wantPreds, hidden)
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    BatchArgs b = batch_from_js(info, 4, 6);
    const bool preds = info[5].ToBoolean().Value();
    return queue<th::HeadedOutput>(
        env, "th:headed-forward",
        [m, b = std::move(b), preds]() {
          auto o = m->forward(b.ids, b.mask, b.labels, preds, b.hidden ? &*b.hidden : nullptr);
          for (auto& [k, t] : o.preds_by_head) t = t.to(torch::kCPU, torch::kFloat32).contiguous();
          return o;
        },
        [](Napi::Env env, const th::HeadedOutput& o) { return output_to_js(env, o); });
  }

  // trainStep(ids, shape, mask, maskShape, labels, scale, hidden)
  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    BatchArgs b = batch_from_js(info, 4, 6);
    const double scale = info[5].IsNumber() ? info[5].As<Napi::Number>().DoubleValue() : 1.0;
    return queue<th::HeadedOutput>(
        env, "th:train-step", [m, b = std::move(b), scale]() { return m->train_step(b.ids, b.mask, b.labels, scale, b.hidden ? &*b.hidden : nullptr); },
        [](Napi::Env env, const th::HeadedOutput& o) { return output_to_js(env, o); });
  }

  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsNumber()) throw_error(env, "ERR_TH_ARG", "optimizerStep(lr): lr must be a number");
    const double lr = info[0].As<Napi::Number>().DoubleValue();
    return queue<double>(
        env, "th:optimizer-step", [m, lr]() { return m->optimizer_step(lr); },
        [](Napi::Env env, double norm) { return Napi::Number::New(env, norm); });
  }

  Napi::Value ConfigureOptimizer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsObject()) throw_error(env, "ERR_TH_ARG", "configureOptimizer(options) needs an object");
    Napi::Object o = info[0].As<Napi::Object>();
    th::OptimizerOptions opt;
    auto num = [&](const char* k, double& v) {
      if (o.Has(k) && o.Get(k).IsNumber()) v = o.Get(k).As<Napi::Number>().DoubleValue();
    };
    num("lr", opt.lr);
    num("weightDecay", opt.weight_decay);
    num("beta1", opt.beta1);
    num("beta2", opt.beta2);
    num("eps", opt.eps);
    num("maxGradNorm", opt.max_grad_norm);
    sync_call(env, [&] { m->configure_optimizer(opt); return 0; });
    return env.Undefined();
  }

  // saveOptimizer / loadOptimizer / saveTrainable / loadTrainable: a file path in, nothing out, off the event loop.
  template <void (th::HeadedModel::*Op)(const std::string&)>
  Napi::Value PathCall(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "expected a file path");
    std::string path = info[0].As<Napi::String>();
    return queue<int>(
        env, "th:file", [m, path]() { ((*m).*Op)(path); return 0; }, [](Napi::Env env, int) { return env.Undefined(); });
  }

  Napi::Value HookedHidden(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    BatchArgs b = batch_from_js(info, 99, 99);
    using Named = std::vector<std::pair<std::string, torch::Tensor>>;
    return queue<Named>(
        env, "th:hooked-hidden",
        [m, b = std::move(b)]() {
          Named out;
          for (auto& [l, t] : m->hooked_hidden(b.ids, b.mask)) out.emplace_back(std::to_string(l), t.to(torch::kCPU, torch::kFloat32).contiguous());
          return out;
        },
        [](Napi::Env env, const Named& n) { return named_tensors_to_js(env, n, "layer"); });
  }

  using Named = std::vector<std::pair<std::string, torch::Tensor>>;

  // Snapshots of named tensors as float32 JS tensors keyed by "key".
  static Napi::Value named_to_js(Napi::Env env, Named s) {
    for (auto& [k, t] : s) t = t.to(torch::kCPU, torch::kFloat32).contiguous();
    return named_tensors_to_js(env, s, "key");
  }

  static std::map<std::string, torch::Tensor> named_from_js(const Napi::Value& v, const char* what) {
    std::map<std::string, torch::Tensor> st;
    for (auto& [k, t] : tensor_list_from_js<std::string>(v, "key", what)) st[k] = t;
    return st;
  }

  // headState / headGrads (name) -> [{ key, data, shape }]
  template <Named (th::HeadedModel::*Get)(const std::string&)>
  Napi::Value HeadTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    const std::string name = info[0].ToString().Utf8Value();
    return named_to_js(env, sync_call(env, [&] { return ((*m).*Get)(name); }));
  }

  // loraState / trainedBackboneState () -> [{ key, data, shape }]
  template <Named (th::HeadedModel::*Get)()>
  Napi::Value ModelTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    return named_to_js(env, sync_call(env, [&] { return ((*m).*Get)(); }));
  }

  // loadLoraState / loadBackboneTensors ([{ key, data, shape }])
  template <void (th::HeadedModel::*Load)(const std::map<std::string, torch::Tensor>&)>
  Napi::Value LoadTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    auto st = named_from_js(info[0], "tensors");
    sync_call(env, [&] { ((*m).*Load)(st); return 0; });
    return env.Undefined();
  }

  Napi::Value LoadHeadState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    const std::string name = info[0].ToString().Utf8Value();
    auto st = named_from_js(info[1], "head tensors");
    sync_call(env, [&] { m->load_head_state(name, st); return 0; });
    return env.Undefined();
  }

  Napi::Value MergeLora(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    sync_call(env, [&] { m->merge_lora(); return 0; });
    return env.Undefined();
  }

  // backboneState() -> Promise<[{ key, data, shape }]>: the backbone's weights by Hugging Face name, for saveBackbone.
  Napi::Value BackboneState(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    return queue<Named>(
        env, "th:backbone-state", [m]() { return m->backbone_state(); },
        [](Napi::Env env, const Named& n) { return named_tensors_to_js(env, n, "key"); });
  }

  Napi::Value BackboneGradNorm(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    return Napi::Number::New(env, sync_call(env, [&] { return m->backbone_grad_norm(); }));
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    th::Backbone& bb = m->backbone();
    Napi::Object o = Napi::Object::New(env);
    o.Set("config", bb.config_json());
    o.Set("tokenizer", bb.tokenizer_json());
    o.Set("tokenizerConfig", bb.tokenizer_config_json());
    o.Set("device", bb.device().str());
    o.Set("dtype", th::dtype_name(bb.dtype()));
    o.Set("numLayers", Napi::Number::New(env, static_cast<double>(bb.num_layers())));
    o.Set("parameterBytes", Napi::Number::New(env, static_cast<double>(bb.parameter_bytes())));
    o.Set("blocksRun", Napi::Number::New(env, static_cast<double>(bb.blocks_run())));
    o.Set("trainableParameters", Napi::Number::New(env, static_cast<double>(m->trainable_parameters())));
    o.Set("totalParameters", Napi::Number::New(env, static_cast<double>(m->total_parameters())));
    o.Set("backboneNeedsGrad", Napi::Boolean::New(env, m->backbone_needs_grad()));
    auto fp = bb.footprint();
    Napi::Object mem = Napi::Object::New(env);
    mem.Set("dense", Napi::Number::New(env, static_cast<double>(fp.dense)));
    mem.Set("quantized", Napi::Number::New(env, static_cast<double>(fp.quantized)));
    mem.Set("lora", Napi::Number::New(env, static_cast<double>(fp.lora)));
    mem.Set("heads", Napi::Number::New(env, static_cast<double>(m->head_bytes())));
    o.Set("memory", mem);
    o.Set("quantized", Napi::Boolean::New(env, bb.is_quantized()));
    int64_t qparams = 0;
    for (th::Linear* l : bb.linears()) if (l->quantized()) qparams += l->in * l->out;
    o.Set("quantizedParameters", Napi::Number::New(env, static_cast<double>(qparams)));
    auto hooks = m->hooked_layers();
    Napi::Array h = Napi::Array::New(env, hooks.size());
    for (size_t i = 0; i < hooks.size(); ++i) h.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(hooks[i])));
    o.Set("hookedLayers", h);
    return o;
  }

  // generator(ids, shape, mask, maskShape, options): validates and returns a NativeGenerator (no compute yet).
  Napi::Value Generator(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = live(env);
    BatchArgs b = batch_from_js(info, 99, 99);
    if (info.Length() < 5 || !info[4].IsObject()) throw_error(env, "ERR_TH_ARG", "generator: options must be an object");
    Napi::Object o = info[4].As<Napi::Object>();
    auto num = [&](const char* k, double fallback) {
      Napi::Value v = o.Get(k);
      return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
    };
    th::GenerateOptions go;
    go.max_new_tokens = static_cast<int64_t>(num("maxNewTokens", 20));
    go.sampling.do_sample = o.Get("doSample").ToBoolean().Value();
    go.sampling.temperature = num("temperature", 1.0);
    go.sampling.top_k = static_cast<int64_t>(num("topK", 0));
    go.sampling.top_p = num("topP", 1.0);
    go.sampling.min_p = num("minP", 0.0);
    go.sampling.repetition_penalty = num("repetitionPenalty", 1.0);
    if (o.Get("seed").IsNumber()) go.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
    if (o.Get("eosTokenIds").IsArray()) {
      Napi::Array a = o.Get("eosTokenIds").As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) go.eos_token_ids.push_back(a.Get(i).ToNumber().Int64Value());
    }
    if (o.Get("padTokenId").IsNumber()) go.pad_token_id = o.Get("padTokenId").As<Napi::Number>().Int64Value();
    if (o.Get("useCache").IsBoolean()) go.use_cache = o.Get("useCache").As<Napi::Boolean>().Value();
    const bool keep_logits = o.Get("keepLogits").ToBoolean().Value();
    auto g = sync_call(env, [&] {
      auto gen = std::make_shared<th::Generator>(m, b.ids, b.mask, go);
      gen->set_keep_logits(keep_logits);
      return gen;
    });
    return GeneratorWrap::Create(env, std::move(g));
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }

  std::shared_ptr<th::HeadedModel> model_;
  int64_t external_bytes_ = 0;
};

Napi::Value LoadHeaded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) throw_error(env, "ERR_TH_ARG", "loadHeaded(path, options)");
  Napi::Object o = info[1].As<Napi::Object>();
  th::LoadOptions lo;
  if (o.Get("device").IsString()) lo.device = o.Get("device").As<Napi::String>();
  if (o.Get("dtype").IsString()) lo.dtype = o.Get("dtype").As<Napi::String>();
  if (!o.Get("heads").IsString()) throw_error(env, "ERR_TH_ARG", "loadHeaded: options.heads must be a JSON string");
  std::string heads = o.Get("heads").As<Napi::String>();
  th::HeadedOptions ho;
  ho.freeze_base = o.Get("freezeBase").ToBoolean().Value();
  ho.only_inference = o.Get("onlyInference").ToBoolean().Value();
  ho.adaptive_loss = o.Get("adaptiveLoss").ToBoolean().Value();
  if (o.Get("seed").IsNumber()) ho.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
  auto num = [](const Napi::Object& obj, const char* k, double fallback) {
    Napi::Value v = obj.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
  };
  if (o.Get("quantization").IsObject()) {
    Napi::Object q = o.Get("quantization").As<Napi::Object>();
    th::QuantOptions qo;
    qo.bits = static_cast<int>(num(q, "bits", 4));
    const std::string qt = q.Get("quantType").IsString() ? q.Get("quantType").As<Napi::String>().Utf8Value() : "nf4";
    if (qt != "nf4" && qt != "fp4") throw_error(env, "ERR_TH_CONFIG", "quantType must be 'nf4' or 'fp4', got '" + qt + "'");
    qo.type = qt == "nf4" ? th::QuantType::NF4 : th::QuantType::FP4;
    qo.blocksize = static_cast<int64_t>(num(q, "blocksize", 64));
    qo.double_quant = q.Get("doubleQuant").ToBoolean().Value();
    const std::string cd = q.Get("computeDtype").IsString() ? q.Get("computeDtype").As<Napi::String>().Utf8Value() : "float32";
    qo.compute_dtype = sync_call(env, [&] { return th::parse_dtype(cd); });
    ho.quant = qo;
  }
  if (o.Get("lora").IsObject()) {
    Napi::Object l = o.Get("lora").As<Napi::Object>();
    th::LoraOptions lo2;
    lo2.r = static_cast<int64_t>(num(l, "r", 8));
    lo2.alpha = num(l, "alpha", 8);
    lo2.dropout = num(l, "dropout", 0.0);
    lo2.rslora = l.Get("useRslora").ToBoolean().Value();
    lo2.seed = static_cast<uint64_t>(num(l, "seed", 0));
    if (l.Get("targetModules").IsArray()) {
      Napi::Array t = l.Get("targetModules").As<Napi::Array>();
      for (uint32_t i = 0; i < t.Length(); ++i) lo2.targets.push_back(t.Get(i).ToString().Utf8Value());
    }
    if (l.Get("bias").IsString()) ho.lora_bias = l.Get("bias").As<Napi::String>().Utf8Value();
    ho.lora = lo2;
  }
  ho.gradient_checkpointing = o.Get("gradientCheckpointing").ToBoolean().Value();
  if (o.Get("fullyTrainedHeads").IsBoolean()) ho.fully_trained_heads = o.Get("fullyTrainedHeads").As<Napi::Boolean>().Value();
  std::string path = info[0].As<Napi::String>();
  class Worker : public PromiseWorker {
   public:
    Worker(Napi::Env env, std::string p, th::LoadOptions l, std::string h, th::HeadedOptions o)
        : PromiseWorker(env, "th:load-headed"), path_(std::move(p)), lo_(std::move(l)), heads_(std::move(h)), ho_(o) {}
    void Work() override {
      auto configs = th::parse_head_configs(heads_);
      m_ = std::make_shared<th::HeadedModel>(th::load_backbone(path_, lo_), std::move(configs), ho_);
    }
    Napi::Value Result(Napi::Env env) override { return HeadedWrap::Create(env, std::move(m_)); }

   private:
    std::string path_;
    th::LoadOptions lo_;
    std::string heads_;
    th::HeadedOptions ho_;
    std::shared_ptr<th::HeadedModel> m_;
  };
  auto* w = new Worker(env, path, lo, heads, ho);
  w->Queue();
  return w->Promise();
}

// ------------------------------------------------------------------------------------------- runtime

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw_error(env, "ERR_TH_ARG", "setNumThreads(n): n must be a number");
  const int n = info[0].As<Napi::Number>().Int32Value();
  sync_call(env, [&] { th::set_num_threads(n); return 0; });
  return env.Undefined();
}

Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                            std::to_string(TORCH_VERSION_PATCH));
  o.Set("cudaAvailable", Napi::Boolean::New(env, torch::cuda::is_available()));
  o.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(torch::cuda::is_available() ? torch::cuda::device_count() : 0)));
  o.Set("numThreads", Napi::Number::New(env, th::num_threads()));
  return o;
}

// ------------------------------------------------------------------------------------------- files

// exchangePaths(a, b) -> boolean: swaps two existing paths in one atomic step (Linux renameat2 RENAME_EXCHANGE, macOS
// renamex_np RENAME_SWAP), which Node's fs cannot do. Folder saves (ts/io/atomic.ts) build the new folder next to
// the old one and swap them, so a reader or a killed process only ever sees one whole version. false: this platform
// or filesystem cannot swap (the caller falls back to two renames). Synchronous: one metadata syscall, no tensors.
Napi::Value ExchangePaths(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw_error(env, "ERR_TH_ARG", "exchangePaths(a, b): two paths");
  const std::string a = info[0].As<Napi::String>().Utf8Value();
  const std::string b = info[1].As<Napi::String>().Utf8Value();
  int err = 0;
#if defined(__linux__) && defined(SYS_renameat2)
  if (syscall(SYS_renameat2, AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) return Napi::Boolean::New(env, true);
  err = errno;
#elif defined(__APPLE__)
  if (renamex_np(a.c_str(), b.c_str(), RENAME_SWAP) == 0) return Napi::Boolean::New(env, true);
  err = errno;
#else
  return Napi::Boolean::New(env, false);
#endif
  // Not supported by the kernel (ENOSYS) or the filesystem (EINVAL, ENOTSUP: NFS, FAT, old overlayfs).
  if (err == ENOSYS || err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP) return Napi::Boolean::New(env, false);
  throw_error(env, "ERR_TH_FILE", "cannot swap '" + a + "' and '" + b + "': " + std::strerror(err));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  th::init_threads();
  auto* data = new AddonData();
  data->backbone_ctor = Napi::Persistent(BackboneWrap::Define(env));
  data->torchscript_ctor = Napi::Persistent(TorchScriptWrap::Define(env));
  data->headed_ctor = Napi::Persistent(HeadedWrap::Define(env));
  data->generator_ctor = Napi::Persistent(GeneratorWrap::Define(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("loadBackbone", Napi::Function::New<LoadBackbone>(env, "loadBackbone"));
  exports.Set("loadHeaded", Napi::Function::New<LoadHeaded>(env, "loadHeaded"));
  exports.Set("loadTorchScript", Napi::Function::New<LoadTorchScript>(env, "loadTorchScript"));
  exports.Set("setNumThreads", Napi::Function::New<SetNumThreads>(env, "setNumThreads"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  exports.Set("exchangePaths", Napi::Function::New<ExchangePaths>(env, "exchangePaths"));
  return exports;
}

}  // namespace

NODE_API_MODULE(transformer_heads, Init)
