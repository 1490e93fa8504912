#include "quant.h"

#include <cmath>
#include <map>
#include <mutex>

#include "errors.h"

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
  auto code = on_device(dynamic_map(), x.device());
  // nearest code, ties to the lower index (argmin returns the first minimum)
  auto idx = (scaled.unsqueeze(-1) - code.view({1, 1, -1})).abs().argmin(-1);
  return {idx.reshape({-1}).narrow(0, 0, n).to(torch::kUInt8), absmax};
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
  auto flat = w.detach().to(torch::kFloat32).reshape({-1});
  const int64_t n = flat.numel(), nb = (n + blocksize - 1) / blocksize;
  auto padded = torch::cat({flat, torch::zeros({nb * blocksize - n}, flat.options())}).view({nb, blocksize});
  auto absmax = padded.abs().amax(1);
  // bitsandbytes' default backend: x * (1 / absmax), clamped to [-1, 1]
  auto scaled = (padded * (1.0 / absmax.clamp_min(1e-38)).unsqueeze(1)).clamp(-1, 1).reshape({-1});
  torch::Tensor codes;
  if (type == QuantType::NF4) {
    // bucketize(right=false) counts pivots strictly below x: x equal to a pivot takes the lower code, as bnb's `>`.
    codes = torch::bucketize(scaled, cpu_f32(kNF4Mid, 15).to(w.device()));
  } else {
    auto mag = torch::bucketize(scaled.abs(), cpu_f32(kFP4Mid, 7).to(w.device()));
    auto map = torch::tensor(std::vector<int64_t>(kFP4SortedCode, kFP4SortedCode + 8), torch::kLong).to(w.device());
    codes = map.index_select(0, mag.reshape({-1})) + scaled.lt(0).to(torch::kLong) * 8;
  }
  codes = codes.narrow(0, 0, n).to(torch::kUInt8);
  if (n % 2) codes = torch::cat({codes, torch::zeros({1}, codes.options())});
  auto pairs = codes.view({-1, 2});
  q.packed = (pairs.select(1, 0).bitwise_left_shift(4)).bitwise_or(pairs.select(1, 1)).contiguous();
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

torch::Tensor dequantize_4bit(const Quant4& q, torch::ScalarType dtype) {
  const int64_t n = q.shape[0] * q.shape[1];
  auto table = on_device(code_table(q.type), q.packed.device());
  // Look up both nibbles of each byte at once: a [256, 2] table of value pairs.
  auto pairs = torch::stack({table.repeat_interleave(16), table.repeat({16})}, 1);
  auto values = pairs.index_select(0, q.packed.to(torch::kLong)).reshape({-1});
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
