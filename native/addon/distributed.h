// Data-parallel process group functions on the module (distributed.cc).
#pragma once

#include <napi.h>

namespace th::addon {

void RegisterDistributed(Napi::Env env, Napi::Object exports);

}  // namespace th::addon
