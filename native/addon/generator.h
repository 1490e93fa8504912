// NativeGenerator: one generation in progress, created by NativeHeadedModel.generator(); every step runs on the
// compute thread of the model's device, in order with the model's other calls.
#pragma once

#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/executor.h"
#include "core/generate.h"

namespace th::addon {

// What info() reports, taken on the compute thread after creation, each step and finish (the KV cache's size reads
// its tensors), read on the main thread.
struct GeneratorFacts {
  bool done = false;
  int64_t steps = 0, cache_bytes = 0;
  std::string lm_head;
};
GeneratorFacts facts_of(const th::Generator& g);  // on the compute thread

class GeneratorWrap : public Napi::ObjectWrap<GeneratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit GeneratorWrap(const Napi::CallbackInfo& info);
  ~GeneratorWrap() override;
  // `ex`: the compute thread of the model's device, where every step runs.
  static Napi::Value Create(Napi::Env env, std::shared_ptr<th::Generator> g, th::Executor& ex, GeneratorFacts facts);

 private:
  std::shared_ptr<th::Generator> live(Napi::Env env) const;
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value Finish(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<th::Generator> gen_;
  th::Executor* ex_ = nullptr;
  std::shared_ptr<GeneratorFacts> facts_ = std::make_shared<GeneratorFacts>();  // main thread only
};

}  // namespace th::addon
