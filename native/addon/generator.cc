// NativeGenerator (see generator.h): step(), finish(rows), info(), dispose().
#include "generator.h"

#include <cstdint>
#include <vector>

#include "common.h"
#include "convert.h"
#include "workers.h"

namespace th::addon {

Napi::Function GeneratorWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeGenerator",
                     {InstanceMethod<&GeneratorWrap::Step>("step"), InstanceMethod<&GeneratorWrap::Finish>("finish"),
                      InstanceMethod<&GeneratorWrap::Info>("info"), InstanceMethod<&GeneratorWrap::Dispose>("dispose")});
}

GeneratorWrap::GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
  gen_ = from_external<th::Generator>(info, "use HeadedModel.generate()");
}

Napi::Value GeneratorWrap::Create(Napi::Env env, std::shared_ptr<th::Generator> g) {
  return new_instance(env, &AddonData::generator_ctor, std::move(g));
}

std::shared_ptr<th::Generator> GeneratorWrap::live(Napi::Env env) const {
  if (!gen_) throw_error(env, "ERR_TH_DISPOSED", "this generation was disposed");
  return gen_;
}

// step() -> Promise<{ index, tokens, logprobs, finished, heads, logits?, done }>
Napi::Value GeneratorWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue_work(
      env, "th:generate-step", [g = live(env)]() { return g->step(); },
      [](Napi::Env env, const th::GenerateStep& st) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("index", Napi::Number::New(env, static_cast<double>(st.index)));
        o.Set("tokens", ints_to_js(env, st.tokens));
        o.Set("logprobs", tensor_to_js(env, st.logprobs));
        o.Set("finished", ints_to_js(env, st.finished));
        o.Set("heads", named_tensors_to_js(env, st.heads, "name"));
        if (st.lm_logits.defined()) o.Set("logits", tensor_to_js(env, st.lm_logits));
        o.Set("done", Napi::Boolean::New(env, st.done));
        return o;
      });
}

Napi::Value GeneratorWrap::Finish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = live(env);
  if (info.Length() < 1 || !info[0].IsArray()) throw_error(env, "ERR_TH_ARG", "finish(rows): rows must be an array of row indices");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<int64_t> rows;
  for (uint32_t i = 0; i < a.Length(); ++i) rows.push_back(a.Get(i).ToNumber().Int64Value());
  sync_call(env, [&] { g->finish(rows); return 0; });
  return env.Undefined();
}

Napi::Value GeneratorWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = live(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("done", Napi::Boolean::New(env, g->done()));
  o.Set("steps", Napi::Number::New(env, static_cast<double>(g->steps())));
  o.Set("lmHead", g->lm_head_name());
  o.Set("cacheBytes", Napi::Number::New(env, static_cast<double>(g->cache_bytes())));
  return o;
}

Napi::Value GeneratorWrap::Dispose(const Napi::CallbackInfo& info) {
  gen_.reset();  // a running step keeps its own reference until it ends
  return info.Env().Undefined();
}

}  // namespace th::addon
