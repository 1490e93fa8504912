#include "small_gemm.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__linux__)
#include <dlfcn.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "quant.h"

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
  auto y = torch::empty({M, N}, x.options());
  // With a bias, BLAS adds the product to it (beta = 1), as addmm. Copied into a fresh tensor: with one row,
  // expand().contiguous() would be the caller's bias itself, and the product would be written into it.
  if (bias.defined()) y.copy_(bias.reshape({1, N}).expand({M, N}));
  const float beta = bias.defined() ? 1.0f : 0.0f;
  // y [M, N] (+)= x [M, K] * W^T: W^T's element (p, j) is W[j][p], i.e. row stride 1 and column stride K.
  const float alpha = 1.0f;
  b.sgemm(kNoTranspose, kNoTranspose, M, N, K, &alpha, x2.data_ptr<float>(), K, 1, w.data_ptr<float>(), 1, K, &beta,
          y.data_ptr<float>(), N, 1);
  b.calls.fetch_add(1, std::memory_order_relaxed);
  return y.view(sizes);
}

namespace {

#if defined(__x86_64__)
#pragma GCC diagnostic push
// GCC 12's avx512fintrin.h trips it inside _mm512_reduce_add_ps (its _mm512_undefined idiom): a false positive.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// A block's absmax as block_absmax computes it, without materialising all of them at each call (with double
// quantization that took several passes over every block and the page faults of their buffers): the fp32 value, or
// dynamic_map[qabsmax] * absmax2[block / 256] + offset, each operation rounded to float as there.
struct BlockScales {
  const float* absmax = nullptr;  // plain
  const uint8_t* qabsmax = nullptr;
  const float* map = nullptr;
  const float* absmax2 = nullptr;
  float offset = 0.0f;
  float operator()(int64_t b) const {
    if (absmax != nullptr) return absmax[b];
    // volatile: GCC would otherwise contract the two operations into one FMA (one rounding instead of two) inside the
    // AVX-512 kernel, and the weights would no longer be dequantize_4bit's (the one-hot test sees it).
    volatile float scaled = map[qabsmax[b]] * absmax2[b >> 8];
    return scaled + offset;
  }
};

// Rows [r0, r1) of y [M, out] for M <= 8. `table` is the 16-entry code table; in % blocksize == 0 and
// blocksize % 16 == 0, so every block starts on a byte and is whole 16-value groups.
template <int M>
__attribute__((target("avx512f"))) void q4_rows_avx512(const uint8_t* packed, const float* table, const BlockScales& scale,
                                                        int64_t in, int64_t blocksize, const float* x, float* y,
                                                        int64_t out, int64_t r0, int64_t r1) {
  const __m512 codes = _mm512_loadu_ps(table);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const int64_t per_row = in / blocksize;
  for (int64_t r = r0; r < r1; ++r) {
    __m512 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    const uint8_t* p = packed + r * (in / 2);
    for (int64_t b = 0; b < per_row; ++b) {
      // table[c] * absmax: the same single product dequantize_4bit computes for each weight
      const __m512 lut = _mm512_mul_ps(codes, _mm512_set1_ps(scale(r * per_row + b)));
      for (int64_t k = b * blocksize; k < (b + 1) * blocksize; k += 16) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + k / 2));
        // byte j holds code 2j in its high nibble and code 2j + 1 in its low one
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low4), lo = _mm_and_si128(bytes, low4);
        const __m512 w = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(hi, lo)), lut);
        for (int m = 0; m < M; ++m) acc[m] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + m * in + k), acc[m]);
      }
    }
    for (int m = 0; m < M; ++m) y[m * out + r] = _mm512_reduce_add_ps(acc[m]);
  }
}

#pragma GCC diagnostic pop

using RowsFn = void (*)(const uint8_t*, const float*, const BlockScales&, int64_t, int64_t, const float*, float*, int64_t,
                        int64_t, int64_t);
RowsFn q4_rows_for(int64_t M) {
  static const RowsFn fns[8] = {q4_rows_avx512<1>, q4_rows_avx512<2>, q4_rows_avx512<3>, q4_rows_avx512<4>,
                                q4_rows_avx512<5>, q4_rows_avx512<6>, q4_rows_avx512<7>, q4_rows_avx512<8>};
  return fns[M - 1];
}
// TRANSFORMER_HEADS_Q4_FUSED=0 keeps 4-bit decoding on the tiled path (for comparisons).
bool fused_q4_available() {
  static const bool yes = [] {
    const char* env = std::getenv("TRANSFORMER_HEADS_Q4_FUSED");
    return __builtin_cpu_supports("avx512f") && !(env != nullptr && std::strcmp(env, "0") == 0);
  }();
  return yes;
}
#endif

}  // namespace

torch::Tensor linear_4bit_small(const torch::Tensor& x, const Quant4& q) {
#if defined(__x86_64__)
  const int64_t out = q.shape[0], in = q.shape[1];
  if (!t_decoding || !fused_q4_available() || !x.device().is_cpu() || !q.packed.device().is_cpu() || x.dim() != 2 ||
      !x.is_contiguous() || x.scalar_type() != torch::kFloat32 || x.size(1) != in || x.size(0) < 1 ||
      x.size(0) > kSmallGemmRows || in % q.blocksize != 0 || q.blocksize % 16 != 0 || !q.packed.is_contiguous() ||
      (torch::GradMode::is_enabled() && x.requires_grad())) {
    return {};
  }
  const int64_t M = x.size(0);
  auto y = torch::empty({M, out}, x.options());
  const RowsFn fn = q4_rows_for(M);
  const uint8_t* packed = q.packed.data_ptr<uint8_t>();
  const float* table = code_table(q.type).data_ptr<float>();
  BlockScales scale;
  if (q.nested) {
    if (!q.qabsmax.is_contiguous() || !q.absmax2.is_contiguous()) return {};
    scale.qabsmax = q.qabsmax.data_ptr<uint8_t>();
    scale.map = dynamic_map().data_ptr<float>();
    scale.absmax2 = q.absmax2.data_ptr<float>();
    scale.offset = static_cast<float>(q.offset);
  } else {
    if (!q.absmax.is_contiguous()) return {};
    scale.absmax = q.absmax.data_ptr<float>();
  }
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  // ~64K weights per task: enough work to amortize the task, many tasks per thread
  const int64_t grain = std::max<int64_t>(1, 65536 / in);
  at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) { fn(packed, table, scale, in, q.blocksize, xp, yp, out, r0, r1); });
  return y;
#else
  (void)x;
  (void)q;
  return {};
#endif
}

SmallGemmInfo small_gemm_info() {
  Blis& b = blis();
  SmallGemmInfo i;
  i.library = b.library;
  i.reason = b.reason;
  i.calls = b.calls.load();
#if defined(__x86_64__)
  i.fused_4bit = fused_q4_available();
#endif
  return i;
}

}  // namespace th
