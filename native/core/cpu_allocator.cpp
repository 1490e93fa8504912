#include "cpu_allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define TH_HAVE_MMAP 1
#endif

namespace th {

namespace {
std::atomic<int> g_bypass{0};
}

ScopedCpuCacheBypass::ScopedCpuCacheBypass() {
  g_bypass.fetch_add(1);
  release_cpu_cache();
}
ScopedCpuCacheBypass::~ScopedCpuCacheBypass() { g_bypass.fetch_sub(1); }

std::size_t cpu_cache_size_class(std::size_t n) {
  if (n <= 4096) return 4096;
  std::size_t p = 1;
  while (p <= n / 2) p <<= 1;  // the largest power of two <= n
  const std::size_t step = p / 8 < 4096 ? 4096 : p / 8;
  return (n + step - 1) / step * step;
}

#if defined(TH_HAVE_MMAP)
namespace {

class CachingCpuAllocator final : public c10::Allocator {
 public:
  CachingCpuAllocator(c10::Allocator* fallback, std::size_t min_bytes, std::size_t limit)
      : fallback_(fallback), min_bytes_(min_bytes), limit_(limit) {}

  // c10::Allocator's allocate() is const up to libtorch 2.2 and not const from 2.3, which also added the pure virtual
  // copy_data(). Defining both allocate()s and copy_data() without `override` fits every version: whichever the base
  // declares is overridden, the other is an unused overload.
  c10::DataPtr allocate(std::size_t n) const { return const_cast<CachingCpuAllocator*>(this)->allocate_impl(n); }
  c10::DataPtr allocate(std::size_t n) { return allocate_impl(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &CachingCpuAllocator::raw_delete; }

  static CachingCpuAllocator* instance;

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    CpuCacheStats s;
    s.min_bytes = min_bytes_;
    s.cache_limit = limit_;
    s.mapped = mapped_;
    s.cached = cached_;
    s.peak_mapped = peak_mapped_;
    s.hits = hits_;
    s.misses = misses_;
    s.installed = true;
    return s;
  }

  std::size_t release_all() {
    std::lock_guard<std::mutex> lock(mu_);
    const std::size_t released = cached_;
    while (!kept_.empty()) evict_oldest();
    return released;
  }

 private:
  struct Kept {
    void* ptr;
    std::size_t size;
  };
  using KeptList = std::list<Kept>;

  c10::DataPtr allocate_impl(std::size_t n) {
    if (n < min_bytes_) return fallback_->allocate(n);
    const std::size_t size = cpu_cache_size_class(n);
    std::unique_lock<std::mutex> lock(mu_);
    void* p = nullptr;
    auto it = by_size_.find(size);
    if (it != by_size_.end()) {
      // The most recently freed buffer of the class: its pages are the likeliest still in the CPU caches.
      KeptList::iterator k = it->second.back();
      it->second.pop_back();
      if (it->second.empty()) by_size_.erase(it);
      p = k->ptr;
      kept_.erase(k);
      cached_ -= size;
      ++hits_;
    } else {
      lock.unlock();  // mmap outside the lock
      p = map_fresh(size);
      if (p == nullptr) {
        release_all();  // the kept buffers may be what stands in the way
        p = map_fresh(size);
      }
      TORCH_CHECK(p != nullptr, "CPU allocator: not enough memory: you tried to allocate ", n, " bytes.");
      lock.lock();
      mapped_ += size;
      if (mapped_ > peak_mapped_) peak_mapped_ = mapped_;
      ++misses_;
    }
    live_.emplace(p, size);
    lock.unlock();
    return c10::DataPtr(p, p, &CachingCpuAllocator::raw_delete, c10::Device(c10::DeviceType::CPU));
  }

  static void* map_fresh(std::size_t size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }

  // The deleter of every buffer this allocator hands out, large or small (raw_deallocate calls it too).
  static void raw_delete(void* p) {
    if (p == nullptr) return;
    if (!instance->release(p)) c10::free_cpu(p);  // a small buffer from c10's allocator (posix_memalign)
  }

  bool release(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return false;
    const std::size_t size = it->second;
    live_.erase(it);
    if (size > limit_ || g_bypass.load(std::memory_order_relaxed) > 0) {
      munmap(p, size);
      mapped_ -= size;
      return true;
    }
    kept_.push_back(Kept{p, size});
    by_size_[size].push_back(std::prev(kept_.end()));
    cached_ += size;
    while (cached_ > limit_) evict_oldest();
    return true;
  }

  // Caller holds mu_.
  void evict_oldest() {
    const Kept k = kept_.front();
    auto& same = by_size_[k.size];
    // The oldest of its class is the first in the class's list (both lists are in order of freeing).
    same.erase(same.begin());
    if (same.empty()) by_size_.erase(k.size);
    kept_.pop_front();
    munmap(k.ptr, k.size);
    cached_ -= k.size;
    mapped_ -= k.size;
  }

  c10::Allocator* fallback_;
  const std::size_t min_bytes_, limit_;
  std::mutex mu_;
  std::unordered_map<void*, std::size_t> live_;
  KeptList kept_;  // in order of freeing, oldest first
  std::map<std::size_t, std::list<KeptList::iterator>> by_size_;
  std::size_t mapped_ = 0, cached_ = 0, peak_mapped_ = 0;
  std::uint64_t hits_ = 0, misses_ = 0;
};

CachingCpuAllocator* CachingCpuAllocator::instance = nullptr;
std::once_flag installed;

}  // namespace

void install_cpu_caching_allocator(std::size_t min_bytes, std::size_t cache_limit_bytes) {
  std::call_once(installed, [&] {
    // Never destroyed: tensors freed during static destruction still reach it.
    CachingCpuAllocator::instance = new CachingCpuAllocator(c10::GetDefaultCPUAllocator(), min_bytes < 4096 ? 4096 : min_bytes, cache_limit_bytes);
    c10::SetCPUAllocator(CachingCpuAllocator::instance, /*priority=*/100);
  });
}

CpuCacheStats cpu_cache_stats() {
  return CachingCpuAllocator::instance ? CachingCpuAllocator::instance->stats() : CpuCacheStats{};
}

std::size_t release_cpu_cache() { return CachingCpuAllocator::instance ? CachingCpuAllocator::instance->release_all() : 0; }

#else

void install_cpu_caching_allocator(std::size_t, std::size_t) {}
CpuCacheStats cpu_cache_stats() { return {}; }
std::size_t release_cpu_cache() { return 0; }

#endif

}  // namespace th
