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

#include "core/executor.h"
#include "core/headed_model.h"

namespace th::addon {

// What info() reports that can change after loading (mergeLora turns adapters and 4-bit weights into dense ones):
// taken on the compute thread after the calls that may change it, read on the main thread, so that info() touches
// no tensor while the model computes.
struct HeadedFacts {
  int64_t trainable = 0, total = 0, parameter_bytes = 0, head_bytes = 0, quantized_parameters = 0;
  int64_t dense = 0, quantized = 0, lora = 0;
  bool needs_grad = false, is_quantized = false;
  std::vector<int64_t> hooked;
};
HeadedFacts facts_of(th::HeadedModel& m);  // on the compute thread

class HeadedWrap : public Napi::ObjectWrap<HeadedWrap> {
 public:
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;

  static Napi::Function Define(Napi::Env env);
  explicit HeadedWrap(const Napi::CallbackInfo& info);
  ~HeadedWrap() override;
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::HeadedModel> m, HeadedFacts facts);
  // The live core model behind a NativeHeadedModel (for distributed.cc); throws ERR_TH_ARG / ERR_TH_DISPOSED.
  static std::shared_ptr<th::HeadedModel> Model(const Napi::Value& v);

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
  th::Executor* ex_ = nullptr;  // the compute thread of the model's device
  std::shared_ptr<HeadedFacts> facts_ = std::make_shared<HeadedFacts>();  // main thread only
  int64_t external_bytes_ = 0;
};

// loadHeaded(path, options) -> Promise<NativeHeadedModel>; options carry the head configs as JSON and the
// quantization, LoRA and training switches (parsed here on the main thread, applied by the core off it).
Napi::Value LoadHeaded(const Napi::CallbackInfo& info);

}  // namespace th::addon
