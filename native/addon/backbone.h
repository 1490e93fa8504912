// NativeBackbone: a bare backbone (hidden states and logits, no heads), as loadBackbone() returns it.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>

#include "core/backbone.h"
#include "core/executor.h"

namespace th::addon {

class BackboneWrap : public Napi::ObjectWrap<BackboneWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BackboneWrap(const Napi::CallbackInfo& info);
  ~BackboneWrap() override;
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::Backbone> model);

 private:
  void release(Napi::Env env);
  std::shared_ptr<th::Backbone> live(Napi::Env env) const;
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<th::Backbone> model_;
  th::Executor* ex_ = nullptr;  // the compute thread of the model's device
  int64_t external_bytes_ = 0;
};

// loadBackbone(path, { device?, dtype? }) -> Promise<NativeBackbone>
Napi::Value LoadBackbone(const Napi::CallbackInfo& info);

// What info() reports about any backbone (NativeHeadedModel's info() starts with the same fields).
// The facts of a backbone that info() reports and that never change after loading (config and tokenizer JSON, device,
// dtype, layers), plus the atomic count of blocks run: read on the main thread, touching no tensor.
Napi::Object backbone_info(Napi::Env env, const th::Backbone& model);

}  // namespace th::addon
