// NativeTorchScript: a TorchScript archive run by torch::jit with its own forward, the independent reference that the
// parity tests and the benchmark compare the native backbones against.
#pragma once

#include <napi.h>

#include <memory>

#include "core/checkpoint.h"

namespace th::addon {

class TorchScriptWrap : public Napi::ObjectWrap<TorchScriptWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit TorchScriptWrap(const Napi::CallbackInfo& info);
  ~TorchScriptWrap() override;
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::TorchScriptModel> m);

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<th::TorchScriptModel> module_;
};

// loadTorchScript(path) -> Promise<NativeTorchScript>
Napi::Value LoadTorchScript(const Napi::CallbackInfo& info);

}  // namespace th::addon
