#include "quant.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "errors.h"
#include "small_gemm.h"

namespace th {
namespace {

// Tables are written as doubles and rounded to float32 at run time, exactly as bitsandbytes' torch backend builds
// them from Python floats (a decimal literal rounded straight to float can differ by one ulp, which moves ties).
const double kNF4[16] = {-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                         -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                         0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                         0.7229568362236023, 1.0};
// bitsandbytes' decision-tree pivots (the midpoints between neighbouring codes); x > pivot selects the upper code.
const double kNF4Mid[15] = {-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
                            -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
                            0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                            0.5016634166240692, 0.6427869200706482, 0.8614784181118011};
// FP4 in bit-pattern order (bit 3 = sign), /12.
const double kFP4Raw[16] = {0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3};
// FP4 magnitudes sorted, the code of each, and the pivots between them (CUDA dQuantizeFP4).
const int kFP4SortedCode[8] = {0, 1, 6, 7, 4, 5, 2, 3};
const double kFP4Mid[7] = {0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333};

torch::Tensor cpu_f32(const double* p, int64_t n) { return torch::from_blob(const_cast<double*>(p), {n}, torch::kFloat64).to(torch::kFloat32); }

}  // namespace

torch::Tensor code_table(QuantType type) {
  static const torch::Tensor nf4 = cpu_f32(kNF4, 16);
  static const torch::Tensor fp4 = cpu_f32(kFP4Raw, 16) / 12.0;
  return type == QuantType::NF4 ? nf4 : fp4;
}

// Tables per device, built once: dequantization runs at every forward.
torch::Tensor on_device(const torch::Tensor& cpu, torch::Device d) {
  if (d.is_cpu()) return cpu;
  static std::mutex m;
  static std::map<std::pair<const void*, std::string>, torch::Tensor> cache;
  std::lock_guard<std::mutex> lock(m);
  auto key = std::make_pair(static_cast<const void*>(cpu.unsafeGetTensorImpl()), d.str());
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, cpu.to(d)).first;
  return it->second;
}

torch::Tensor dynamic_map() {
  static const torch::Tensor map = [] {
  std::vector<torch::Tensor> parts;
  for (int i = 0; i < 7; ++i) {
    auto b = torch::linspace(0.1, 1.0, (1 << i) + 1, torch::kFloat32);
    auto means = (b.narrow(0, 0, b.size(0) - 1) + b.narrow(0, 1, b.size(0) - 1)) / 2.0;
    const double scale = std::pow(10.0, i - 6);
    parts.push_back(means * scale);
    parts.push_back(means * -scale);
  }
  parts.push_back(torch::zeros({1}, torch::kFloat32));
  parts.push_back(torch::ones({1}, torch::kFloat32));
  return std::get<0>(torch::cat(parts).sort());
  }();
  return map;
}

int64_t Quant4::bytes() const {
  int64_t n = packed.numel();
  if (nested) n += qabsmax.numel() + absmax2.numel() * 4 + 8;
  else n += absmax.numel() * 4;
  return n;
}

std::pair<torch::Tensor, torch::Tensor> quantize_blockwise_8bit(const torch::Tensor& x, int64_t blocksize) {
  auto flat = x.to(torch::kFloat32).reshape({-1});
  const int64_t n = flat.numel(), nb = (n + blocksize - 1) / blocksize;
  auto padded = torch::cat({flat, torch::zeros({nb * blocksize - n}, flat.options())}).view({nb, blocksize});
  auto absmax = padded.abs().amax(1);
  auto scaled = (padded / absmax.clamp_min(1e-38).unsqueeze(1)).clamp(-1, 1);
  auto code = on_device(dynamic_map(), x.device()).view({1, 1, -1});
  // Nearest code, ties to the lower index (argmin returns the first minimum). The distances to all 256 codes take
  // 1 KiB per value, so they are computed 64 blocks at a time (a 50257 x 768 table's 603K absmax values at once
  // took 1.2 GB).
  auto idx = torch::empty({nb, blocksize}, x.options().dtype(torch::kUInt8));
  const int64_t step = std::max<int64_t>(1, 16384 / blocksize);
  for (int64_t r = 0; r < nb; r += step) {
    const int64_t m = std::min(step, nb - r);
    idx.narrow(0, r, m).copy_((scaled.narrow(0, r, m).unsqueeze(-1) - code).abs().argmin(-1));
  }
  return {idx.reshape({-1}).narrow(0, 0, n), absmax};
}

Quant4 quantize_4bit(const torch::Tensor& w, QuantType type, int64_t blocksize, bool double_quant) {
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0) {
    throw ValueError("blocksize must be a power of two from 32 to 4096, got " + std::to_string(blocksize));
  }
  if (w.dim() != 2) throw ValueError("only 2-D weights are quantized");
  Quant4 q;
  q.type = type;
  q.blocksize = blocksize;
  q.shape = w.sizes().vec();
  torch::NoGradGuard no_grad;
  // Quantizing while loading runs this once per projection (and once for a quantized embedding table) with the
  // model's other weights in memory. Every step is per block, so it runs over chunks of about a million values: the
  // temporaries (a float copy, the scaled values, 4-byte codes) are a few MiB whatever the weight's size, and the
  // result is the same bit for bit as one pass over the whole weight (GPT-2's 50257 x 768 table in one pass took
  // 1.3 GB of temporaries).
  auto flat = w.detach().reshape({-1});
  const int64_t n = flat.numel(), nb = (n + blocksize - 1) / blocksize;
  q.packed = torch::empty({(n + 1) / 2}, w.options().dtype(torch::kUInt8));
  auto absmax = torch::empty({nb}, w.options().dtype(torch::kFloat32));
  const auto mids = (type == QuantType::NF4 ? cpu_f32(kNF4Mid, 15) : cpu_f32(kFP4Mid, 7)).to(w.device());
  const auto fp4_map = torch::tensor(std::vector<int64_t>(kFP4SortedCode, kFP4SortedCode + 8), torch::kLong).to(w.device());
  const int64_t chunk_blocks = std::max<int64_t>(1, (int64_t{1} << 20) / blocksize);
  for (int64_t b0 = 0; b0 < nb; b0 += chunk_blocks) {
    const int64_t b1 = std::min(nb, b0 + chunk_blocks), e0 = b0 * blocksize, len = std::min(n, b1 * blocksize) - e0;
    auto part = flat.narrow(0, e0, len).to(torch::kFloat32);
    const int64_t rows = b1 - b0;  // only the last chunk can need padding
    auto padded = rows * blocksize == len ? part.view({rows, blocksize})
                                          : torch::cat({part, torch::zeros({rows * blocksize - len}, part.options())}).view({rows, blocksize});
    auto am = padded.abs().amax(1);
    absmax.narrow(0, b0, rows).copy_(am);
    // bitsandbytes' default backend: x * (1 / absmax), clamped to [-1, 1]
    auto scaled = (padded * (1.0 / am.clamp_min(1e-38)).unsqueeze(1)).clamp_(-1, 1).reshape({-1}).narrow(0, 0, len);
    torch::Tensor codes;
    if (type == QuantType::NF4) {
      // bucketize(right=false) counts pivots strictly below x: x equal to a pivot takes the lower code, as bnb's `>`.
      codes = torch::bucketize(scaled, mids, /*out_int32=*/true);
    } else {
      codes = fp4_map.index_select(0, torch::bucketize(scaled.abs(), mids).reshape({-1})) + scaled.lt(0).to(torch::kLong) * 8;
    }
    codes = codes.to(torch::kUInt8);
    if (len % 2) codes = torch::cat({codes, torch::zeros({1}, codes.options())});  // e0 is even: blocksize >= 32
    auto pairs = codes.view({-1, 2});
    q.packed.narrow(0, e0 / 2, pairs.size(0)).copy_(pairs.select(1, 0).bitwise_left_shift(4).bitwise_or(pairs.select(1, 1)));
  }
  if (double_quant) {
    q.nested = true;
    q.offset = absmax.mean().item<double>();
    auto [qa, a2] = quantize_blockwise_8bit(absmax - q.offset, 256);
    q.qabsmax = qa;
    q.absmax2 = a2;
  } else {
    q.absmax = absmax;
  }
  return q;
}

torch::Tensor unpack_codes(const Quant4& q) {
  const int64_t n = q.shape[0] * q.shape[1];
  auto hi = q.packed.bitwise_right_shift(4), lo = q.packed.bitwise_and(15);
  return torch::stack({hi, lo}, 1).reshape({-1}).narrow(0, 0, n);
}

torch::Tensor block_absmax(const Quant4& q) {
  if (!q.nested) return q.absmax;
  auto code = on_device(dynamic_map(), q.qabsmax.device());
  const int64_t nb = q.qabsmax.numel(), m = q.absmax2.numel();
  auto scales = code.index_select(0, q.qabsmax.to(torch::kLong));
  // absmax2 per group of 256 blocks, broadcast without materialising an index per block
  auto padded = torch::cat({scales, torch::zeros({m * 256 - nb}, scales.options())}).view({m, 256});
  return (padded * q.absmax2.unsqueeze(1)).reshape({-1}).narrow(0, 0, nb) + q.offset;
}

torch::Tensor block_absmax(const Quant4& q, const torch::Tensor& blocks) {
  if (!q.nested) return q.absmax.index_select(0, blocks);
  auto code = on_device(dynamic_map(), q.qabsmax.device());
  return code.index_select(0, q.qabsmax.index_select(0, blocks).to(torch::kLong)) *
             q.absmax2.index_select(0, blocks.div(256, "floor")) +
         q.offset;
}

namespace {
// Both nibbles of a packed byte looked up at once: [256, 2] value pairs, indexed by the byte.
torch::Tensor byte_pairs(QuantType type, torch::Device device) {
  auto table = on_device(code_table(type), device);
  return torch::stack({table.repeat_interleave(16), table.repeat({16})}, 1);
}
}  // namespace

torch::Tensor dequantize_4bit(const Quant4& q, torch::ScalarType dtype) {
  const int64_t n = q.shape[0] * q.shape[1];
  auto values = byte_pairs(q.type, q.packed.device()).index_select(0, q.packed.to(torch::kLong)).reshape({-1});
  auto absmax = block_absmax(q);
  const int64_t nb = absmax.numel();
  if (values.numel() != nb * q.blocksize) {
    values = values.numel() > nb * q.blocksize ? values.narrow(0, 0, nb * q.blocksize)
                                                : torch::cat({values, torch::zeros({nb * q.blocksize - values.numel()}, values.options())});
  }
  auto w = values.view({nb, q.blocksize}).mul_(absmax.unsqueeze(1)).reshape({-1});
  if (w.numel() != n) w = w.narrow(0, 0, n);
  return w.view(q.shape).to(dtype);
}

namespace {

template <typename T>
void dequantize_rows_impl(const uint8_t* packed, const float* table, const float* absmax, int shift, int64_t in, int64_t r0,
                          int64_t r1, T* out) {
  // Rows in parallel (at least ~16K values per task); within a row, one block segment at a time with the 16 code
  // values pre-multiplied by that block's absmax: table[c] * absmax is the same single float product
  // dequantize_4bit computes, so the tile is bit-identical to the whole-weight result.
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(in, 1));
  at::parallel_for(r0, r1, grain, [&](int64_t a, int64_t b) {
    float lut[16];
    for (int64_t r = a; r < b; ++r) {
      T* o = out + (r - r0) * in;
      int64_t e = r * in;
      const int64_t end = e + in;
      while (e < end) {
        const int64_t block = e >> shift;
        const int64_t stop = std::min(end, (block + 1) << shift);
        const float s = absmax[block];
        for (int c = 0; c < 16; ++c) lut[c] = table[c] * s;
        if ((e & 1) && e < stop) {  // a row starting on a low nibble (odd `in`)
          *o++ = static_cast<T>(lut[packed[e >> 1] & 15]);
          ++e;
        }
        for (; e + 1 < stop; e += 2) {
          const uint8_t byte = packed[e >> 1];
          o[0] = static_cast<T>(lut[byte >> 4]);
          o[1] = static_cast<T>(lut[byte & 15]);
          o += 2;
        }
        if (e < stop) {  // a segment ending on a high nibble
          *o++ = static_cast<T>(lut[packed[e >> 1] >> 4]);
          ++e;
        }
      }
    }
  });
}

int64_t clamp_tile(int64_t tile_rows, int64_t out) { return std::max<int64_t>(1, std::min(tile_rows, out)); }

}  // namespace

void dequantize_4bit_rows(const Quant4& q, const torch::Tensor& absmax, int64_t r0, int64_t r1, torch::Tensor& out) {
  const int64_t rows = q.shape[0], in = q.shape[1];
  TORCH_CHECK(q.packed.device().is_cpu() && q.packed.is_contiguous() && q.packed.scalar_type() == torch::kUInt8,
              "dequantize_4bit_rows: packed codes must be contiguous uint8 on the CPU");
  TORCH_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows, "dequantize_4bit_rows: rows out of range");
  TORCH_CHECK(out.is_contiguous() && out.dim() == 2 && out.size(0) == r1 - r0 && out.size(1) == in,
              "dequantize_4bit_rows: output must be a contiguous [rows, in] tensor");
  TORCH_CHECK(absmax.scalar_type() == torch::kFloat32 && absmax.is_contiguous() && absmax.numel() * q.blocksize >= rows * in,
              "dequantize_4bit_rows: absmax must be block_absmax(q)");
  int shift = 0;
  while ((int64_t{1} << shift) < q.blocksize) ++shift;  // blocksize is a power of two (quantize_4bit checks)
  const float* table = code_table(q.type).data_ptr<float>();
  const uint8_t* packed = q.packed.data_ptr<uint8_t>();
  const float* am = absmax.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "dequantize_4bit_rows", [&] {
    dequantize_rows_impl<scalar_t>(packed, table, am, shift, in, r0, r1, out.data_ptr<scalar_t>());
  });
}

torch::Tensor linear_4bit(const torch::Tensor& x, const Quant4& q, const torch::Tensor& bias, int64_t tile_rows) {
  const int64_t out = q.shape[0], in = q.shape[1];
  TORCH_CHECK(x.size(-1) == in, "linear_4bit: input has ", x.size(-1), " features, the weight ", in);
  if (!q.packed.device().is_cpu()) return torch::linear(x, dequantize_4bit(q, x.scalar_type()), bias);
  torch::NoGradGuard no_grad;  // called from an autograd function's forward or without autograd
  auto sizes = x.sizes().vec();
  auto x2 = x.reshape({-1, in}).contiguous();
  sizes.back() = out;
  if (auto fused = linear_4bit_small(x2, q); fused.defined()) {  // a generation step's few rows (small_gemm.h)
    if (bias.defined()) fused.add_(bias);
    return fused.view(sizes);
  }
  auto absmax = block_absmax(q).contiguous();
  auto y = torch::empty({x2.size(0), out}, x.options());
  const int64_t tr = clamp_tile(tile_rows, out);
  auto buf = torch::empty({tr, in}, x.options());
  for (int64_t r0 = 0; r0 < out; r0 += tr) {
    const int64_t r1 = std::min(out, r0 + tr);
    auto w = buf.narrow(0, 0, r1 - r0);
    dequantize_4bit_rows(q, absmax, r0, r1, w);
    // The column slice has row stride `out`: BLAS writes it in place (a transposed, leading-dimension-`out` result).
    auto yt = y.narrow(1, r0, r1 - r0);
    at::mm_out(yt, x2, w.t());
  }
  if (bias.defined()) y.add_(bias);
  return y.view(sizes);
}

torch::Tensor linear_4bit_grad_input(const torch::Tensor& g, const Quant4& q, int64_t tile_rows) {
  const int64_t out = q.shape[0], in = q.shape[1];
  TORCH_CHECK(g.size(-1) == out, "linear_4bit_grad_input: gradient has ", g.size(-1), " features, the weight ", out);
  if (!q.packed.device().is_cpu()) return torch::matmul(g, dequantize_4bit(q, g.scalar_type()));
  torch::NoGradGuard no_grad;
  auto sizes = g.sizes().vec();
  auto g2 = g.reshape({-1, out});
  sizes.back() = in;
  auto absmax = block_absmax(q).contiguous();
  const int64_t tr = clamp_tile(tile_rows, out);
  auto buf = torch::empty({tr, in}, g.options());
  // float32 accumulates in place; reduced precisions sum the tiles' products in float32 so that the result does not
  // carry one rounding per tile.
  const bool f32 = g.scalar_type() == torch::kFloat32;
  torch::Tensor acc;
  for (int64_t r0 = 0; r0 < out; r0 += tr) {
    const int64_t r1 = std::min(out, r0 + tr);
    auto w = buf.narrow(0, 0, r1 - r0);
    dequantize_4bit_rows(q, absmax, r0, r1, w);
    auto gt = g2.narrow(1, r0, r1 - r0);
    if (!acc.defined()) {
      acc = torch::mm(gt, w);
      if (!f32) acc = acc.to(torch::kFloat32);
    } else if (f32) {
      acc.addmm_(gt, w);
    } else {
      acc.add_(torch::mm(gt, w));
    }
  }
  return acc.to(g.scalar_type()).view(sizes);
}

torch::Tensor embedding_4bit(const Quant4& q, const torch::Tensor& ids, torch::ScalarType dtype) {
  const int64_t V = q.shape[0], H = q.shape[1];
  torch::NoGradGuard no_grad;
  auto out_sizes = ids.sizes().vec();
  out_sizes.push_back(H);
  // Blocks that straddle rows (H not a multiple of the blocksize; no real model has that): the whole table.
  if (H % q.blocksize != 0) return torch::embedding(dequantize_4bit(q, dtype), ids);
  auto flat = ids.reshape({-1});
  const int64_t n = flat.numel(), per_row = H / q.blocksize;  // blocks per row; blocksize is even, so rows start on a byte
  auto bytes = q.packed.narrow(0, 0, V * H / 2).view({V, H / 2}).index_select(0, flat);
  auto values = byte_pairs(q.type, q.packed.device()).index_select(0, bytes.reshape({-1}).to(torch::kLong)).view({n, per_row, q.blocksize});
  auto blocks = (flat.unsqueeze(1) * per_row + torch::arange(per_row, flat.options())).reshape({-1});
  return values.mul_(block_absmax(q, blocks).view({n, per_row, 1})).view(out_sizes).to(dtype);
}

Quant8 quantize_8bit(const torch::Tensor& w) {
  torch::NoGradGuard no_grad;
  Quant8 q;
  q.shape = w.sizes().vec();
  // bitsandbytes' Int8Params quantize the float16 weight (int8_vectorwise_quant(B.half())): round through it first.
  auto f = w.detach().to(torch::kHalf).to(torch::kFloat32);
  q.scale = f.abs().amax(1);
  // 127 / absmax as Python's `127.0 / t` computes it (reciprocal, then times 127), so codes match bitsandbytes' ties.
  q.q = (f * (q.scale.clamp_min(1e-38).reciprocal() * 127.0).unsqueeze(1)).round().clamp(-127, 127).to(torch::kInt8);
  return q;
}

torch::Tensor dequantize_8bit(const Quant8& q, torch::ScalarType dtype) {
  return (q.q.to(torch::kFloat32) * (q.scale / 127.0).unsqueeze(1)).to(dtype);
}

}  // namespace th
