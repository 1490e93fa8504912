#define DOCTEST_CONFIG_IMPLEMENT
#include "doctest_torch.h"

#include "device.h"

int main(int argc, char** argv) {
  th::init_threads();
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
