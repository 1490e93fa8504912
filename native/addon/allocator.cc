// Why the addon touches glibc's malloc at all: libtorch allocates activations and gradients of a few hundred KB to
// a few hundred MB with malloc (c10's CPU allocator is posix_memalign), and glibc's defaults keep what a training
// step frees. Two glibc behaviours measured on GPT-2 small (issue 15; docs/THREADS.md):
//  * the mmap threshold is dynamic: after the first large mmapped block is freed, glibc raises the threshold up to
//    32 MiB, so later activations of that size come from the heap, and a heap fragmented by smaller live blocks
//    cannot give them back. A fixed threshold keeps every large tensor buffer in its own mapping, returned to the
//    system on free (LoRA step peak RSS 3.2-4.3 GB -> 1.4 GB in the measurement at 1 MiB; the value below
//    trades some of that for speed).
//  * one arena per thread that allocates: each OpenMP worker that allocates a temporary gets its own arena, whose
//    freed space only that thread reuses. With one compute thread per device (executor.h) two arenas serve the main
//    thread and the compute thread; the intra-op workers share them.
// Setting M_MMAP_THRESHOLD turns off glibc's dynamic adjustment of both thresholds, so the trim threshold is set
// alongside.
#include "allocator.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace th::addon {
namespace {

// 4 MiB: blocks this size or larger get their own mapping. Measured (docs/THREADS.md, GPT-2 small LoRA step,
// batch 8 x 128): 1 MiB gave the lowest peak (1.41 GB vs 1.95-1.98 GB under glibc's defaults) but made every step
// about 1.5x slower in three alternating rounds: the step's many 3 MiB activations ([8, 128, 768] float32) became
// fresh mappings whose pages fault in on every use. At 4 MiB those stay in the heap and are reused; the larger
// buffers (MLP activations, attention scores) are mapped and returned: 1.78 GB, no slower than glibc's defaults.
constexpr int kMmapThreshold = 4 << 20;
// 2 MiB: the heap top is returned once that much is free there (glibc's default would be 128 KiB once the mmap
// threshold is fixed, since fixing it stops glibc's dynamic adjustment of both). Measured with the 4 MiB threshold.
constexpr int kTrimThreshold = 2 << 20;
constexpr int kArenaMax = 2;  // the main thread's and the compute thread's

struct Applied {
  int mmap_threshold = 0, trim_threshold = 0, arena_max = 0;  // 0: not set by the addon
  const char* source = "unsupported";
};

Applied& applied() {
  static Applied a;
  return a;
}

// The user's own choice wins: the environment variable glibc reads, or the same tunable in GLIBC_TUNABLES.
bool user_set(const char* env_name, const char* tunable) {
  if (std::getenv(env_name) != nullptr) return true;
  const char* t = std::getenv("GLIBC_TUNABLES");
  return t != nullptr && std::strstr(t, tunable) != nullptr;
}

}  // namespace

void configure_malloc() {
  static std::once_flag once;
  std::call_once(once, [] {
    Applied& a = applied();
#if defined(__GLIBC__)
    const char* opt = std::getenv("TRANSFORMER_HEADS_MALLOC");
    if (opt != nullptr && std::string(opt) == "default") {
      a.source = "off";
      return;
    }
    a.source = "addon";
    bool any_user = false;
    if (!user_set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold")) {
      if (mallopt(M_MMAP_THRESHOLD, kMmapThreshold) == 1) a.mmap_threshold = kMmapThreshold;
    } else {
      any_user = true;
    }
    if (!user_set("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold")) {
      if (mallopt(M_TRIM_THRESHOLD, kTrimThreshold) == 1) a.trim_threshold = kTrimThreshold;
    } else {
      any_user = true;
    }
    if (!user_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max")) {
      if (mallopt(M_ARENA_MAX, kArenaMax) == 1) a.arena_max = kArenaMax;
    } else {
      any_user = true;
    }
    if (any_user && a.mmap_threshold == 0 && a.trim_threshold == 0 && a.arena_max == 0) a.source = "environment";
#endif
  });
}

Napi::Object malloc_settings_to_js(Napi::Env env) {
  const Applied& a = applied();
  auto num = [&](int v) -> Napi::Value { return v > 0 ? Napi::Number::New(env, v) : env.Null(); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("mmapThreshold", num(a.mmap_threshold));
  o.Set("trimThreshold", num(a.trim_threshold));
  o.Set("arenaMax", num(a.arena_max));
  o.Set("source", a.source);
  return o;
}

}  // namespace th::addon
