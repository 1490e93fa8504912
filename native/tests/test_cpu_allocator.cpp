// The caching CPU allocator (core/cpu_allocator.h), installed by main.cpp as the addon installs it: size classes,
// reuse of a freed buffer, the bound on what is kept, the raw interface, and many threads at once.
#include "doctest_torch.h"

#include <c10/core/CPUAllocator.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "cpu_allocator.h"

namespace {
constexpr std::size_t MiB = std::size_t{1} << 20;
}

TEST_CASE("cpu allocator: size classes are 8 per power of two, page multiples") {
  CHECK(th::cpu_cache_size_class(1) == 4096);
  CHECK(th::cpu_cache_size_class(MiB) == MiB);
  CHECK(th::cpu_cache_size_class(MiB + 1) == MiB + MiB / 8);
  CHECK(th::cpu_cache_size_class(3 * MiB) == 3 * MiB);             // [8, 128, 768] float32: exact
  CHECK(th::cpu_cache_size_class(3 * MiB + 1) == 3 * MiB + MiB / 4);
  CHECK(th::cpu_cache_size_class(12 * MiB - 5) == 12 * MiB);
  for (std::size_t n : {MiB, MiB + 7, 5 * MiB + 12345, 200 * MiB + 1, std::size_t{3000000}}) {
    const std::size_t c = th::cpu_cache_size_class(n);
    CHECK(c >= n);
    CHECK(c % 4096 == 0);
    CHECK(static_cast<double>(c) <= static_cast<double>(n) * 1.125 + 4096);
  }
}

TEST_CASE("cpu allocator: libtorch's large buffers come from it and a freed one is reused") {
  const th::CpuCacheStats s0 = th::cpu_cache_stats();
  REQUIRE(s0.installed);
  REQUIRE(s0.min_bytes == th::kDefaultCpuCacheMinBytes);
  th::release_cpu_cache();
  void* first = nullptr;
  {
    torch::Tensor a = torch::ones({768, 1024});  // 3 MiB
    first = a.data_ptr();
    CHECK(reinterpret_cast<std::uintptr_t>(first) % 64 == 0);  // c10's alignment
    CHECK(a.sum().item<double>() == 768.0 * 1024.0);
  }
  const th::CpuCacheStats s1 = th::cpu_cache_stats();
  CHECK(s1.cached >= 3 * MiB);
  {
    torch::Tensor b = torch::empty({768, 1000});  // a little smaller, same class: the same buffer
    CHECK(b.data_ptr() == first);
    b.fill_(2.0f);
    CHECK(b.sum().item<double>() == 2.0 * 768 * 1000);
  }
  CHECK(th::cpu_cache_stats().hits == s1.hits + 1);
  // Small tensors stay with c10's own allocator and are not counted.
  const std::size_t mapped = th::cpu_cache_stats().mapped;
  { torch::Tensor small = torch::ones({100}); CHECK(small.sum().item<double>() == 100.0); }
  CHECK(th::cpu_cache_stats().mapped == mapped);
  CHECK(th::release_cpu_cache() >= 3 * MiB);
  CHECK(th::cpu_cache_stats().cached == 0);
}

TEST_CASE("cpu allocator: what it keeps stays within its limit; the oldest goes first") {
  th::release_cpu_cache();
  const th::CpuCacheStats s0 = th::cpu_cache_stats();
  const std::size_t limit = s0.cache_limit;
  REQUIRE(limit >= 8 * MiB);
  // Free buffers of distinct classes adding up to twice the limit.
  std::vector<torch::Tensor> held;
  std::size_t total = 0;
  for (int64_t k = 0; total < 2 * limit; ++k) {
    held.push_back(torch::empty({static_cast<int64_t>((4 + k % 50) * MiB / 4)}));
    total += th::cpu_cache_size_class(held.back().nbytes());
  }
  const std::size_t mapped_with_all = th::cpu_cache_stats().mapped;
  CHECK(mapped_with_all >= s0.mapped + total);
  const int64_t oldest_numel = held.front().numel();
  void* newest = held.back().data_ptr();
  const int64_t newest_numel = held.back().numel();
  for (auto& t : held) t = torch::Tensor();  // freed in order, first to last
  held.clear();
  const th::CpuCacheStats s1 = th::cpu_cache_stats();
  CHECK(s1.cached <= limit);
  CHECK(s1.cached > 0);
  CHECK(s1.mapped <= s0.mapped + limit);  // the rest was unmapped
  // The newest freed buffer is still there; the oldest (4 MiB, the only one of its class) was unmapped, so a
  // request of its size maps fresh memory.
  torch::Tensor again = torch::empty({newest_numel});
  CHECK(again.data_ptr() == newest);
  const std::uint64_t misses = th::cpu_cache_stats().misses;
  torch::Tensor first_size = torch::empty({oldest_numel});
  CHECK(th::cpu_cache_stats().misses == misses + 1);
  first_size = torch::Tensor();
  again = torch::Tensor();
  // A buffer larger than the whole limit is never kept.
  const std::size_t before = th::cpu_cache_stats().cached;
  { torch::Tensor huge = torch::empty({static_cast<int64_t>(limit / 4 + MiB)}); huge.fill_(1.0f); }
  CHECK(th::cpu_cache_stats().cached == before);
  th::release_cpu_cache();
}

TEST_CASE("cpu allocator: the raw interface and many threads") {
  c10::Allocator* a = c10::GetCPUAllocator();
  REQUIRE(static_cast<bool>(a->raw_deleter()));
  for (std::size_t n : {std::size_t{64}, 2 * MiB}) {
    void* p = a->raw_allocate(n);
    REQUIRE(p != nullptr);
    std::memset(p, 1, n);
    a->raw_deallocate(p);
  }
  th::release_cpu_cache();
  const std::size_t mapped0 = th::cpu_cache_stats().mapped;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([t] {
      std::mt19937 rng(t);
      std::vector<torch::Tensor> live;
      for (int i = 0; i < 400; ++i) {
        if (!live.empty() && rng() % 2) {
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(rng() % live.size()));
        } else {
          const int64_t n = static_cast<int64_t>(MiB / 4 + rng() % (3 * MiB));  // 1-4 MiB of floats
          torch::Tensor x = torch::full({n}, static_cast<float>(t));
          CHECK(x[n - 1].item<float>() == static_cast<float>(t));
          live.push_back(x);
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  const th::CpuCacheStats s = th::cpu_cache_stats();
  CHECK(s.mapped - s.cached == mapped0);  // every buffer came back
  CHECK(s.cached <= s.cache_limit);
  th::release_cpu_cache();
}

TEST_CASE("cpu allocator: nothing is kept while a bypass is held (loading)") {
  th::release_cpu_cache();
  {
    th::ScopedCpuCacheBypass outer;
    th::ScopedCpuCacheBypass inner;  // nestable
    { torch::Tensor a = torch::ones({768, 1024}); }
    CHECK(th::cpu_cache_stats().cached == 0);
  }
  { torch::Tensor a = torch::ones({768, 1024}); }
  CHECK(th::cpu_cache_stats().cached >= 3 * MiB);  // kept again once the bypass is gone
  th::release_cpu_cache();
}
