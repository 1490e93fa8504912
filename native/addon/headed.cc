// NativeHeadedModel and loadHeaded() (see headed.h). Long calls (forward, training and optimizer steps, files, hidden
// states, backbone weights) return Promises through queue_work; the others (tensor snapshots and loads, optimizer
// settings, merging LoRA, info, creating a generator) run on the main thread through sync_call.
#include "headed.h"

#include <utility>

#include "backbone.h"
#include "common.h"
#include "convert.h"
#include "core/device.h"
#include "core/generate.h"
#include "generator.h"
#include "workers.h"

namespace th::addon {
namespace {

using Named = HeadedWrap::Named;

Napi::Object output_to_js(Napi::Env env, const th::HeadedOutput& o) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, o.loss.item<double>()));
  r.Set("lossByHead", scalars_to_js(env, o.loss_by_head));
  r.Set("adaptedLossByHead", scalars_to_js(env, o.adapted_loss_by_head));
  r.Set("preds", named_tensors_to_js(env, o.preds_by_head, "name"));
  return r;
}

// Snapshots of named tensors as float32 JS tensors keyed by "key".
Napi::Value named_to_js(Napi::Env env, Named s) {
  for (auto& [k, t] : s) t = t.to(torch::kCPU, torch::kFloat32).contiguous();
  return named_tensors_to_js(env, s, "key");
}

std::map<std::string, torch::Tensor> named_from_js(const Napi::Value& v, const char* what) {
  std::map<std::string, torch::Tensor> st;
  for (auto& [k, t] : tensor_list_from_js<std::string>(v, "key", what)) st[k] = t;
  return st;
}

}  // namespace

Napi::Function HeadedWrap::Define(Napi::Env env) {
  return DefineClass(env, "NativeHeadedModel",
                     {InstanceMethod<&HeadedWrap::Forward>("forward"),
                      InstanceMethod<&HeadedWrap::TrainStep>("trainStep"),
                      InstanceMethod<&HeadedWrap::OptimizerStep>("optimizerStep"),
                      InstanceMethod<&HeadedWrap::ConfigureOptimizer>("configureOptimizer"),
                      InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::save_optimizer>>("saveOptimizer"),
                      InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::load_optimizer>>("loadOptimizer"),
                      InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::save_trainable>>("saveTrainable"),
                      InstanceMethod<&HeadedWrap::PathCall<&th::HeadedModel::load_trainable>>("loadTrainable"),
                      InstanceMethod<&HeadedWrap::HookedHidden>("hookedHidden"),
                      InstanceMethod<&HeadedWrap::HeadTensors<&th::HeadedModel::head_state>>("headState"),
                      InstanceMethod<&HeadedWrap::LoadHeadState>("loadHeadState"),
                      InstanceMethod<&HeadedWrap::HeadTensors<&th::HeadedModel::head_grads>>("headGrads"),
                      InstanceMethod<&HeadedWrap::ModelTensors<&th::HeadedModel::lora_state>>("loraState"),
                      InstanceMethod<&HeadedWrap::LoadTensors<&th::HeadedModel::load_lora_state>>("loadLoraState"),
                      InstanceMethod<&HeadedWrap::MergeLora>("mergeLora"),
                      InstanceMethod<&HeadedWrap::BackboneState>("backboneState"),
                      InstanceMethod<&HeadedWrap::ModelTensors<&th::HeadedModel::trained_backbone_state>>("trainedBackboneState"),
                      InstanceMethod<&HeadedWrap::LoadTensors<&th::HeadedModel::load_backbone_tensors>>("loadBackboneTensors"),
                      InstanceMethod<&HeadedWrap::BackboneGradNorm>("backboneGradNorm"),
                      InstanceMethod<&HeadedWrap::Generator>("generator"),
                      InstanceMethod<&HeadedWrap::Info>("info"),
                      InstanceMethod<&HeadedWrap::Dispose>("dispose")});
}

HeadedWrap::HeadedWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<HeadedWrap>(info) {
  model_ = from_external<th::HeadedModel>(info, "use loadHeaded()");
  external_bytes_ = model_->backbone().parameter_bytes();
  adjust(info.Env(), external_bytes_);
}

HeadedWrap::~HeadedWrap() { release(Env()); }

Napi::Value HeadedWrap::Create(Napi::Env env, std::shared_ptr<th::HeadedModel> m) {
  return new_instance(env, &AddonData::headed_ctor, std::move(m));
}

void HeadedWrap::release(Napi::Env env) {
  if (!model_) return;
  model_.reset();
  adjust(env, -external_bytes_);
  external_bytes_ = 0;
}

std::shared_ptr<th::HeadedModel> HeadedWrap::live(Napi::Env env) const {
  if (!model_) throw_error(env, "ERR_TH_DISPOSED", "this model was disposed; load it again to use it");
  return model_;
}

// forward(ids, shape, mask, maskShape, labels, wantPreds, hidden)
Napi::Value HeadedWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 4, 6);
  const bool preds = info[5].ToBoolean().Value();
  return queue_work(
      env, "th:headed-forward",
      [m, b = std::move(b), preds]() {
        auto o = m->forward(b.ids, b.mask, b.labels, preds, b.hidden ? &*b.hidden : nullptr);
        for (auto& [k, t] : o.preds_by_head) t = t.to(torch::kCPU, torch::kFloat32).contiguous();
        return o;
      },
      [](Napi::Env env, const th::HeadedOutput& o) { return output_to_js(env, o); });
}

// trainStep(ids, shape, mask, maskShape, labels, scale, hidden)
Napi::Value HeadedWrap::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 4, 6);
  const double scale = info[5].IsNumber() ? info[5].As<Napi::Number>().DoubleValue() : 1.0;
  return queue_work(
      env, "th:train-step", [m, b = std::move(b), scale]() { return m->train_step(b.ids, b.mask, b.labels, scale, b.hidden ? &*b.hidden : nullptr); },
      [](Napi::Env env, const th::HeadedOutput& o) { return output_to_js(env, o); });
}

Napi::Value HeadedWrap::OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw_error(env, "ERR_TH_ARG", "optimizerStep(lr): lr must be a number");
  const double lr = info[0].As<Napi::Number>().DoubleValue();
  return queue_work(
      env, "th:optimizer-step", [m, lr]() { return m->optimizer_step(lr); },
      [](Napi::Env env, double norm) { return Napi::Number::New(env, norm); });
}

Napi::Value HeadedWrap::ConfigureOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsObject()) throw_error(env, "ERR_TH_ARG", "configureOptimizer(options) needs an object");
  Napi::Object o = info[0].As<Napi::Object>();
  th::OptimizerOptions opt;
  auto num = [&](const char* k, double& v) {
    if (o.Has(k) && o.Get(k).IsNumber()) v = o.Get(k).As<Napi::Number>().DoubleValue();
  };
  num("lr", opt.lr);
  num("weightDecay", opt.weight_decay);
  num("beta1", opt.beta1);
  num("beta2", opt.beta2);
  num("eps", opt.eps);
  num("maxGradNorm", opt.max_grad_norm);
  sync_call(env, [&] { m->configure_optimizer(opt); return 0; });
  return env.Undefined();
}

// saveOptimizer / loadOptimizer / saveTrainable / loadTrainable: a file path in, nothing out, off the event loop.
template <void (th::HeadedModel::*Op)(const std::string&)>
Napi::Value HeadedWrap::PathCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "expected a file path");
  std::string path = info[0].As<Napi::String>();
  return queue_work(
      env, "th:file", [m, path]() { ((*m).*Op)(path); return 0; }, [](Napi::Env env, int) { return env.Undefined(); });
}

Napi::Value HeadedWrap::HookedHidden(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 99, 99);
  return queue_work(
      env, "th:hooked-hidden",
      [m, b = std::move(b)]() {
        Named out;
        for (auto& [l, t] : m->hooked_hidden(b.ids, b.mask)) out.emplace_back(std::to_string(l), t.to(torch::kCPU, torch::kFloat32).contiguous());
        return out;
      },
      [](Napi::Env env, const Named& n) { return named_tensors_to_js(env, n, "layer"); });
}

// headState / headGrads (name) -> [{ key, data, shape }]
template <Named (th::HeadedModel::*Get)(const std::string&)>
Napi::Value HeadedWrap::HeadTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  const std::string name = info[0].ToString().Utf8Value();
  return named_to_js(env, sync_call(env, [&] { return ((*m).*Get)(name); }));
}

// loraState / trainedBackboneState () -> [{ key, data, shape }]
template <Named (th::HeadedModel::*Get)()>
Napi::Value HeadedWrap::ModelTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return named_to_js(env, sync_call(env, [&] { return ((*m).*Get)(); }));
}

// loadLoraState / loadBackboneTensors ([{ key, data, shape }])
template <void (th::HeadedModel::*Load)(const std::map<std::string, torch::Tensor>&)>
Napi::Value HeadedWrap::LoadTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  auto st = named_from_js(info[0], "tensors");
  sync_call(env, [&] { ((*m).*Load)(st); return 0; });
  return env.Undefined();
}

Napi::Value HeadedWrap::LoadHeadState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  const std::string name = info[0].ToString().Utf8Value();
  auto st = named_from_js(info[1], "head tensors");
  sync_call(env, [&] { m->load_head_state(name, st); return 0; });
  return env.Undefined();
}

Napi::Value HeadedWrap::MergeLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  sync_call(env, [&] { m->merge_lora(); return 0; });
  return env.Undefined();
}

// backboneState() -> Promise<[{ key, data, shape }]>: the backbone's weights by Hugging Face name, for saveBackbone.
Napi::Value HeadedWrap::BackboneState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return queue_work(
      env, "th:backbone-state", [m]() { return m->backbone_state(); },
      [](Napi::Env env, const Named& n) { return named_tensors_to_js(env, n, "key"); });
}

Napi::Value HeadedWrap::BackboneGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return Napi::Number::New(env, sync_call(env, [&] { return m->backbone_grad_norm(); }));
}

Napi::Value HeadedWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  th::Backbone& bb = m->backbone();
  Napi::Object o = backbone_info(env, bb);
  o.Set("trainableParameters", Napi::Number::New(env, static_cast<double>(m->trainable_parameters())));
  o.Set("totalParameters", Napi::Number::New(env, static_cast<double>(m->total_parameters())));
  o.Set("backboneNeedsGrad", Napi::Boolean::New(env, m->backbone_needs_grad()));
  auto fp = bb.footprint();
  Napi::Object mem = Napi::Object::New(env);
  mem.Set("dense", Napi::Number::New(env, static_cast<double>(fp.dense)));
  mem.Set("quantized", Napi::Number::New(env, static_cast<double>(fp.quantized)));
  mem.Set("lora", Napi::Number::New(env, static_cast<double>(fp.lora)));
  mem.Set("heads", Napi::Number::New(env, static_cast<double>(m->head_bytes())));
  o.Set("memory", mem);
  o.Set("quantized", Napi::Boolean::New(env, bb.is_quantized()));
  int64_t qparams = 0;
  for (th::Linear* l : bb.linears()) if (l->quantized()) qparams += l->in * l->out;
  o.Set("quantizedParameters", Napi::Number::New(env, static_cast<double>(qparams)));
  auto hooks = m->hooked_layers();
  Napi::Array h = Napi::Array::New(env, hooks.size());
  for (size_t i = 0; i < hooks.size(); ++i) h.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(hooks[i])));
  o.Set("hookedLayers", h);
  return o;
}

// generator(ids, shape, mask, maskShape, options): validates and returns a NativeGenerator (no compute yet).
Napi::Value HeadedWrap::Generator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 99, 99);
  if (info.Length() < 5 || !info[4].IsObject()) throw_error(env, "ERR_TH_ARG", "generator: options must be an object");
  Napi::Object o = info[4].As<Napi::Object>();
  auto num = [&](const char* k, double fallback) {
    Napi::Value v = o.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
  };
  th::GenerateOptions go;
  go.max_new_tokens = static_cast<int64_t>(num("maxNewTokens", 20));
  go.sampling.do_sample = o.Get("doSample").ToBoolean().Value();
  go.sampling.temperature = num("temperature", 1.0);
  go.sampling.top_k = static_cast<int64_t>(num("topK", 0));
  go.sampling.top_p = num("topP", 1.0);
  go.sampling.min_p = num("minP", 0.0);
  go.sampling.repetition_penalty = num("repetitionPenalty", 1.0);
  if (o.Get("seed").IsNumber()) go.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
  if (o.Get("eosTokenIds").IsArray()) {
    Napi::Array a = o.Get("eosTokenIds").As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) go.eos_token_ids.push_back(a.Get(i).ToNumber().Int64Value());
  }
  if (o.Get("padTokenId").IsNumber()) go.pad_token_id = o.Get("padTokenId").As<Napi::Number>().Int64Value();
  if (o.Get("useCache").IsBoolean()) go.use_cache = o.Get("useCache").As<Napi::Boolean>().Value();
  const bool keep_logits = o.Get("keepLogits").ToBoolean().Value();
  auto g = sync_call(env, [&] {
    auto gen = std::make_shared<th::Generator>(m, b.ids, b.mask, go);
    gen->set_keep_logits(keep_logits);
    return gen;
  });
  return GeneratorWrap::Create(env, std::move(g));
}

Napi::Value HeadedWrap::Dispose(const Napi::CallbackInfo& info) {
  release(info.Env());
  return info.Env().Undefined();
}

Napi::Value LoadHeaded(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) throw_error(env, "ERR_TH_ARG", "loadHeaded(path, options)");
  Napi::Object o = info[1].As<Napi::Object>();
  th::LoadOptions lo;
  if (o.Get("device").IsString()) lo.device = o.Get("device").As<Napi::String>();
  if (o.Get("dtype").IsString()) lo.dtype = o.Get("dtype").As<Napi::String>();
  if (!o.Get("heads").IsString()) throw_error(env, "ERR_TH_ARG", "loadHeaded: options.heads must be a JSON string");
  std::string heads = o.Get("heads").As<Napi::String>();
  th::HeadedOptions ho;
  ho.freeze_base = o.Get("freezeBase").ToBoolean().Value();
  ho.only_inference = o.Get("onlyInference").ToBoolean().Value();
  ho.adaptive_loss = o.Get("adaptiveLoss").ToBoolean().Value();
  if (o.Get("seed").IsNumber()) ho.seed = static_cast<uint64_t>(o.Get("seed").As<Napi::Number>().Int64Value());
  auto num = [](const Napi::Object& obj, const char* k, double fallback) {
    Napi::Value v = obj.Get(k);
    return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
  };
  if (o.Get("quantization").IsObject()) {
    Napi::Object q = o.Get("quantization").As<Napi::Object>();
    th::QuantOptions qo;
    qo.bits = static_cast<int>(num(q, "bits", 4));
    const std::string qt = q.Get("quantType").IsString() ? q.Get("quantType").As<Napi::String>().Utf8Value() : "nf4";
    if (qt != "nf4" && qt != "fp4") throw_error(env, "ERR_TH_CONFIG", "quantType must be 'nf4' or 'fp4', got '" + qt + "'");
    qo.type = qt == "nf4" ? th::QuantType::NF4 : th::QuantType::FP4;
    qo.blocksize = static_cast<int64_t>(num(q, "blocksize", 64));
    qo.double_quant = q.Get("doubleQuant").ToBoolean().Value();
    const std::string cd = q.Get("computeDtype").IsString() ? q.Get("computeDtype").As<Napi::String>().Utf8Value() : "float32";
    qo.compute_dtype = sync_call(env, [&] { return th::parse_dtype(cd); });
    ho.quant = qo;
  }
  if (o.Get("lora").IsObject()) {
    Napi::Object l = o.Get("lora").As<Napi::Object>();
    th::LoraOptions lo2;
    lo2.r = static_cast<int64_t>(num(l, "r", 8));
    lo2.alpha = num(l, "alpha", 8);
    lo2.dropout = num(l, "dropout", 0.0);
    lo2.rslora = l.Get("useRslora").ToBoolean().Value();
    lo2.seed = static_cast<uint64_t>(num(l, "seed", 0));
    if (l.Get("targetModules").IsArray()) {
      Napi::Array t = l.Get("targetModules").As<Napi::Array>();
      for (uint32_t i = 0; i < t.Length(); ++i) lo2.targets.push_back(t.Get(i).ToString().Utf8Value());
    }
    if (l.Get("bias").IsString()) ho.lora_bias = l.Get("bias").As<Napi::String>().Utf8Value();
    ho.lora = lo2;
  }
  ho.gradient_checkpointing = o.Get("gradientCheckpointing").ToBoolean().Value();
  if (o.Get("fullyTrainedHeads").IsBoolean()) ho.fully_trained_heads = o.Get("fullyTrainedHeads").As<Napi::Boolean>().Value();
  std::string path = info[0].As<Napi::String>();
  return queue_work(
      env, "th:load-headed",
      [path = std::move(path), lo = std::move(lo), heads = std::move(heads), ho]() {
        auto configs = th::parse_head_configs(heads);
        return std::make_shared<th::HeadedModel>(th::load_backbone(path, lo), std::move(configs), ho);
      },
      [](Napi::Env env, std::shared_ptr<th::HeadedModel>& m) { return HeadedWrap::Create(env, std::move(m)); });
}

}  // namespace th::addon
