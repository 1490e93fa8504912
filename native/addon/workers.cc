// The bridge between the compute threads and the event loop (see workers.h).
#include "workers.h"

namespace th::addon {

void Job::settle(Napi::Env env) {
  Napi::HandleScope scope(env);
  if (failed_) {
    deferred_.Reject(make_error(env, failure_).Value());
    return;
  }
  // The converter runs on the main thread: a JS error it throws keeps its identity; any other exception (libtorch's
  // c10::Error, std::bad_alloc, ...) must reject too rather than escape into Node-API.
  Napi::Value value;
  Napi::Value js_error;
  Failure f;
  const bool ok = guarded(f, [&] {
    try {
      value = result(env);
    } catch (const Napi::Error& e) {
      js_error = e.Value();
    }
  });
  if (!ok) {
    deferred_.Reject(make_error(env, f).Value());
  } else if (!js_error.IsEmpty()) {
    deferred_.Reject(js_error);
  } else {
    deferred_.Resolve(value);
  }
}

// Shared by the environment's Bridge, the thread-safe function (through its finalizer data) and every job on its way
// back, so that whichever of them goes last frees it. `open` turns false when Node tears the environment down (its
// thread-safe functions are finalized then); a compute thread that finishes a job afterwards drops it instead of
// calling into a freed function. `in_flight` is touched on the main thread only.
struct Bridge::Link {
  std::mutex mu;
  bool open = true;
  size_t in_flight = 0;
  Napi::TypedThreadSafeFunction<Link, Job, &Bridge::call_js> tsfn;
};

Bridge::Bridge(Napi::Env env) : link_(std::make_shared<Link>()) {
  auto* keep = new std::shared_ptr<Link>(link_);
  link_->tsfn = Napi::TypedThreadSafeFunction<Link, Job, &Bridge::call_js>::New(
      env, "transformer-heads:compute", 0 /* unbounded queue: a compute thread never waits on the event loop */,
      1, link_.get(),
      [](Napi::Env, std::shared_ptr<Link>* keep, Link*) {
        {
          std::lock_guard<std::mutex> lock((*keep)->mu);
          (*keep)->open = false;
        }
        delete keep;
      },
      keep);
  // An idle addon must not keep the process alive; work in flight does (submit and call_js count it).
  link_->tsfn.Unref(env);
}

void Bridge::submit(Napi::Env env, th::Executor& ex, std::unique_ptr<Job> job) {
  if (link_->in_flight++ == 0) link_->tsfn.Ref(env);
  Job* raw = job.release();
  ex.post([link = link_, raw] {
    raw->run();
    deliver(link, raw);
  });
}

void Bridge::deliver(const std::shared_ptr<Link>& link, Job* job) {
  std::lock_guard<std::mutex> lock(link->mu);
  if (link->open && link->tsfn.NonBlockingCall(job) == napi_ok) return;
  delete job;  // the environment is gone: nobody is left to settle its Promise
}

void Bridge::call_js(Napi::Env env, Napi::Function, Link* link, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (env == nullptr) return;  // teardown: the queue is being emptied
  try {
    job->settle(env);
  } catch (...) {
    // Settling can only fail while the environment is terminating (worker.terminate()); nothing is left to tell.
  }
  if (--link->in_flight == 0) link->tsfn.Unref(env);
}

Bridge& bridge(Napi::Env env) { return *env.GetInstanceData<AddonData>()->bridge; }

}  // namespace th::addon
