// The process group of a data-parallel run (core/distributed.h), one per process like torch.distributed's default
// group: distInit, distCheck, distFingerprint, distAttach, distAllReduce, distBarrier, distStats, distDestroy.
// Every call runs through queue_work on the compute thread of the group's device, in order with the model's own
// calls on that thread (a collective blocks it, as a training step would).
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "distributed.h"
#include "core/distributed.h"
#include "core/executor.h"
#include "core/headed_model.h"
#include "headed.h"
#include "workers.h"

namespace th::addon {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

struct Group {
  std::mutex mu;
  std::shared_ptr<th::dist::ProcessGroup> group;  // set on the compute thread once the rendezvous succeeded
  std::string device = "cpu";
};

Group& state() {
  static Group g;
  return g;
}

std::shared_ptr<th::dist::ProcessGroup> current() {
  std::lock_guard<std::mutex> lock(state().mu);
  if (!state().group) throw th::ValueError("no process group: call initProcessGroup() first");
  return state().group;
}

th::Executor& group_executor() {
  std::lock_guard<std::mutex> lock(state().mu);
  return th::compute_executor(state().device);
}

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw_error(env, "ERR_TH_ARG", "distInit(options) needs an object");
  Napi::Object o = info[0].As<Napi::Object>();
  th::dist::Options opt;
  auto num = [&](const char* k, auto& v) {
    if (o.Has(k) && o.Get(k).IsNumber()) v = static_cast<std::decay_t<decltype(v)>>(o.Get(k).As<Napi::Number>().Int64Value());
  };
  auto str = [&](const char* k, std::string& v) {
    if (o.Has(k) && o.Get(k).IsString()) v = o.Get(k).As<Napi::String>().Utf8Value();
  };
  num("rank", opt.rank);
  num("worldSize", opt.world_size);
  num("localRank", opt.local_rank);
  num("masterPort", opt.master_port);
  num("timeoutMs", opt.timeout_ms);
  num("bucketBytes", opt.bucket_bytes);
  str("masterAddr", opt.master_addr);
  str("backend", opt.backend);
  std::string device = opt.backend == "nccl" ? "cuda:" + std::to_string(opt.local_rank) : "cpu";
  {
    std::lock_guard<std::mutex> lock(state().mu);
    if (state().group) throw_error(env, "ERR_TH_VALUE", "this process already has a process group (destroy it first)");
    state().device = device;
  }
  return queue_void(env, th::compute_executor(device), [opt]() {
    auto g = th::dist::ProcessGroup::create(opt);
    std::lock_guard<std::mutex> lock(state().mu);
    state().group = std::move(g);
  });
}

Napi::Value Check(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) throw_error(env, "ERR_TH_ARG", "distCheck(fields) needs an array of [name, value]");
  Fields fields;
  Napi::Array a = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsArray() || e.As<Napi::Array>().Length() != 2) throw_error(env, "ERR_TH_ARG", "distCheck: each field is [name, value]");
    Napi::Array p = e.As<Napi::Array>();
    fields.emplace_back(p.Get(0u).ToString().Utf8Value(), p.Get(1u).ToString().Utf8Value());
  }
  auto g = sync_call(env, current);
  return queue_void(env, group_executor(), [g, fields]() { g->check_same(fields); });
}

Napi::Value Fingerprint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = HeadedWrap::Model(info[0]);
  return queue_work(
      env, th::compute_executor(m->backbone().device()), [m]() { return m->fingerprint(); },
      [](Napi::Env env, Fields& f) {
        Napi::Array a = Napi::Array::New(env, f.size());
        for (uint32_t i = 0; i < f.size(); ++i) {
          Napi::Array p = Napi::Array::New(env, 2);
          p.Set(0u, f[i].first);
          p.Set(1u, f[i].second);
          a.Set(i, p);
        }
        return a;
      });
}

// distAttach(model, attach: boolean): broadcast of rank 0's trainable weights, then gradient averaging.
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = HeadedWrap::Model(info[0]);
  const bool on = info.Length() < 2 || info[1].ToBoolean().Value();
  std::shared_ptr<th::dist::ProcessGroup> g = on ? sync_call(env, current) : nullptr;
  return queue_void(env, th::compute_executor(m->backbone().device()), [m, g]() { m->attach_group(g); });
}

Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw_error(env, "ERR_TH_ARG", "distAllReduce(values) needs a Float64Array");
  }
  auto arr = info[0].As<Napi::Float64Array>();
  std::vector<double> values(arr.Data(), arr.Data() + arr.ElementLength());
  auto g = sync_call(env, current);
  return queue_work(
      env, group_executor(), [g, values]() { return g->allreduce_sum(values, "metric sums"); },
      [](Napi::Env env, std::vector<double>& v) {
        auto out = Napi::Float64Array::New(env, v.size());
        std::copy(v.begin(), v.end(), out.Data());
        return out;
      });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string what = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "a barrier";
  auto g = sync_call(env, current);
  return queue_void(env, group_executor(), [g, what]() { g->barrier(what); });
}

Napi::Value Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = sync_call(env, current);
  return queue_work(
      env, group_executor(), [g]() { return std::make_pair(g->reduce_ms(), g->reduce_count()); },
      [](Napi::Env env, std::pair<double, int64_t>& s) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("reduceMs", s.first);
        o.Set("reduceCount", static_cast<double>(s.second));
        return o;
      });
}

// Drops this process's reference; models attached keep theirs until detached (distAttach(model, false)).
Napi::Value Destroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<th::dist::ProcessGroup> g;
  th::Executor* ex;
  {
    std::lock_guard<std::mutex> lock(state().mu);
    g = std::move(state().group);
    ex = &th::compute_executor(state().device);
  }
  return queue_void(env, *ex, [g]() mutable { g.reset(); });
}

Napi::Value Available(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string b = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "gloo";
  return Napi::Boolean::New(env, th::dist::backend_available(b));
}

}  // namespace

void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("distInit", Napi::Function::New<Init>(env, "distInit"));
  exports.Set("distCheck", Napi::Function::New<Check>(env, "distCheck"));
  exports.Set("distFingerprint", Napi::Function::New<Fingerprint>(env, "distFingerprint"));
  exports.Set("distAttach", Napi::Function::New<Attach>(env, "distAttach"));
  exports.Set("distAllReduce", Napi::Function::New<AllReduce>(env, "distAllReduce"));
  exports.Set("distBarrier", Napi::Function::New<Barrier>(env, "distBarrier"));
  exports.Set("distStats", Napi::Function::New<Stats>(env, "distStats"));
  exports.Set("distDestroy", Napi::Function::New<Destroy>(env, "distDestroy"));
  exports.Set("distAvailable", Napi::Function::New<Available>(env, "distAvailable"));
}

}  // namespace th::addon
