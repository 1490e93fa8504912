#!/usr/bin/env python3
"""Reference 4-bit quantization written from the bitsandbytes spec (reference/formats.md section 3), independently
of the native code: NF4 by counting the pivots strictly below x (ties go to the lower code), FP4 by the CUDA decision
tree, high nibble first, double quantization with the 8-bit signed dynamic map. Writes <out>/quant-ref.safetensors."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchscript import write_reference  # noqa: E402

NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
       -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
       0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
       0.7229568362236023, 1.0]
NF4_MID = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
           -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
           0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
           0.5016634166240692, 0.6427869200706482, 0.8614784181118011]
FP4 = [v / 12 for v in [0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3]]


def dynamic_map():
    data = []
    for i in range(7):
        b = torch.linspace(0.1, 1, 2 ** i + 1, dtype=torch.float32)
        means = (b[:-1] + b[1:]) / 2.0
        data += ((10 ** (-6 + i)) * means).tolist()
        data += (-(10 ** (-6 + i)) * means).tolist()
    data += [0, 1.0]
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


def fp4_code(x):
    a = x.abs()
    c = torch.where(a > 0.29166667,
                    torch.where(a > 0.583333, torch.where(a > 0.8333333, 3, 2), torch.where(a > 0.4166667, 5, 4)),
                    torch.where(a > 0.0859375, torch.where(a > 0.20833333, 7, 6), torch.where(a > 0.00260417, 1, 0)))
    return c + (x < 0).long() * 8


def quantize(w, kind, blocksize, dq):
    flat = w.float().reshape(-1)
    n = flat.numel()
    nb = (n + blocksize - 1) // blocksize
    blocks = torch.cat([flat, flat.new_zeros(nb * blocksize - n)]).view(nb, blocksize)
    absmax = blocks.abs().max(1).values
    x = (blocks * (1 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp(-1, 1).reshape(-1)[:n]
    if kind == "nf4":
        codes = (x.unsqueeze(-1) > torch.tensor(NF4_MID)).sum(-1)
    else:
        codes = fp4_code(x)
    c = torch.cat([codes, codes.new_zeros(n % 2)])
    packed = c[0::2] * 16 + c[1::2]
    out = {"codes": codes, "packed": packed, "absmax": absmax}
    used = absmax
    if dq:
        offset = absmax.mean()
        a = absmax - offset
        m = (a.numel() + 255) // 256
        ab = torch.cat([a, a.new_zeros(m * 256 - a.numel())]).view(m, 256)
        absmax2 = ab.abs().max(1).values
        # a block of identical scales (e.g. a single block) has absmax2 = 0: code 0.0, not 0/0
        scaled = (ab / absmax2.clamp(min=1e-38).unsqueeze(1)).clamp(-1, 1).reshape(-1)[: a.numel()]
        dm = dynamic_map()
        q = (scaled.unsqueeze(-1) - dm).abs().argmin(-1)
        used = dm[q] * absmax2[torch.arange(a.numel()) // 256] + offset
        out.update({"qabsmax": q, "absmax2": absmax2, "offset": offset.reshape(1), "absmax_dq": used})
    table = torch.tensor(NF4 if kind == "nf4" else FP4)
    vals = torch.cat([table[codes], table.new_zeros(nb * blocksize - n)]).view(nb, blocksize)
    out["dequant"] = (vals * used.unsqueeze(1)).reshape(-1)[:n].view(w.shape)
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    g = torch.Generator().manual_seed(123)
    w = torch.randn(40, 130, generator=g)  # 5200 values: 81.25 blocks of 64, so a partial last block
    # ties: a block scaled by exactly 1 (its absmax is 1.0) holding every pivot value and the code values
    w[0, :64] = 0.0
    w[0, 0] = 1.0
    w[0, 1:16] = torch.tensor(NF4_MID)
    w[0, 16:31] = torch.tensor(NF4[:15])
    w[1, 60:64] = 0.0  # a block boundary inside a row
    odd = torch.randn(7, 9, generator=g)  # odd number of elements: padded nibble
    big = torch.randn(300, 256, generator=g)  # 1200 blocks: more than 256 absmax values for double quantization
    tensors = {"w": w, "odd": odd, "big": big, "dynamic_map": dynamic_map()}
    for name, t in [("w", w), ("odd", odd), ("big", big)]:
        for kind in ("nf4", "fp4"):
            for dq in (False, True):
                r = quantize(t, kind, 64, dq)
                for k, v in r.items():
                    tensors[f"{name}.{kind}.{'dq' if dq else 'plain'}.{k}"] = v.float() if v.is_floating_point() else v.long()
    write_reference(os.path.join(out, "quant-ref.safetensors"), tensors)


if __name__ == "__main__":
    main()
