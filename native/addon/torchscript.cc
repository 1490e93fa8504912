// NativeTorchScript and loadTorchScript() (see torchscript.h).
#include "torchscript.h"

#include <mutex>
#include <string>
#include <utility>

#include "common.h"
#include "convert.h"
#include "workers.h"

namespace th::addon {
namespace {

// One TorchScript forward at a time, whichever module: the oracle needs no concurrency, and serialising it keeps
// torch::jit's thread safety out of question.
std::mutex& forward_mutex() {
  static std::mutex m;
  return m;
}

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
  torch::Tensor ids = tokens_from_js(info[0], info[1], "input_ids");
  torch::Tensor mask = tokens_from_js(info[2], info[3], "attention_mask");
  return queue_work(
      env, "th:torchscript",
      [m = module_, ids, mask]() {
        std::lock_guard<std::mutex> lock(forward_mutex());
        return m->forward(ids, mask);
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

Napi::Value TorchScriptWrap::Dispose(const Napi::CallbackInfo& info) {
  module_.reset();
  return info.Env().Undefined();
}

Napi::Value LoadTorchScript(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "loadTorchScript(path): path must be a string");
  std::string path = info[0].As<Napi::String>();
  return queue_work(
      env, "th:load-torchscript", [path = std::move(path)]() { return std::make_shared<th::TorchScriptModel>(path); },
      [](Napi::Env env, std::shared_ptr<th::TorchScriptModel>& m) { return TorchScriptWrap::Create(env, std::move(m)); });
}

}  // namespace th::addon
