// NativeGenerator (see generator.h): step(), finish(rows), info(), dispose().
#include "generator.h"

#include <cstdint>
#include <utility>
#include <vector>

#include "common.h"
#include "convert.h"
#include "workers.h"

namespace th::addon {

GeneratorFacts facts_of(const th::Generator& g) { return {g.done(), g.steps(), g.cache_bytes(), g.lm_head_name()}; }

Napi::Function GeneratorWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeGenerator",
                     {InstanceMethod<&GeneratorWrap::Step>("step"), InstanceMethod<&GeneratorWrap::Finish>("finish"),
                      InstanceMethod<&GeneratorWrap::Info>("info"), InstanceMethod<&GeneratorWrap::Dispose>("dispose")});
}

GeneratorWrap::GeneratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GeneratorWrap>(info) {
  gen_ = from_external<th::Generator>(info, "use HeadedModel.generate()");
}

GeneratorWrap::~GeneratorWrap() {
  if (ex_ != nullptr) release_on(*ex_, gen_);
}

Napi::Value GeneratorWrap::Create(Napi::Env env, std::shared_ptr<th::Generator> g, th::Executor& ex, GeneratorFacts facts) {
  Napi::Value v = new_instance(env, &AddonData::generator_ctor, std::move(g));
  GeneratorWrap* w = GeneratorWrap::Unwrap(v.As<Napi::Object>());
  w->ex_ = &ex;
  *w->facts_ = std::move(facts);
  return v;
}

std::shared_ptr<th::Generator> GeneratorWrap::live(Napi::Env env) const {
  if (!gen_) throw_error(env, "ERR_TH_DISPOSED", "this generation was disposed");
  return gen_;
}

namespace {

struct StepData {
  th::GenerateStep step;
  GeneratorFacts facts;
};

}  // namespace

// step() -> Promise<{ index, tokens, logprobs, finished, heads, logits?, done }>
Napi::Value GeneratorWrap::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return queue_work(
      env, *ex_,
      [g = live(env)]() {
        StepData d{g->step(), {}};
        th::GenerateStep& st = d.step;
        st.tokens = prepare_i32(st.tokens);
        st.logprobs = prepare_f32(st.logprobs);
        st.finished = prepare_i32(st.finished);
        st.heads = prepare_f32(std::move(st.heads));
        if (st.lm_logits.defined()) st.lm_logits = prepare_f32(st.lm_logits);
        d.facts = facts_of(*g);
        return d;
      },
      [facts = facts_](Napi::Env env, StepData& d) {
        *facts = std::move(d.facts);
        const th::GenerateStep& st = d.step;
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

// finish(rows) -> Promise<void>: marks rows finished, before the next step.
Napi::Value GeneratorWrap::Finish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = live(env);
  if (info.Length() < 1 || !info[0].IsArray()) throw_error(env, "ERR_TH_ARG", "finish(rows): rows must be an array of row indices");
  Napi::Array a = info[0].As<Napi::Array>();
  std::vector<int64_t> rows;
  for (uint32_t i = 0; i < a.Length(); ++i) rows.push_back(a.Get(i).ToNumber().Int64Value());
  return queue_work(
      env, *ex_,
      [g, rows = std::move(rows)]() {
        g->finish(rows);
        return facts_of(*g);
      },
      [facts = facts_](Napi::Env env, GeneratorFacts& f) {
        *facts = std::move(f);
        return env.Undefined();
      });
}

Napi::Value GeneratorWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  live(env);
  const GeneratorFacts& f = *facts_;
  Napi::Object o = Napi::Object::New(env);
  o.Set("done", Napi::Boolean::New(env, f.done));
  o.Set("steps", Napi::Number::New(env, static_cast<double>(f.steps)));
  o.Set("lmHead", f.lm_head);
  o.Set("cacheBytes", Napi::Number::New(env, static_cast<double>(f.cache_bytes)));
  return o;
}

Napi::Value GeneratorWrap::Dispose(const Napi::CallbackInfo& info) {
  if (ex_ != nullptr) release_on(*ex_, gen_);  // freed on the compute thread, after a step in flight
  return info.Env().Undefined();
}

}  // namespace th::addon
