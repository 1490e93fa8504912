#define DOCTEST_CONFIG_IMPLEMENT
#include "doctest_torch.h"

#include "cpu_allocator.h"
#include "device.h"

int main(int argc, char** argv) {
  th::init_threads();
  // As the addon runs (native/addon/allocator.cc): every core test allocates through it.
  th::install_cpu_caching_allocator(th::kDefaultCpuCacheMinBytes, th::kDefaultCpuCacheLimitBytes);
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
