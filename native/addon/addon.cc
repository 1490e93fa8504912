// The Node module: registers the classes and free functions of the binding. The binding is thin: it converts JS
// values to core types on the main thread (convert.h), runs every long operation off the event loop (workers.h) and
// turns each C++ exception into a JS Error with a `code` (common.h). No model logic lives here; one file per class:
// backbone.cc (NativeBackbone), headed.cc (NativeHeadedModel), generator.cc (NativeGenerator), torchscript.cc.
#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <string>

#include "backbone.h"
#include "common.h"
#include "core/config.h"
#include "core/device.h"
#include "generator.h"
#include "headed.h"
#include "torchscript.h"
#include "workers.h"

namespace {

using namespace th::addon;

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

// parseModelConfig(text) -> Promise<string>: config.json text checked by the core's parse_config (the loader's own
// validation) and returned as its normalized camelCase fields (config_to_json), or rejected with ERR_TH_CONFIG.
Napi::Value ParseModelConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "parseModelConfig(text): text must be a string");
  std::string text = info[0].As<Napi::String>();
  return queue_work(
      env, "th:parse-model-config", [text = std::move(text)]() { return th::config_to_json(th::parse_config(text)); },
      [](Napi::Env env, const std::string& json) { return Napi::String::New(env, json); });
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
  exports.Set("parseModelConfig", Napi::Function::New<ParseModelConfig>(env, "parseModelConfig"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  return exports;
}

}  // namespace

NODE_API_MODULE(transformer_heads, Init)
