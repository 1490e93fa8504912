// Weight quantization as bitsandbytes does it (reference/formats.md section 3): blockwise 4-bit NF4 / FP4 with fp32
// absmax per block (first element in the high nibble), optional double quantization of the absmax (mean offset,
// blocks of 256, the 8-bit signed dynamic map), and 8-bit row-wise absmax.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace th {

enum class QuantType { NF4, FP4 };

// The 16 code values, indexed by the 4-bit code.
torch::Tensor code_table(QuantType type);
// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted values.
torch::Tensor dynamic_map();

struct Quant4 {
  QuantType type = QuantType::NF4;
  int64_t blocksize = 64;
  std::vector<int64_t> shape;  // of the original weight, [out, in]
  torch::Tensor packed;        // uint8 [(numel + 1) / 2]: byte j = code[2j] << 4 | code[2j + 1]
  torch::Tensor absmax;        // fp32 [nblocks] (empty with double quantization)
  bool nested = false;         // double quantization
  torch::Tensor qabsmax;       // uint8 [nblocks]: dynamic-map codes of absmax - offset
  torch::Tensor absmax2;       // fp32 [ceil(nblocks / 256)]
  double offset = 0.0;
  int64_t bytes() const;
};

// Quantizes a 2-D float weight (any device). Throws ValueError for a bad blocksize.
Quant4 quantize_4bit(const torch::Tensor& w, QuantType type, int64_t blocksize = 64, bool double_quant = false);
// The 4-bit codes (unpacked, uint8, one per element) and per-block absmax actually used (after double quantization).
torch::Tensor unpack_codes(const Quant4& q);
torch::Tensor block_absmax(const Quant4& q);
// The same for the blocks listed (int64 indices), computing only those.
torch::Tensor block_absmax(const Quant4& q, const torch::Tensor& blocks);
torch::Tensor dequantize_4bit(const Quant4& q, torch::ScalarType dtype);

// Tiled 4-bit projections (CPU): the weight is dequantized `tile_rows` output rows at a time straight from the packed
// bytes into one buffer reused across tiles, so a projection's transient memory is tile_rows x in values instead of
// its whole weight (plus the int64 and float copies the whole-weight path makes). Each tile is bit-identical to the
// same rows of dequantize_4bit; only the summation order of the grad-input differs (accumulated tile by tile).
// kQuantTileRows: measured on the quiet 2-core machine (test_quant.cpp "bench: 4-bit tile rows", docs/benchmarks.md):
// from 256 rows up the tiles are within 10% of the whole-weight product, below 128 the per-tile overhead shows. 512
// rows were 5-8% faster in that microbenchmark but not in the NF4 LoRA step (2,578-2,846 ms vs 2,520-2,650 at 256),
// so 256 stays: the smaller buffer (0.75-2 MiB).
constexpr int64_t kQuantTileRows = 256;
// Rows [r0, r1) of the dequantized weight into `out` ([r1 - r0, in], contiguous, float32 / bfloat16 / float16);
// `absmax` is block_absmax(q) (fp32, CPU), passed in so that a call over many tiles computes it once.
void dequantize_4bit_rows(const Quant4& q, const torch::Tensor& absmax, int64_t r0, int64_t r1, torch::Tensor& out);
// y = x W^T + bias for x [..., in] in the compute dtype (bias may be undefined). Runs on any device: CUDA (where a
// whole-weight dequantization is fast and the memory is not the constraint) keeps the dense path.
torch::Tensor linear_4bit(const torch::Tensor& x, const Quant4& q, const torch::Tensor& bias, int64_t tile_rows = kQuantTileRows);
// dL/dx = g W for g [..., out]: accumulated over the same row tiles.
torch::Tensor linear_4bit_grad_input(const torch::Tensor& g, const Quant4& q, int64_t tile_rows = kQuantTileRows);
// Rows `ids` (int64, any shape, on the table's device) of a quantized [V, H] table, dequantized to `dtype`:
// [..., H], bit-identical to dequantize_4bit(q).index_select(0, ids). Only the selected rows' codes and block scales
// are read (as bitsandbytes' Embedding4bit), so a lookup costs the rows, not the table.
torch::Tensor embedding_4bit(const Quant4& q, const torch::Tensor& ids, torch::ScalarType dtype);

// 8-bit blockwise quantization with the dynamic map (used for the double-quantized absmax): nearest code, ties low.
std::pair<torch::Tensor, torch::Tensor> quantize_blockwise_8bit(const torch::Tensor& x, int64_t blocksize);

struct Quant8 {
  std::vector<int64_t> shape;
  torch::Tensor q;      // int8 [out, in]
  torch::Tensor scale;  // fp32 [out]: absmax of each row
  int64_t bytes() const { return q.numel() + scale.numel() * 4; }
};
Quant8 quantize_8bit(const torch::Tensor& w);
torch::Tensor dequantize_8bit(const Quant8& q, torch::ScalarType dtype);

// LLM.int8() (llm_int8.cpp, docs/formats-llm-int8.md): bitsandbytes' default threshold for outlier features.
constexpr double kLlmInt8Threshold = 6.0;

// Activations [rows, K] quantized as bitsandbytes' int8_vectorwise_quant(A.half(), threshold): entries with
// |a| >= threshold (threshold > 0) are outliers; their columns are left out of the int8 codes (set to 0) and of the
// row absmax; codes = round(a * 127 / row absmax).
struct Int8Activations {
  torch::Tensor codes;         // int8 [rows, K]
  torch::Tensor row_stats;     // float32 [rows]
  torch::Tensor outlier_cols;  // bool [K], or undefined when there is none
};
Int8Activations quantize_activations_int8(const torch::Tensor& a, double threshold);
// y = x W^T + bias with LLM.int8(): the non-outlier columns as an exact int8 product dequantized with the row and
// column scales, the outlier columns in x's dtype against the dequantized weight columns. threshold 0: no outlier
// decomposition (every column in int8), bitsandbytes' meaning of llm_int8_threshold=0. x [..., K], result [..., out].
torch::Tensor llm_int8_matmul(const torch::Tensor& x, const Quant8& w, double threshold, const torch::Tensor& bias);

}  // namespace th
