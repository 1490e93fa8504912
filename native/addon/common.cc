// JS errors from C++ failures (see common.h).
#include "common.h"

namespace th::addon {

Napi::Error make_error(Napi::Env env, const Failure& f) {
  Napi::Error err = Napi::Error::New(env, f.message);
  err.Set("code", Napi::String::New(env, f.code));
  return err;
}

[[noreturn]] void throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = code == "ERR_TH_ARG" ? Napi::TypeError::New(env, message) : Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  throw err;
}

}  // namespace th::addon
