// How long work leaves the event loop. Every asynchronous method of every class goes through queue_work: it runs the
// work on libuv's thread pool and settles a Promise on the main thread. This is the one place that decides which
// thread runs libtorch for an async call (a later model, one compute thread per device fed by per-model FIFO queues,
// changes queue_work and nothing else); the synchronous calls go through sync_call (common.h) on the main thread.
#pragma once

#include <napi.h>

#include <optional>
#include <type_traits>
#include <utility>

#include "common.h"

namespace th::addon {

// An AsyncWorker whose Execute runs `Work` with every exception captured, resolving a Promise in OnOK.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name) : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }

 protected:
  virtual void Work() = 0;
  virtual Napi::Value Result(Napi::Env env) = 0;

  void Execute() override {
    if (!guarded(failure_, [&] { Work(); })) SetError(failure_.message);
  }
  void OnOK() override {
    Napi::Env env = Env();
    Napi::Value v;
    try {
      v = Result(env);
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
      return;
    }
    deferred_.Resolve(v);
  }
  void OnError(const Napi::Error&) override { deferred_.Reject(make_error(Env(), failure_).Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Failure failure_;
};

// Runs `fn()` off the event loop and returns a Promise of `to_js(env, result)`, which runs on the main thread and gets
// the result as a mutable reference (it may move it into a JS object). `name` labels the work in async_hooks.
// What `fn` captures (JS inputs already copied into tensors, the model's shared_ptr) lives until the Promise settles,
// so a model disposed meanwhile keeps its weights until its last call ends.
template <typename Fn, typename ToJs>
Napi::Value queue_work(Napi::Env env, const char* name, Fn fn, ToJs to_js) {
  using R = std::invoke_result_t<Fn&>;
  class Worker : public PromiseWorker {
   public:
    Worker(Napi::Env env, const char* name, Fn f, ToJs t) : PromiseWorker(env, name), fn_(std::move(f)), to_js_(std::move(t)) {}
    void Work() override { result_.emplace(fn_()); }
    Napi::Value Result(Napi::Env env) override { return to_js_(env, *result_); }

   private:
    Fn fn_;
    ToJs to_js_;
    std::optional<R> result_;
  };
  auto* w = new Worker(env, name, std::move(fn), std::move(to_js));
  w->Queue();
  return w->Promise();
}

}  // namespace th::addon
