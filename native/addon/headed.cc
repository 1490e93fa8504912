// NativeHeadedModel and loadHeaded() (see headed.h). Every call that touches a tensor returns a Promise and runs on the
// compute thread of the model's device through queue_work (forward, training and optimizer steps, optimizer
// settings, files, hidden states, weights in and out, merging LoRA, creating a generator); info() reads facts fixed at
// load and the snapshot (HeadedFacts) the compute thread leaves after load and merge.
#include "headed.h"

#include <cmath>
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

// A forward's or training step's result, read out on the compute thread (item() is a libtorch call).
struct OutputData {
  double loss = 0;
  std::vector<std::pair<std::string, double>> by_head, adapted_by_head;
  Named preds;
};

OutputData output_data(const th::HeadedOutput& o) {
  OutputData d;
  d.loss = o.loss.item<double>();
  d.by_head = scalars(o.loss_by_head);
  d.adapted_by_head = scalars(o.adapted_loss_by_head);
  d.preds = prepare_f32(o.preds_by_head);
  return d;
}

Napi::Object output_to_js(Napi::Env env, const OutputData& o) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("loss", Napi::Number::New(env, o.loss));
  r.Set("lossByHead", scalars_to_js(env, o.by_head));
  r.Set("adaptedLossByHead", scalars_to_js(env, o.adapted_by_head));
  r.Set("preds", named_tensors_to_js(env, o.preds, "name"));
  return r;
}

Napi::Value named_to_js(Napi::Env env, const Named& n) { return named_tensors_to_js(env, n, "key"); }

std::map<std::string, torch::Tensor> named_tensors(const HostList<std::string>& list) {
  std::map<std::string, torch::Tensor> st;
  for (const auto& [k, a] : list) st[k] = a.tensor();
  return st;
}

}  // namespace

HeadedFacts facts_of(th::HeadedModel& m) {
  HeadedFacts f;
  th::Backbone& bb = m.backbone();
  f.trainable = m.trainable_parameters();
  f.total = m.total_parameters();
  f.parameter_bytes = bb.parameter_bytes();
  f.head_bytes = m.head_bytes();
  const auto fp = bb.footprint();
  f.dense = fp.dense;
  f.quantized = fp.quantized;
  f.lora = fp.lora;
  f.needs_grad = m.backbone_needs_grad();
  f.is_quantized = bb.is_quantized();
  for (th::Linear* l : bb.linears()) if (l->quantized()) f.quantized_parameters += l->in * l->out;
  if (bb.token_embeddings().quantized()) f.quantized_parameters += bb.token_embeddings().in * bb.token_embeddings().out;
  f.hooked = m.hooked_layers();
  return f;
}

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
  ex_ = &th::compute_executor(model_->backbone().device());
}

HeadedWrap::~HeadedWrap() { release(Env()); }

Napi::Value HeadedWrap::Create(Napi::Env env, std::shared_ptr<th::HeadedModel> m, HeadedFacts facts) {
  Napi::Value v = new_instance(env, &AddonData::headed_ctor, std::move(m));
  HeadedWrap* w = HeadedWrap::Unwrap(v.As<Napi::Object>());
  w->external_bytes_ = facts.parameter_bytes;
  adjust(env, w->external_bytes_);
  *w->facts_ = std::move(facts);
  return v;
}

void HeadedWrap::release(Napi::Env env) {
  if (!model_) return;
  release_on(*ex_, model_);  // freed on the compute thread, after the calls already posted
  adjust(env, -external_bytes_);
  external_bytes_ = 0;
}

std::shared_ptr<th::HeadedModel> HeadedWrap::Model(const Napi::Value& v) {
  Napi::Env env = v.Env();
  const auto& ctor = env.GetInstanceData<AddonData>()->headed_ctor;
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) throw_error(env, "ERR_TH_ARG", "expected a NativeHeadedModel");
  return Unwrap(v.As<Napi::Object>())->live(env);
}

std::shared_ptr<th::HeadedModel> HeadedWrap::live(Napi::Env env) const {
  if (!model_) throw_error(env, "ERR_TH_DISPOSED", "this model was disposed; load it again to use it");
  return model_;
}

// forward(ids, shape, mask, maskShape, labels, wantPreds, hidden, positions?, positionsShape?)
Napi::Value HeadedWrap::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 4, 6, 7);
  const bool preds = info[5].ToBoolean().Value();
  return queue_work(
      env, *ex_,
      [m, b = std::move(b), preds]() {
        auto t = b.tensors();
        return output_data(m->forward(t.ids, t.mask, t.labels, preds, t.hidden ? &*t.hidden : nullptr, t.positions));
      },
      [](Napi::Env env, const OutputData& o) { return output_to_js(env, o); });
}

// trainStep(ids, shape, mask, maskShape, labels, scale, hidden, positions?, positionsShape?)
Napi::Value HeadedWrap::TrainStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 4, 6, 7);
  const double scale = info[5].IsNumber() ? info[5].As<Napi::Number>().DoubleValue() : 1.0;
  return queue_work(
      env, *ex_,
      [m, b = std::move(b), scale]() {
        auto t = b.tensors();
        return output_data(m->train_step(t.ids, t.mask, t.labels, scale, t.hidden ? &*t.hidden : nullptr, t.positions));
      },
      [](Napi::Env env, const OutputData& o) { return output_to_js(env, o); });
}

Napi::Value HeadedWrap::OptimizerStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsNumber()) throw_error(env, "ERR_TH_ARG", "optimizerStep(lr): lr must be a number");
  const double lr = info[0].As<Napi::Number>().DoubleValue();
  return queue_work(
      env, *ex_, [m, lr]() { return m->optimizer_step(lr); }, [](Napi::Env env, double norm) { return Napi::Number::New(env, norm); });
}

// configureOptimizer(options) -> Promise<void>: in order with the steps around it.
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
  return queue_void(env, *ex_, [m, opt]() { m->configure_optimizer(opt); });
}

// saveOptimizer / loadOptimizer / saveTrainable / loadTrainable: a file path in, nothing out.
template <void (th::HeadedModel::*Op)(const std::string&)>
Napi::Value HeadedWrap::PathCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  if (info.Length() < 1 || !info[0].IsString()) throw_error(env, "ERR_TH_ARG", "expected a file path");
  std::string path = info[0].As<Napi::String>();
  return queue_void(env, *ex_, [m, path]() { ((*m).*Op)(path); });
}

Napi::Value HeadedWrap::HookedHidden(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  // hookedHidden(ids, shape, mask, maskShape, positions?, positionsShape?, allLayers?)
  BatchArgs b = batch_from_js(info, 99, 99, 4);
  const bool all = info.Length() > 6 && info[6].ToBoolean().Value();
  return queue_work(
      env, *ex_,
      [m, b = std::move(b), all]() {
        auto t = b.tensors();
        Named out;
        for (auto& [l, h] : m->hooked_hidden(t.ids, t.mask, t.positions, all)) out.emplace_back(std::to_string(l), prepare_f32(h));
        return out;
      },
      [](Napi::Env env, const Named& n) { return named_tensors_to_js(env, n, "layer"); });
}

// headState / headGrads (name) -> Promise<[{ key, data, shape }]>
template <Named (th::HeadedModel::*Get)(const std::string&)>
Napi::Value HeadedWrap::HeadTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  std::string name = info[0].ToString().Utf8Value();
  return queue_work(env, *ex_, [m, name]() { return prepare_f32(((*m).*Get)(name)); }, named_to_js);
}

// loraState / trainedBackboneState () -> Promise<[{ key, data, shape }]>
template <Named (th::HeadedModel::*Get)()>
Napi::Value HeadedWrap::ModelTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return queue_work(env, *ex_, [m]() { return prepare_f32(((*m).*Get)()); }, named_to_js);
}

// loadLoraState / loadBackboneTensors ([{ key, data, shape }]) -> Promise<void>
template <void (th::HeadedModel::*Load)(const std::map<std::string, torch::Tensor>&)>
Napi::Value HeadedWrap::LoadTensors(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  auto list = host_list_from_js<std::string>(info[0], "key", "tensors");
  return queue_void(env, *ex_, [m, list = std::move(list)]() { ((*m).*Load)(named_tensors(list)); });
}

Napi::Value HeadedWrap::LoadHeadState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  std::string name = info[0].ToString().Utf8Value();
  auto list = host_list_from_js<std::string>(info[1], "key", "head tensors");
  return queue_void(env, *ex_, [m, name, list = std::move(list)]() { m->load_head_state(name, named_tensors(list)); });
}

// mergeLora() -> Promise<void>; info() reports the merged model once it resolves.
Napi::Value HeadedWrap::MergeLora(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return queue_work(
      env, *ex_,
      [m]() {
        m->merge_lora();
        return facts_of(*m);
      },
      [facts = facts_](Napi::Env env, HeadedFacts& f) {
        *facts = std::move(f);
        return env.Undefined();
      });
}

// backboneState() -> Promise<[{ key, data, shape }]>: the backbone's weights by Hugging Face name, for saveBackbone.
Napi::Value HeadedWrap::BackboneState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return queue_work(env, *ex_, [m]() { return prepare_f32(m->backbone_state()); }, named_to_js);
}

Napi::Value HeadedWrap::BackboneGradNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  return queue_work(
      env, *ex_, [m]() { return m->backbone_grad_norm(); }, [](Napi::Env env, double n) { return Napi::Number::New(env, n); });
}

Napi::Value HeadedWrap::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  const HeadedFacts& f = *facts_;
  Napi::Object o = backbone_info(env, m->backbone());
  o.Set("parameterBytes", Napi::Number::New(env, static_cast<double>(f.parameter_bytes)));
  o.Set("trainableParameters", Napi::Number::New(env, static_cast<double>(f.trainable)));
  o.Set("totalParameters", Napi::Number::New(env, static_cast<double>(f.total)));
  o.Set("backboneNeedsGrad", Napi::Boolean::New(env, f.needs_grad));
  Napi::Object mem = Napi::Object::New(env);
  mem.Set("dense", Napi::Number::New(env, static_cast<double>(f.dense)));
  mem.Set("quantized", Napi::Number::New(env, static_cast<double>(f.quantized)));
  mem.Set("lora", Napi::Number::New(env, static_cast<double>(f.lora)));
  mem.Set("heads", Napi::Number::New(env, static_cast<double>(f.head_bytes)));
  o.Set("memory", mem);
  o.Set("quantized", Napi::Boolean::New(env, f.is_quantized));
  o.Set("quantizedParameters", Napi::Number::New(env, static_cast<double>(f.quantized_parameters)));
  Napi::Array h = Napi::Array::New(env, f.hooked.size());
  for (size_t i = 0; i < f.hooked.size(); ++i) h.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(f.hooked[i])));
  o.Set("hookedLayers", h);
  return o;
}

// generator(ids, shape, mask, maskShape, options) -> Promise<NativeGenerator>: validates on the compute thread (in
// order with this model's other calls) and computes nothing yet.
Napi::Value HeadedWrap::Generator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = live(env);
  BatchArgs b = batch_from_js(info, 99, 99, 4);  // hookedHidden(ids, shape, mask, maskShape, positions?, positionsShape?)
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
  th::Executor* ex = ex_;
  return queue_work(
      env, *ex_,
      [m, b = std::move(b), go, keep_logits]() {
        auto t = b.tensors();
        auto gen = std::make_shared<th::Generator>(m, t.ids, t.mask, go);
        gen->set_keep_logits(keep_logits);
        GeneratorFacts f = facts_of(*gen);
        return std::make_pair(std::move(gen), std::move(f));
      },
      [ex](Napi::Env env, std::pair<std::shared_ptr<th::Generator>, GeneratorFacts>& r) {
        return GeneratorWrap::Create(env, std::move(r.first), *ex, std::move(r.second));
      });
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
  if (o.Get("positions").IsString()) lo.positions = o.Get("positions").As<Napi::String>();
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
    qo.embeddings = q.Get("quantizeEmbeddings").ToBoolean().Value();
    qo.llm_int8_threshold = num(q, "llmInt8Threshold", th::kLlmInt8Threshold);
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
    lo2.peft_default_targets = l.Get("peftDefaultTargets").ToBoolean().Value();
    // Patterns travel as [key, value] pairs: a JS object would reorder integer-like keys, and PEFT takes the first
    // matching key in the config's order.
    auto pairs = [&](const char* field, auto&& add) {
      Napi::Value v = l.Get(field);
      if (v.IsUndefined() || v.IsNull()) return;
      if (!v.IsArray()) throw_error(env, "ERR_TH_ARG", std::string("lora.") + field + " must be an array of [pattern, value] pairs");
      Napi::Array a = v.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value e = a.Get(i);
        if (!e.IsArray() || e.As<Napi::Array>().Length() != 2 || !e.As<Napi::Array>().Get(0u).IsString() || !e.As<Napi::Array>().Get(1u).IsNumber()) {
          throw_error(env, "ERR_TH_ARG", std::string("lora.") + field + " must be an array of [pattern, value] pairs");
        }
        add(e.As<Napi::Array>().Get(0u).As<Napi::String>().Utf8Value(), e.As<Napi::Array>().Get(1u).As<Napi::Number>().DoubleValue());
      }
    };
    pairs("rankPattern", [&](std::string k, double v) {
      if (!(v >= 1 && v <= 1e9 && std::floor(v) == v)) throw_error(env, "ERR_TH_ARG", "lora.rankPattern['" + k + "'] must be a positive integer");
      lo2.rank_pattern.emplace_back(std::move(k), static_cast<int64_t>(v));
    });
    pairs("alphaPattern", [&](std::string k, double v) { lo2.alpha_pattern.emplace_back(std::move(k), v); });
    auto list = [&](const char* field, auto&& add) {
      Napi::Value v = l.Get(field);
      if (v.IsUndefined() || v.IsNull()) return;
      if (!v.IsArray()) throw_error(env, "ERR_TH_ARG", std::string("lora.") + field + " must be an array");
      Napi::Array a = v.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); ++i) add(a.Get(i));
    };
    list("layersToTransform", [&](Napi::Value e) {
      const double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
      if (!(d >= 0 && d <= 1e9 && std::floor(d) == d)) throw_error(env, "ERR_TH_ARG", "lora.layersToTransform must hold block indices (integers >= 0)");
      lo2.layers_to_transform.push_back(static_cast<int64_t>(d));
    });
    list("layersPattern", [&](Napi::Value e) {
      if (!e.IsString()) throw_error(env, "ERR_TH_ARG", "lora.layersPattern must hold strings");
      lo2.layers_pattern.push_back(e.As<Napi::String>().Utf8Value());
    });
    ho.lora = lo2;
  }
  ho.gradient_checkpointing = o.Get("gradientCheckpointing").ToBoolean().Value();
  // Quantize while loading (the float model is never whole in memory); HeadedModel then finds it quantized.
  lo.quant = ho.quant;
  th::Executor& ex = th::compute_executor(lo.device);
  if (o.Get("fullyTrainedHeads").IsBoolean()) ho.fully_trained_heads = o.Get("fullyTrainedHeads").As<Napi::Boolean>().Value();
  std::string path = info[0].As<Napi::String>();
  return queue_work(
      env, ex,
      [path = std::move(path), lo = std::move(lo), heads = std::move(heads), ho]() {
        auto configs = th::parse_head_configs(heads);
        auto m = std::make_shared<th::HeadedModel>(th::load_backbone(path, lo), std::move(configs), ho);
        HeadedFacts f = facts_of(*m);
        return std::make_pair(std::move(m), std::move(f));
      },
      [](Napi::Env env, std::pair<std::shared_ptr<th::HeadedModel>, HeadedFacts>& r) {
        return HeadedWrap::Create(env, std::move(r.first), std::move(r.second));
      });
}

}  // namespace th::addon
