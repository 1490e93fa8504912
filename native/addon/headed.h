// NativeHeadedModel: a backbone with heads, as loadHeaded() returns it — the class behind the TypeScript HeadedModel
// (training steps, evaluation, the optimizer, state in and out of files, generation).
#pragma once

#include <napi.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/headed_model.h"

namespace th::addon {

class HeadedWrap : public Napi::ObjectWrap<HeadedWrap> {
 public:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;

  static Napi::Function Define(Napi::Env env);
  explicit HeadedWrap(const Napi::CallbackInfo& info);
  ~HeadedWrap() override;
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::HeadedModel> m);

 private:
  void release(Napi::Env env);
  std::shared_ptr<th::HeadedModel> live(Napi::Env env) const;

  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value TrainStep(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
  Napi::Value ConfigureOptimizer(const Napi::CallbackInfo& info);
  template <void (th::HeadedModel::*Op)(const std::string&)>
  Napi::Value PathCall(const Napi::CallbackInfo& info);
  Napi::Value HookedHidden(const Napi::CallbackInfo& info);
  template <Named (th::HeadedModel::*Get)(const std::string&)>
  Napi::Value HeadTensors(const Napi::CallbackInfo& info);
  template <Named (th::HeadedModel::*Get)()>
  Napi::Value ModelTensors(const Napi::CallbackInfo& info);
  template <void (th::HeadedModel::*Load)(const std::map<std::string, torch::Tensor>&)>
  Napi::Value LoadTensors(const Napi::CallbackInfo& info);
  Napi::Value LoadHeadState(const Napi::CallbackInfo& info);
  Napi::Value MergeLora(const Napi::CallbackInfo& info);
  Napi::Value BackboneState(const Napi::CallbackInfo& info);
  Napi::Value BackboneGradNorm(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Generator(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<th::HeadedModel> model_;
  int64_t external_bytes_ = 0;
};

// loadHeaded(path, options) -> Promise<NativeHeadedModel>; options carry the head configs as JSON and the
// quantization, LoRA and training switches (parsed here on the main thread, applied by the core off it).
Napi::Value LoadHeaded(const Napi::CallbackInfo& info);

}  // namespace th::addon
