// NativeGenerator: one generation in progress, created by NativeHeadedModel.generator().
#pragma once

#include <napi.h>

#include <memory>

#include "core/generate.h"

namespace th::addon {

// Each step() runs one forward off the event loop, so the caller can stream tokens, stop between steps (AbortSignal,
// stop strings) and keep the loop responsive. It keeps its model alive.
class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit GeneratorWrap(const Napi::CallbackInfo& info);
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::Generator> g);

 private:
  std::shared_ptr<th::Generator> live(Napi::Env env) const;
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Finish(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<th::Generator> gen_;
};

}  // namespace th::addon
