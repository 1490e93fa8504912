// LLM.int8() matrix multiplication (Dettmers et al., arXiv 2208.07339) as bitsandbytes computes it for
// Linear8bitLt / MatMul8bitLt: its default (PyTorch) backend's int8_vectorwise_quant, int8_mixed_scaled_mm,
// int8_scaled_mm and int8_mm_dequant. The algorithm, step by step, is in docs/formats-llm-int8.md. Kept apart from
// quant.cpp (4-bit, and the 8-bit weight format) because it runs at every forward of an 8-bit projection.
#include <algorithm>
#include <limits>

#include "errors.h"
#include "quant.h"

namespace th {
namespace {

// Exact int8 x int8 -> int32 products, as a CUDA int8 GEMM gives them. Each float32 GEMM over 1024 columns sums at
// most 1024 * 127 * 127 < 2^24 in magnitude, so every partial sum is an exactly representable integer whatever the
// kernel's order; the chunks add up in int32.
torch::Tensor int8_matmul_exact(const torch::Tensor& a, const torch::Tensor& b) {
  constexpr int64_t kChunk = 1024;
  const int64_t K = a.size(1);
  torch::Tensor acc;
  for (int64_t k = 0; k < K; k += kChunk) {
    const int64_t n = std::min(kChunk, K - k);
    torch::Tensor part = torch::matmul(a.narrow(1, k, n).to(torch::kFloat32), b.narrow(1, k, n).to(torch::kFloat32).t()).to(torch::kInt32);
    acc = acc.defined() ? acc.add_(part) : part;
  }
  return acc;
}

}  // namespace

Int8Activations quantize_activations_int8(const torch::Tensor& a, double threshold) {
  if (a.dim() != 2) throw ShapeError("LLM.int8 activations must be 2-D [rows, features]");
  Int8Activations q;
  // bitsandbytes quantizes float16 activations (MatMul8bitLt casts them): the values, the threshold test and the row
  // absmax are those of the float16 rounding, held here in float32 (every float16 is exact in float32).
  torch::Tensor h = a.to(torch::kHalf).to(torch::kFloat32);
  if (threshold > 0.0) {
    torch::Tensor outliers = h.abs() >= threshold;
    q.outlier_cols = outliers.any(0);
    if (q.outlier_cols.any().item<bool>()) h = h.masked_fill(outliers, 0.0);
    else q.outlier_cols = torch::Tensor();
  }
  q.row_stats = std::get<0>(h.abs().max(1));
  // A row of zeros (or of outliers only) has absmax 0; bitsandbytes would divide by it. Its codes are 0 either way.
  // Python's `127.0 / t` is reciprocal(t) * 127 (Tensor.__rtruediv__), which can differ from a division by an ulp.
  torch::Tensor inv = q.row_stats.clamp_min(std::numeric_limits<float>::min()).reciprocal() * 127.0;
  q.codes = torch::round(h * inv.unsqueeze(-1)).to(torch::kInt8);
  if (q.outlier_cols.defined()) q.codes.index_put_({torch::indexing::Slice(), q.outlier_cols}, 0);
  return q;
}

torch::Tensor llm_int8_matmul(const torch::Tensor& x, const Quant8& w, double threshold, const torch::Tensor& bias) {
  const int64_t K = x.size(-1);
  if (K != w.shape[1]) throw ShapeError("LLM.int8: input has " + std::to_string(K) + " features, the weight " + std::to_string(w.shape[1]));
  std::vector<int64_t> out_shape = x.sizes().vec();
  out_shape.back() = w.shape[0];
  const torch::Tensor a = x.reshape({-1, K});
  Int8Activations qa = quantize_activations_int8(a, threshold);
  // int8_mm_dequant: int32 products times row scale x column scale / 127^2 (bitsandbytes' constant), in float32.
  torch::Tensor out = int8_matmul_exact(qa.codes, w.q).to(torch::kFloat32) *
                      (qa.row_stats.unsqueeze(-1) * w.scale.unsqueeze(0)) * 6.200124e-05;
  if (bias.defined()) out = out + bias.to(torch::kFloat32);
  out = out.to(x.scalar_type());
  if (qa.outlier_cols.defined()) {
    // The outlier columns in the input's own precision against those weight columns dequantized (int8 x scale / 127).
    torch::Tensor cols = qa.outlier_cols.nonzero().view({-1});
    torch::Tensor sub_a = a.index_select(1, cols);
    torch::Tensor sub_b = (w.q.index_select(1, cols).to(torch::kFloat32) * w.scale.view({-1, 1}) * 7.874015718698502e-3).to(x.scalar_type());
    out = out.addmm(sub_a, sub_b.t());
  }
  return out.view(out_shape);
}

}  // namespace th
