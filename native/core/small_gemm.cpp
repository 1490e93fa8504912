#include "small_gemm.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__linux__)
#include <dlfcn.h>
#endif

namespace th {
namespace {

// BLIS's typed API (blis.h): any row and column strides, so no transposition flags are needed. Not its CBLAS
// layer: that calls the Fortran symbol sgemm_, which the dynamic linker binds to the BLAS libtorch already loaded
// (OpenBLAS), so "BLIS" would silently be OpenBLAS again.
using dim_t = int64_t;  // gint_t: 64-bit in Debian's build (and BLIS's default)
constexpr int kNoTranspose = 0;
using Sgemm = void (*)(int transa, int transb, dim_t m, dim_t n, dim_t k, const float* alpha, const float* a, dim_t rs_a,
                       dim_t cs_a, const float* b, dim_t rs_b, dim_t cs_b, const float* beta, float* c, dim_t rs_c, dim_t cs_c);
using SetThreads = void (*)(dim_t);

thread_local bool t_decoding = false;

struct Blis {
  Sgemm sgemm = nullptr;
  SetThreads set_threads = nullptr;
  std::string library, reason;
  std::atomic<int> threads{0};
  std::atomic<uint64_t> calls{0};
};

Blis& blis() {
  static Blis b;
  static std::once_flag once;
  std::call_once(once, [] {
    const char* env = std::getenv("TRANSFORMER_HEADS_BLIS");
    if (env != nullptr && std::strcmp(env, "0") == 0) {
      b.reason = "disabled by TRANSFORMER_HEADS_BLIS=0";
      return;
    }
#if defined(__linux__)
    // RTLD_LOCAL: BLIS also exports the Fortran BLAS symbols (sgemm_, ...); kept local, they cannot replace the BLAS
    // libtorch resolved for everything else.
    for (const char* name : {"libblis.so.4", "libblis.so"}) {
      void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
      if (h == nullptr) continue;
      auto sgemm = reinterpret_cast<Sgemm>(dlsym(h, "bli_sgemm"));
      auto set_threads = reinterpret_cast<SetThreads>(dlsym(h, "bli_thread_set_num_threads"));
      if (sgemm == nullptr || set_threads == nullptr) {
        dlclose(h);
        continue;
      }
      b.sgemm = sgemm;
      b.set_threads = set_threads;
      b.library = name;
      return;
    }
    b.reason = "libblis.so.4 not found (Debian: apt install libblis4-pthread)";
#else
    b.reason = "only looked for on Linux";
#endif
  });
  return b;
}

}  // namespace

SmallGemmScope::SmallGemmScope() : previous_(t_decoding) { t_decoding = true; }
SmallGemmScope::~SmallGemmScope() { t_decoding = previous_; }

torch::Tensor small_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  if (!t_decoding || !x.device().is_cpu() || x.scalar_type() != torch::kFloat32 || w.scalar_type() != torch::kFloat32 || w.dim() != 2 ||
      !w.device().is_cpu() || !w.is_contiguous() || x.dim() < 1 || x.size(-1) != w.size(1)) {
    return {};
  }
  const int64_t K = w.size(1), N = w.size(0), M = K > 0 ? x.numel() / K : 0;
  if (M < 1 || M > kSmallGemmRows || N < 1) return {};
  if (bias.defined() && (bias.scalar_type() != torch::kFloat32 || !bias.device().is_cpu() || bias.numel() != N)) return {};
  if (torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad()))) {
    return {};
  }
  Blis& b = blis();
  if (b.sgemm == nullptr) return {};
  // BLIS's thread count is global; follow the intra-op count (setNumThreads / OMP_NUM_THREADS) at each call.
  const int want = at::get_num_threads();
  if (b.threads.exchange(want) != want) b.set_threads(want);
  auto x2 = x.reshape({M, K}).contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = N;
  torch::Tensor y;
  float beta = 0.0f;
  if (bias.defined()) {
    // BLAS adds the product to it (beta = 1), as addmm. A fresh tensor: with one row, expand().contiguous() would be
    // the caller's bias itself, and the product would be written into it.
    y = torch::empty({M, N}, x.options());
    y.copy_(bias.reshape({1, N}).expand({M, N}));
    beta = 1.0f;
  } else {
    y = torch::empty({M, N}, x.options());
  }
  // y [M, N] (+)= x [M, K] * W^T: W^T's element (p, j) is W[j][p], i.e. row stride 1 and column stride K.
  const float alpha = 1.0f;
  b.sgemm(kNoTranspose, kNoTranspose, M, N, K, &alpha, x2.data_ptr<float>(), K, 1, w.data_ptr<float>(), 1, K, &beta,
          y.data_ptr<float>(), N, 1);
  b.calls.fetch_add(1, std::memory_order_relaxed);
  return y.view(sizes);
}

SmallGemmInfo small_gemm_info() {
  Blis& b = blis();
  SmallGemmInfo i;
  i.library = b.library;
  i.reason = b.reason;
  i.calls = b.calls.load();
  return i;
}

}  // namespace th
