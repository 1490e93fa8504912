// What every file of the binding shares: how a C++ failure becomes a JS Error carrying an ERR_TH_* code (the core's
// th::Error codes, ERR_TH_TORCH for libtorch, ERR_TH_MEMORY, ERR_TH_INTERNAL), and the per-environment data that holds
// the classes' constructors, so that code off the class (a loader, another class) can wrap a result in a JS object.
#pragma once

#include <napi.h>
#include <torch/torch.h>

#include <exception>
#include <memory>
#include <new>
#include <string>

#include "core/device.h"
#include "core/errors.h"

namespace th::addon {

class Bridge;  // workers.h

// Set once by Init (addon.cc) with Napi::Env::SetInstanceData: one per environment (main thread, each worker_thread).
struct AddonData {
  Napi::FunctionReference backbone_ctor;
  Napi::FunctionReference torchscript_ctor;
  Napi::FunctionReference headed_ctor;
  Napi::FunctionReference generator_ctor;
  std::shared_ptr<Bridge> bridge;  // this environment's end of the compute threads' results
};

struct Failure {
  std::string code, message;
};

// Runs `fn`, catching what the core and libtorch throw. Returns true on success.
template <typename Fn>
bool guarded(Failure& f, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const th::Error& e) {
    f = {e.code(), e.what()};
  } catch (const c10::Error& e) {
    f = {"ERR_TH_TORCH", th::torch_message(e)};
  } catch (const std::bad_alloc&) {
    f = {"ERR_TH_MEMORY", "out of memory"};
  } catch (const std::exception& e) {
    f = {"ERR_TH_INTERNAL", e.what()};
  } catch (...) {
    f = {"ERR_TH_INTERNAL", "unknown native error"};
  }
  return false;
}

Napi::Error make_error(Napi::Env env, const Failure& f);

// Throws a JS error with `code` from the main thread: a TypeError for ERR_TH_ARG (a wrong argument), else an Error.
[[noreturn]] void throw_error(Napi::Env env, const std::string& code, const std::string& message);

// Every class wraps a core object held by shared_ptr: Create(env, ptr) hands it to the constructor through an External
// (JS cannot make one), and in-flight work holds its own reference. `ctor` names the class's constructor in AddonData.
template <typename T>
Napi::Value new_instance(Napi::Env env, Napi::FunctionReference AddonData::*ctor, std::shared_ptr<T> object) {
  auto ext = Napi::External<std::shared_ptr<T>>::New(env, &object);
  return (env.GetInstanceData<AddonData>()->*ctor).New({ext});
}

// The constructor's side of new_instance: the core object, or an ERR_TH_ARG saying `how_to_get_one`.
template <typename T>
std::shared_ptr<T> from_external(const Napi::CallbackInfo& info, const std::string& how_to_get_one) {
  if (info.Length() != 1 || !info[0].IsExternal()) throw_error(info.Env(), "ERR_TH_ARG", how_to_get_one);
  return *info[0].As<Napi::External<std::shared_ptr<T>>>().Data();
}

// Runs a synchronous call from a JS method on the main thread, rethrowing failures as JS errors. Only for work that
// touches no tensor (parsing an option); everything else goes through queue_work (workers.h).
template <typename Fn>
auto sync_call(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  Failure f;
  decltype(fn()) result{};
  if (!guarded(f, [&] { result = fn(); })) throw make_error(env, f);
  return result;
}

}  // namespace th::addon
