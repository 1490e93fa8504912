// A caching allocator for libtorch's large CPU buffers, the CPU counterpart of c10's CUDA caching allocator.
//
// Why (issue 15, measured on GPT-2 small, LoRA step at batch 8 x 128, 2 cores; docs/THREADS.md): a training step
// allocates and frees thousands of activation and gradient buffers of 1-20 MiB, the same sizes at every step. Under
// glibc they either come from the heap, which fragments (step peak 1,980 MiB under glibc's defaults, 1,843 with the
// 4 MiB mmap threshold) or, below a 1 MiB mmap threshold, each is a fresh mapping whose pages fault in and are zeroed
// at every use (peak 1,413 MiB but 3.4 s per step instead of 2.4 s: a third of the CPU time in the kernel).
// Here every buffer of `min_bytes` or more is its own mapping, as with the low threshold, and a freed one is kept
// for the next request of its size class instead of being unmapped: no fragmentation (a mapping is returned whole)
// and no page faults once a step has run. What is kept is bounded by `cache_limit_bytes`; beyond it the oldest
// kept buffers are unmapped.
//
// Sizes are rounded up to 8 classes per power of two (at most 12.5% more than asked), so that a batch one token
// longer reuses the buffers of the last one. Buffers under `min_bytes` go to c10's own allocator (posix_memalign).
#pragma once

#include <cstddef>
#include <cstdint>

namespace th {

// The addon's defaults (native/addon/allocator.cc; measurements in docs/THREADS.md).
constexpr std::size_t kDefaultCpuCacheMinBytes = std::size_t{1} << 20;
constexpr std::size_t kDefaultCpuCacheLimitBytes = std::size_t{256} << 20;

struct CpuCacheStats {
  std::size_t min_bytes = 0;     // buffers this large or larger are cached
  std::size_t cache_limit = 0;   // most bytes kept for reuse
  std::size_t mapped = 0;        // bytes mapped now (in use + kept)
  std::size_t cached = 0;        // bytes kept for reuse now
  std::size_t peak_mapped = 0;   // most bytes mapped at once
  std::uint64_t hits = 0;        // large requests served from the cache
  std::uint64_t misses = 0;      // large requests that mapped fresh memory
  bool installed = false;
};

// Installs the allocator as libtorch's CPU allocator (once per process; later calls change nothing). Tensors made
// before keep their own deleters, so installing after the first tensor is safe.
void install_cpu_caching_allocator(std::size_t min_bytes, std::size_t cache_limit_bytes);
CpuCacheStats cpu_cache_stats();
// Unmaps every kept buffer (what torch.cuda.empty_cache does for the GPU); returns the bytes released.
std::size_t release_cpu_cache();

// While one exists, freed buffers are unmapped instead of kept (nestable; process-wide, as the intra-op workers free
// too). Loading holds one: its buffers are one-off (file reads, float weights quantized and dropped), and keeping
// them raised the 1.1B NF4 model's loading peak from 1,466 to 1,668 MiB. Backbone::quantize holds one too.
class ScopedCpuCacheBypass {
 public:
  ScopedCpuCacheBypass();
  ~ScopedCpuCacheBypass();
  ScopedCpuCacheBypass(const ScopedCpuCacheBypass&) = delete;
  ScopedCpuCacheBypass& operator=(const ScopedCpuCacheBypass&) = delete;
};

// The size class a request of `n` bytes is served from (exposed for tests).
std::size_t cpu_cache_size_class(std::size_t n);

}  // namespace th
