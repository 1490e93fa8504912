// Include this instead of <doctest/doctest.h>: libtorch built with glog (Debian's is) defines CHECK, CHECK_EQ, ...
// as aborting assertions, which would silently replace doctest's. Torch comes first, its macros are dropped, and
// doctest's take their place.
#pragma once

#include <torch/script.h>
#include <torch/torch.h>

#undef CHECK
#undef CHECK_EQ
#undef CHECK_NE
#undef CHECK_LE
#undef CHECK_LT
#undef CHECK_GE
#undef CHECK_GT
#undef CHECK_FALSE
#undef CHECK_THROWS
#undef CHECK_THROWS_AS
#undef CHECK_NOTHROW
#undef CHECK_THROWS_WITH_AS
#undef REQUIRE

#include <doctest/doctest.h>
