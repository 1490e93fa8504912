// NativeTorchScript and loadTorchScript() (see torchscript.h).
#include "torchscript.h"

#include <string>
#include <utility>

#include "common.h"
#include "convert.h"
#include "workers.h"

namespace th::addon {
namespace {

// TorchScript modules load and run on the CPU: their work goes to the CPU compute thread, which also serialises it
// (one forward at a time keeps torch::jit's thread safety out of question).
th::Executor& cpu() { return th::compute_executor(torch::Device(torch::kCPU)); }

}  // namespace

Napi::Function TorchScriptWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeTorchScript", {InstanceMethod<&TorchScriptWrap::Forward>("forward"),
                                                InstanceMethod<&TorchScriptWrap::Dispose>("dispose")});
}

TorchScriptWrap::TorchScriptWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TorchScriptWrap>(info) {
  module_ = from_external<th::TorchScriptModel>(info, "use loadTorchScript()");
}

Napi::Value TorchScriptWrap::Create(Napi::Env env, std::shared_ptr<th::TorchScriptModel> m) {
  return new_instance(env, &AddonData::torchscript_ctor, std::move(m));
}

// forward(ids, shape, mask, maskShape) -> Promise<{ logits, hidden }>
Napi::Value TorchScriptWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!module_) throw_error(env, "ERR_TH_DISPOSED", "this TorchScript module was disposed");
  HostArray ids = tokens_from_js(info[0], info[1], "input_ids");
  HostArray mask = tokens_from_js(info[2], info[3], "attention_mask");
  return queue_work(
      env, cpu(),
      [m = module_, ids = std::move(ids), mask = std::move(mask)]() {
        auto out = m->forward(ids.tensor(), mask.tensor());
        out.logits = prepare_f32(out.logits);
        for (auto& h : out.hidden_states) h = prepare_f32(h);
        return out;
      },
      [](Napi::Env env, const th::TorchScriptModel::Output& out) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("logits", tensor_to_js(env, out.logits));
        Napi::Array hs = Napi::Array::New(env, out.hidden_states.size());
        for (size_t i = 0; i < out.hidden_states.size(); ++i) hs.Set(static_cast<uint32_t>(i), tensor_to_js(env, out.hidden_states[i]));
        o.Set("hidden", hs);
        return o;
      });
}

TorchScriptWrap::~TorchScriptWrap() { release_on(cpu(), module_); }

Napi::Value TorchScriptWrap::Dispose(const Napi::CallbackInfo& info) {
  release_on(cpu(), module_);
  return info.Env().Undefined();
}

Napi::Value LoadTorchScript(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "loadTorchScript(path): path must be a string");
  std::string path = info[0].As<Napi::String>();
  return queue_work(
      env, cpu(), [path = std::move(path)]() { return std::make_shared<th::TorchScriptModel>(path); },
      [](Napi::Env env, std::shared_ptr<th::TorchScriptModel>& m) { return TorchScriptWrap::Create(env, std::move(m)); });
}

}  // namespace th::addon
