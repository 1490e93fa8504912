// Decode-shaped float32 products on the CPU (a few input rows against a large weight) through BLIS, when it is
// installed (Debian: libblis4-pthread; scripts/setup.sh installs it).
//
// Why: a decoding step multiplies one row per sequence by every weight of the model. OpenBLAS packs the weight
// panels for each such product: perf of a batch-8 GPT-2-small decoding step shows 44% of the samples in
// sgemm_incopy (the packing), 22% in the GEMM kernel and ~12% in OpenBLAS's threads yielding. BLIS's small/unpacked
// ("sup") kernels read the weight where it is: measured end to end, 75-77 -> 59-60 ms per step at batch 8
// (docs/benchmarks.md has the alternating runs). So products of at most kSmallGemmRows rows go to BLIS, everything
// else (longer prompts, training) to libtorch's own BLAS, whose large-product kernels are the faster ones (BLIS took
// 1.3-2x longer from 32 rows up). Only generation steps use it (SmallGemmScope). Loaded with dlopen at first use:
// without BLIS, or with TRANSFORMER_HEADS_BLIS=0, nothing changes. Results differ from libtorch's only in float32
// summation order.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace th {

constexpr int64_t kSmallGemmRows = 8;

// Marks the calling thread as running a generation step (Generator::step holds it around the model call). Only
// then does small_linear act: a training step must see the same kernels in its forward and in a checkpointed
// recompute (whose first pass runs without autograd), and other small forwards gain little.
class SmallGemmScope {
 public:
  SmallGemmScope();
  ~SmallGemmScope();
  SmallGemmScope(const SmallGemmScope&) = delete;
  SmallGemmScope& operator=(const SmallGemmScope&) = delete;

 private:
  bool previous_;
};

// y = x W^T + bias for x [..., K] float32 on the CPU, W [N, K] contiguous float32, bias [N] or undefined, inside a
// SmallGemmScope, when the product has at most kSmallGemmRows rows, no gradient is recorded, and BLIS is loaded;
// undefined otherwise (the caller then runs torch::linear).
torch::Tensor small_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias);

struct Quant4;

// y = x W^T for x [M, in] contiguous float32 (M <= kSmallGemmRows) against a 4-bit weight, inside a SmallGemmScope,
// with the dequantization fused into the product: each output row's packed codes are read once and turned into
// weights 16 at a time in registers (AVX-512: the 16-entry code table scaled by the block's absmax, one permute), so
// a decoding step reads the 4-bit bytes instead of writing and re-reading a float32 tile. The weights are the same
// floats dequantize_4bit gives (block scales computed per block as block_absmax does); only the summation order
// differs. Returns an undefined tensor when it does not apply (no AVX-512F, a row not made of whole blocks, more
// rows, autograd), and the caller runs the tiled path.
torch::Tensor linear_4bit_small(const torch::Tensor& x, const Quant4& q);

struct SmallGemmInfo {
  std::string library;  // the BLIS library loaded, or empty (with `reason`)
  std::string reason;   // why it is not used
  uint64_t calls = 0;   // products it has run
  bool fused_4bit = false;  // linear_4bit_small's kernel can run here (AVX-512F, not turned off)
};
SmallGemmInfo small_gemm_info();

}  // namespace th
