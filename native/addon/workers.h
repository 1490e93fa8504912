// How work leaves the event loop. Every call that touches a tensor goes through queue_work: it posts the work to the
// compute thread of the model's device (core/executor.h: one thread per device runs every libtorch call of the
// process, in FIFO order) and settles a Promise on the main thread when the work is done, through one
// Napi::ThreadSafeFunction per environment. No libuv pool thread is held: Node keeps those for fs, dns and zlib.
//
// The main thread only copies JS inputs into plain buffers (convert.h), wraps finished CPU buffers as JS values and
// reads model facts that touch no tensor (each class's info(): strings and numbers fixed at load, an atomic counter,
// and the snapshots the compute thread leaves after the calls that change them). It frees CPU buffers handed to JS
// when the garbage collector drops them.
#pragma once

#include <napi.h>

#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

#include "common.h"
#include "core/executor.h"

namespace th::addon {

// One call in flight: run() on the compute thread, settle() on the main thread.
class Job {
 public:
  explicit Job(Napi::Env env) : deferred_(Napi::Promise::Deferred::New(env)) {}
  virtual ~Job() = default;
  Napi::Promise promise() const { return deferred_.Promise(); }
  virtual void run() = 0;
  // Resolves or rejects; whatever to_js throws (a Napi::Error, a c10::Error from a tensor read, anything) rejects.
  void settle(Napi::Env env);

 protected:
  virtual Napi::Value result(Napi::Env env) = 0;
  Failure failure_;
  bool failed_ = false;

 private:
  Napi::Promise::Deferred deferred_;
};

// The per-environment end of the bridge from the compute threads to the event loop (AddonData holds it).
class Bridge {
 public:
  explicit Bridge(Napi::Env env);
  // Posts the job to `ex`; its Promise settles on this environment's main thread.
  void submit(Napi::Env env, th::Executor& ex, std::unique_ptr<Job> job);

 private:
  struct Link;
  static void deliver(const std::shared_ptr<Link>& link, Job* job);
  static void call_js(Napi::Env env, Napi::Function, Link* link, Job* job);
  std::shared_ptr<Link> link_;
};

Bridge& bridge(Napi::Env env);

// Runs `fn()` on the compute thread `ex` and returns a Promise of `to_js(env, result)`, which runs on the main thread
// with the result as a mutable reference (it may move it into a JS object). `fn` must leave its result ready to wrap
// (CPU, contiguous, converted); what it captured is destroyed on the compute thread as soon as it returns, so a
// model disposed meanwhile frees its weights there, after its last call.
template <typename Fn, typename ToJs>
Napi::Value queue_work(Napi::Env env, th::Executor& ex, Fn fn, ToJs to_js) {
  using R = std::invoke_result_t<Fn&>;
  class Typed : public Job {
   public:
    Typed(Napi::Env env, Fn f, ToJs t) : Job(env), fn_(std::move(f)), to_js_(std::move(t)) {}
    void run() override {
      failed_ = !guarded(failure_, [&] { result_.emplace((*fn_)()); });
      fn_.reset();
    }

   protected:
    Napi::Value result(Napi::Env env) override { return to_js_(env, *result_); }

   private:
    std::optional<Fn> fn_;
    ToJs to_js_;
    std::optional<R> result_;
  };
  auto job = std::make_unique<Typed>(env, std::move(fn), std::move(to_js));
  Napi::Promise p = job->promise();
  bridge(env).submit(env, ex, std::move(job));
  return p;
}

// Work with no result: the Promise resolves with undefined.
template <typename Fn>
Napi::Value queue_void(Napi::Env env, th::Executor& ex, Fn fn) {
  return queue_work(
      env, ex, [fn = std::move(fn)]() mutable { fn(); return 0; }, [](Napi::Env env, int) { return env.Undefined(); });
}

// Hands a model's reference to its compute thread, so that its tensors are freed there and after the calls already
// posted (dispose and the garbage collector's finalizer both come here; neither waits).
template <typename T>
void release_on(th::Executor& ex, std::shared_ptr<T>& object) {
  if (object) ex.post([o = std::move(object)]() mutable { o.reset(); });
  object.reset();
}

}  // namespace th::addon
