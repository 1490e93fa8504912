#!/usr/bin/env python3
"""Writes the 1.1B-parameter Llama-shaped model with random weights that bench/qlora-memory.mjs trains.

TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads / 4 KV heads, intermediate 5632, vocab 32000, untied LM head),
written straight as a Hugging Face folder: config.json + model.safetensors in float16 (2.2 GB; a float32 TorchScript
archive would be 4.4 GB and slow to write on 2 cores). One tensor is generated and written at a time, so this script
never holds more than the largest tensor (the 32000 x 2048 embedding).

Weights as Hugging Face initialises a LlamaForCausalLM (normal, std initializer_range = 0.02; norms 1), so activations
and losses are of a trained model's order. The bench only measures memory and speed: the values do not matter beyond
staying finite.

Usage: /usr/bin/python3 scripts/make_bench_llama_1b.py OUT_DIR   (skips the work when OUT_DIR already holds this model)
"""
import json
import os
import struct
import sys
import time

import torch

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "torch_dtype": "float16",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def tensors(c):
    """(name, shape, kind) in Hugging Face's order; kind 'w' = normal(0, 0.02), 'n' = ones (RMSNorm)."""
    H, I, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = H // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * hd
    yield "model.embed_tokens.weight", (V, H), "w"
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        yield p + "self_attn.q_proj.weight", (H, H), "w"
        yield p + "self_attn.k_proj.weight", (kv, H), "w"
        yield p + "self_attn.v_proj.weight", (kv, H), "w"
        yield p + "self_attn.o_proj.weight", (H, H), "w"
        yield p + "mlp.gate_proj.weight", (I, H), "w"
        yield p + "mlp.up_proj.weight", (I, H), "w"
        yield p + "mlp.down_proj.weight", (H, I), "w"
        yield p + "input_layernorm.weight", (H,), "n"
        yield p + "post_attention_layernorm.weight", (H,), "n"
    yield "model.norm.weight", (H,), "n"
    yield "lm_head.weight", (V, H), "w"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cfg_path, st_path = os.path.join(out, "config.json"), os.path.join(out, "model.safetensors")
    cfg_text = json.dumps(CONFIG, indent=2) + "\n"
    if os.path.exists(st_path) and os.path.exists(cfg_path) and open(cfg_path).read() == cfg_text:
        print(f"{out}: already there", file=sys.stderr)
        return
    t0 = time.time()
    specs = list(tensors(CONFIG))
    header, offset = {}, 0
    for name, shape, _ in specs:
        n = 2 * torch.Size(shape).numel()
        header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data buffer starts 8-byte aligned, as the reference writer does
    gen = torch.Generator().manual_seed(0)
    tmp = st_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape, kind in specs:
            if kind == "n":
                t = torch.ones(shape, dtype=torch.float16)
            else:
                t = (torch.randn(shape, generator=gen) * CONFIG["initializer_range"]).to(torch.float16)
            f.write(t.numpy().tobytes())
    os.replace(tmp, st_path)
    with open(cfg_path, "w") as f:
        f.write(cfg_text)
    n = sum(torch.Size(s).numel() for _, s, _ in specs)
    print(f"{out}: {n / 1e9:.3f}B parameters, {offset / 2**30:.2f} GiB float16, {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
