// NativeBackbone and loadBackbone(): a backbone without heads, for hidden states and logits (the parity tests,
// feature extraction, saving a merged model's weights).
#include "backbone.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "convert.h"
#include "core/config.h"
#include "core/device.h"
#include "workers.h"

namespace th::addon {

Napi::Function BackboneWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeBackbone",
                     {InstanceMethod<&BackboneWrap::Forward>("forward"),
                      InstanceMethod<&BackboneWrap::StateDict>("stateDict"),
                      InstanceMethod<&BackboneWrap::Info>("info"),
                      InstanceMethod<&BackboneWrap::Dispose>("dispose")});
}

BackboneWrap::BackboneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BackboneWrap>(info) {
  model_ = from_external<th::Backbone>(info, "NativeBackbone cannot be constructed directly; use loadBackbone()");
  ex_ = &th::compute_executor(model_->device());
  external_bytes_ = model_->parameter_bytes();
  adjust(info.Env(), external_bytes_);
}

BackboneWrap::~BackboneWrap() { release(Env()); }

Napi::Value BackboneWrap::Create(Napi::Env env, std::shared_ptr<th::Backbone> model) {
  return new_instance(env, &AddonData::backbone_ctor, std::move(model));
}

void BackboneWrap::release(Napi::Env env) {
  if (!model_) return;
  release_on(*ex_, model_);  // freed on the compute thread, after the calls already posted
  adjust(env, -external_bytes_);
  external_bytes_ = 0;
}

std::shared_ptr<th::Backbone> BackboneWrap::live(Napi::Env env) const {
  if (!model_) throw_error(env, "ERR_TH_DISPOSED", "this model was disposed; load it again to use it");
  return model_;
}

// forward(ids, shape, mask | null, maskShape | null, layers: number[], logits: boolean, positions?, positionsShape?)
//   -> Promise<{hidden, logits}>
Napi::Value BackboneWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = live(env);
  if (info.Length() < 6) throw_error(env, "ERR_TH_ARG", "forward(ids, shape, mask, maskShape, layers, logits)");
  th::ForwardRequest req;
  HostArray ids = tokens_from_js(info[0], info[1], "input_ids");
  std::optional<HostArray> mask;
  if (!info[2].IsNull() && !info[2].IsUndefined()) mask = tokens_from_js(info[2], info[3], "attention_mask");
  if (!info[4].IsArray()) throw_error(env, "ERR_TH_ARG", "layers must be an array of integers");
  Napi::Array layers = info[4].As<Napi::Array>();
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    Napi::Value l = layers.Get(i);
    if (!l.IsNumber()) throw_error(env, "ERR_TH_ARG", "layers must be an array of integers");
    double d = l.As<Napi::Number>().DoubleValue();
    if (d != static_cast<double>(static_cast<int64_t>(d))) throw_error(env, "ERR_TH_ARG", "layer indices must be integers, got " + std::to_string(d));
    req.layers.push_back(static_cast<int64_t>(d));
  }
  req.logits = info[5].ToBoolean().Value();
  std::optional<HostArray> positions;
  if (info.Length() > 7 && !info[6].IsNull() && !info[6].IsUndefined()) positions = tokens_from_js(info[6], info[7], "position_ids");

  return queue_work(
      env, *ex_,
      [model = std::move(model), ids = std::move(ids), mask = std::move(mask), positions = std::move(positions), req = std::move(req)]() mutable {
        req.input_ids = ids.tensor();
        if (mask) req.attention_mask = mask->tensor();
        if (positions) req.position_ids = positions->tensor();
        th::ForwardResult res = model->forward(req);
        for (auto& h : res.hidden_states) h.second = prepare_f32(h.second);
        if (res.logits.defined()) res.logits = prepare_f32(res.logits);
        return res;
      },
      [](Napi::Env env, const th::ForwardResult& res) {
        Napi::Object o = Napi::Object::New(env);
        Napi::Array hidden = Napi::Array::New(env, res.hidden_states.size());
        for (size_t i = 0; i < res.hidden_states.size(); ++i) {
          Napi::Object h = tensor_to_js(env, res.hidden_states[i].second);
          h.Set("layer", Napi::Number::New(env, static_cast<double>(res.hidden_states[i].first)));
          hidden.Set(static_cast<uint32_t>(i), h);
        }
        o.Set("hidden", hidden);
        o.Set("logits", res.logits.defined() ? tensor_to_js(env, res.logits) : env.Null());
        return o;
      });
}

// stateDict() -> Promise<[{ key, data, shape }]>: float32 copies by Hugging Face name, gathered off the event loop.
Napi::Value BackboneWrap::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = live(env);
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  return queue_work(
      env, *ex_, [model = std::move(model)]() { return prepare_f32(model->hf_state_dict()); },
      [](Napi::Env env, const Named& state) { return named_tensors_to_js(env, state, "key"); });
}

Napi::Object backbone_info(Napi::Env env, const th::Backbone& model) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("config", model.config_json());
  o.Set("normalizedConfig", th::config_to_json(model.config()));
  o.Set("tokenizer", model.tokenizer_json());
  o.Set("tokenizerConfig", model.tokenizer_config_json());
  o.Set("device", model.device().str());
  o.Set("dtype", th::dtype_name(model.dtype()));
  o.Set("positions", th::position_mode_name(model.position_mode()));  // fixed at load
  o.Set("numLayers", Napi::Number::New(env, static_cast<double>(model.num_layers())));
  o.Set("parameterBytes", Napi::Number::New(env, static_cast<double>(model.parameter_bytes())));
  o.Set("blocksRun", Napi::Number::New(env, static_cast<double>(model.blocks_run())));
  return o;
}

Napi::Value BackboneWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto model = live(env);
  return backbone_info(env, *model);
}

Napi::Value BackboneWrap::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value LoadBackbone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "loadBackbone(path, options): path must be a string");
  th::LoadOptions opts;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object o = info[1].As<Napi::Object>();
    if (o.Has("device") && o.Get("device").IsString()) opts.device = o.Get("device").As<Napi::String>();
    if (o.Has("dtype") && o.Get("dtype").IsString()) opts.dtype = o.Get("dtype").As<Napi::String>();
    if (o.Has("positions") && o.Get("positions").IsString()) opts.positions = o.Get("positions").As<Napi::String>();
  }
  std::string path = info[0].As<Napi::String>();
  th::Executor& ex = th::compute_executor(opts.device);
  return queue_work(
      env, ex, [path = std::move(path), opts = std::move(opts)]() { return th::load_backbone(path, opts); },
      [](Napi::Env env, std::shared_ptr<th::Backbone>& model) { return BackboneWrap::Create(env, std::move(model)); });
}

}  // namespace th::addon
