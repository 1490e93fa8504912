// glibc's allocator, configured once when the addon loads (see allocator.cc and docs/THREADS.md for the values and
// their measurements). Each setting is skipped when the user's environment sets it (MALLOC_*_ or GLIBC_TUNABLES), and
// all of them with TRANSFORMER_HEADS_MALLOC=default.
#pragma once

#include <napi.h>

namespace th::addon {

// Applies the settings (once per process; later calls, e.g. from a worker_thread's environment, do nothing).
void configure_malloc();
// { mmapThreshold, trimThreshold, arenaMax, source } as applied: a number, or null where it was left to glibc or the
// user's environment; source is 'addon', 'environment', 'off' (TRANSFORMER_HEADS_MALLOC=default) or 'unsupported'.
Napi::Object malloc_settings_to_js(Napi::Env env);

}  // namespace th::addon
