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
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/cpu_allocator.h"

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
    // TRANSFORMER_HEADS_MALLOC=default: neither the glibc settings nor the caching allocator, on every platform.
    const char* opt = std::getenv("TRANSFORMER_HEADS_MALLOC");
    if (opt != nullptr && std::string(opt) == "default") {
      a.source = "off";
      return;
    }
#if defined(__GLIBC__)
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
    // TRANSFORMER_HEADS_CPU_CACHE_MB: the most freed memory kept for reuse, in MiB; 0 leaves libtorch's own allocator.
    // libtorch's buffers of 1 MiB or more go to the caching allocator (core/cpu_allocator.h; the defaults and their
    // measurements are there and in docs/THREADS.md).
    std::size_t limit_mib = th::kDefaultCpuCacheLimitBytes >> 20;
    if (const char* v = std::getenv("TRANSFORMER_HEADS_CPU_CACHE_MB"); v != nullptr && *v != '\0') {
      char* end = nullptr;
      errno = 0;
      const unsigned long long n = std::strtoull(v, &end, 10);
      if (errno == 0 && end != nullptr && *end == '\0' && n <= (std::size_t{1} << 24)) limit_mib = static_cast<std::size_t>(n);
    }
    if (limit_mib > 0) th::install_cpu_caching_allocator(th::kDefaultCpuCacheMinBytes, limit_mib << 20);
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
  // The caching allocator: null when off (TRANSFORMER_HEADS_MALLOC=default or TRANSFORMER_HEADS_CPU_CACHE_MB=0).
  const th::CpuCacheStats c = th::cpu_cache_stats();
  if (c.installed) {
    Napi::Object k = Napi::Object::New(env);
    k.Set("minBytes", Napi::Number::New(env, static_cast<double>(c.min_bytes)));
    k.Set("limitBytes", Napi::Number::New(env, static_cast<double>(c.cache_limit)));
    k.Set("mappedBytes", Napi::Number::New(env, static_cast<double>(c.mapped)));
    k.Set("cachedBytes", Napi::Number::New(env, static_cast<double>(c.cached)));
    k.Set("peakMappedBytes", Napi::Number::New(env, static_cast<double>(c.peak_mapped)));
    k.Set("hits", Napi::Number::New(env, static_cast<double>(c.hits)));
    k.Set("misses", Napi::Number::New(env, static_cast<double>(c.misses)));
    o.Set("cpuCache", k);
  } else {
    o.Set("cpuCache", env.Null());
  }
  return o;
}

}  // namespace th::addon
