// The Node module: registers the classes and free functions of the binding. The binding is thin: it converts JS
// values to core types on the main thread (convert.h), runs every long operation off the event loop (workers.h) and
// turns each C++ exception into a JS Error with a `code` (common.h). No model logic lives here; one file per class:
// backbone.cc (NativeBackbone), headed.cc (NativeHeadedModel), generator.cc (NativeGenerator), torchscript.cc.
#include <napi.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "backbone.h"
#include "common.h"
#include "core/config.h"
#include "core/device.h"
#include "generator.h"
#include "headed.h"
#include "torchscript.h"
#include "workers.h"

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
  exports.Set("parseModelConfig", Napi::Function::New<ParseModelConfig>(env, "parseModelConfig"));
  exports.Set("runtimeInfo", Napi::Function::New<RuntimeInfo>(env, "runtimeInfo"));
  exports.Set("exchangePaths", Napi::Function::New<ExchangePaths>(env, "exchangePaths"));
  return exports;
}

}  // namespace

NODE_API_MODULE(transformer_heads, Init)
