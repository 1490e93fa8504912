#!/usr/bin/env python3
"""Export a GPT-2 / Llama-family causal LM as a TorchScript archive that transformer-heads (Node) loads.

Archive contract (what native/core/checkpoint.cpp relies on):
  * parameters and buffers keep their Hugging Face state-dict names
    (GPT-2: transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ...;
     Llama: model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight, ..., lm_head.weight);
  * forward(input_ids: int64[B,T], attention_mask: int64[B,T]) -> (logits[B,T,V], hidden_states)
    where hidden_states holds L+1 tensors [B,T,H] with Hugging Face `output_hidden_states` indexing
    (0 = embeddings, i = output of block i, L = final-norm output);
  * position ids come from the mask as Hugging Face generation derives them: cumsum(mask) - 1, and 1 at padding;
    an optional third argument position_ids replaces them (as Hugging Face's forward takes them);
  * extra files: config.json (the HF config), tokenizer.json and tokenizer_config.json when there are any.

Two modes:
  --hf NAME_OR_DIR   export a real model with Python `transformers` (traced);
  --tiny gpt2|llama  build the pure-PyTorch reference below (HF names, HF eager numerics, random weights
                     from --seed) and script it. This needs only torch, so Debian's python3-torch can make the
                     test fixtures. --dump-reference writes the eager module's outputs on a fixed padded batch,
                     a second reference next to the archive's own forward; its sequential.* entries are the same
                     batch with position_ids=None semantics (0..T-1 in every row, the Python transformer-heads
                     library's forward).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------------
# Shared helpers (mirroring transformers 4.37 eager code paths)
# --------------------------------------------------------------------------------------------------

def dtype_min(dt: torch.dtype) -> float:
    # torch.finfo(dt).min, spelled out because TorchScript cannot call torch.finfo
    if dt == torch.float16:
        return -65504.0
    if dt == torch.bfloat16:
        return -3.3895313892515355e+38
    return -3.4028234663852886e+38


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    # HF generate(): position_ids = attention_mask.long().cumsum(-1) - 1; masked_fill_(attention_mask == 0, 1)
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


class GPT2Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.split = n_embd
        # HF Conv1D keeps the weight as [in, out]; y = x @ W + b
        self.c_attn = Conv1D(3 * n_embd, n_embd)
        self.c_proj = Conv1D(n_embd, n_embd)

    def forward(self, x: torch.Tensor, add_mask: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.c_attn(x)
        q, k, v = qkv.split(self.split, dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).permute(0, 2, 1, 3)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, self.head_dim).permute(0, 2, 1, 3)
        v = v.view(B, T, self.n_head, self.head_dim).permute(0, 2, 1, 3)
        w = torch.matmul(q, k.transpose(-1, -2)) / (float(self.head_dim) ** 0.5)
        mask_value = dtype_min(w.dtype)
        w = torch.where(causal, w, torch.full_like(w, mask_value))
        w = w + add_mask
        w = torch.softmax(w, dim=-1).to(v.dtype)
        y = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(B, T, C)
        return self.c_proj(y)


class Conv1D(nn.Module):
    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = list(x.shape[:-1]) + [self.weight.shape[1]]
        y = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return y.view(size_out)


class GPT2MLP(nn.Module):
    def __init__(self, n_embd: int, n_inner: int):
        super().__init__()
        self.c_fc = Conv1D(n_inner, n_embd)
        self.c_proj = Conv1D(n_embd, n_inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        # gelu_new (HF NewGELUActivation), written out rather than F.gelu(tanh) so it is an independent formula
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.c_proj(h)


class GPT2Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, n_inner: int, eps: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=eps)
        self.attn = GPT2Attention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=eps)
        self.mlp = GPT2MLP(n_embd, n_inner)

    def forward(self, x: torch.Tensor, add_mask: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), add_mask, causal)
        return x + self.mlp(self.ln_2(x))


class GPT2Model(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        n_embd = cfg["n_embd"]
        n_inner = cfg.get("n_inner") or 4 * n_embd
        self.wte = nn.Embedding(cfg["vocab_size"], n_embd)
        self.wpe = nn.Embedding(cfg["n_positions"], n_embd)
        self.h = nn.ModuleList([GPT2Block(n_embd, cfg["n_head"], n_inner, cfg["layer_norm_epsilon"])
                                for _ in range(cfg["n_layer"])])
        self.ln_f = nn.LayerNorm(n_embd, eps=cfg["layer_norm_epsilon"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        B, T = input_ids.shape
        pos = positions_from_mask(attention_mask) if position_ids is None else position_ids
        x = self.wte(input_ids) + self.wpe(pos)
        dtype = x.dtype
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device)).view(1, 1, T, T)
        add_mask = (1.0 - attention_mask.to(dtype)).view(B, 1, 1, T) * dtype_min(dtype)
        hs: List[torch.Tensor] = []
        for block in self.h:
            hs.append(x)
            x = block(x, add_mask, causal)
        hs.append(self.ln_f(x))
        return hs


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.transformer = GPT2Model(cfg)
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        hs = self.transformer(input_ids, attention_mask, position_ids)
        return self.lm_head(hs[-1]), hs


# ---------------------------------------------------------------------------------- Llama family

def rope_inv_freq(cfg: dict, head_dim: int) -> Tuple[torch.Tensor, str, float]:
    """HF modeling_rope_utils defaults: returns (inv_freq, rope_type, factor) for the static part."""
    theta = float(cfg.get("rope_theta", 10000.0))
    dim = int(head_dim * float(cfg.get("partial_rotary_factor", 1.0)))
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.get("rope_scaling") or {}
    rtype = rs.get("rope_type", rs.get("type", "default"))
    factor = float(rs.get("factor", 1.0))
    if rtype == "linear":
        inv = inv / factor
    elif rtype == "llama3":
        low = float(rs.get("low_freq_factor", 1.0))
        high = float(rs.get("high_freq_factor", 4.0))
        orig = float(rs.get("original_max_position_embeddings", 8192))
        low_wavelen = orig / low
        high_wavelen = orig / high
        wavelen = 2 * math.pi / inv
        inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (orig / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
        is_medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        inv = torch.where(is_medium, smoothed, inv_l)
    elif rtype not in ("default", "dynamic"):
        raise SystemExit(f"rope_scaling type {rtype!r} is not supported by this exporter")
    return inv, rtype, factor


class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        h = x.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(dt)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


class LlamaAttention(nn.Module):
    def __init__(self, cfg: dict, qkv_bias: bool, o_bias: bool):
        super().__init__()
        H = cfg["hidden_size"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg.get("num_key_value_heads") or self.nh
        self.hd = cfg.get("head_dim") or H // self.nh
        self.q_proj = nn.Linear(H, self.nh * self.hd, bias=qkv_bias)
        self.k_proj = nn.Linear(H, self.nkv * self.hd, bias=qkv_bias)
        self.v_proj = nn.Linear(H, self.nkv * self.hd, bias=qkv_bias)
        self.o_proj = nn.Linear(self.nh * self.hd, H, bias=o_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, add_mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        c = cos.unsqueeze(1)
        s = sin.unsqueeze(1)
        q = q * c + rotate_half(q) * s
        k = k * c + rotate_half(k) * s
        rep = self.nh // self.nkv
        # repeat_kv: query head h reads kv head h // rep
        k = k[:, :, None, :, :].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        v = v[:, :, None, :, :].expand(B, self.nkv, rep, T, self.hd).reshape(B, self.nh, T, self.hd)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd)
        w = w + add_mask
        w = torch.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        y = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(B, T, self.nh * self.hd)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, H: int, I: int, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(H, I, bias=bias)
        self.up_proj = nn.Linear(H, I, bias=bias)
        self.down_proj = nn.Linear(I, H, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, cfg: dict, qkv_bias: bool, o_bias: bool):
        super().__init__()
        H = cfg["hidden_size"]
        self.input_layernorm = RMSNorm(H, cfg["rms_norm_eps"])
        self.self_attn = LlamaAttention(cfg, qkv_bias, o_bias)
        self.post_attention_layernorm = RMSNorm(H, cfg["rms_norm_eps"])
        self.mlp = LlamaMLP(H, cfg["intermediate_size"], bool(cfg.get("mlp_bias", False)))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, add_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, add_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        mt = cfg["model_type"]
        qkv_bias = mt == "qwen2" or bool(cfg.get("attention_bias", False))
        o_bias = mt != "qwen2" and bool(cfg.get("attention_bias", False))
        H = cfg["hidden_size"]
        nh = cfg["num_attention_heads"]
        hd = cfg.get("head_dim") or H // nh
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], H)
        self.layers = nn.ModuleList([LlamaLayer(cfg, qkv_bias, o_bias) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(H, cfg["rms_norm_eps"])
        inv, rtype, factor = rope_inv_freq(cfg, hd)
        self.register_buffer("inv_freq", inv, persistent=False)
        self.dynamic = rtype == "dynamic"
        self.factor = factor
        self.rope_dim = inv.numel() * 2
        self.theta = float(cfg.get("rope_theta", 10000.0))
        self.max_pos = int(cfg.get("max_position_embeddings", 2048))
        # sliding window per layer (0 = none): Mistral uses it everywhere, Qwen2 from max_window_layers on
        sw = cfg.get("sliding_window")
        if mt == "qwen2" and not cfg.get("use_sliding_window", False):
            sw = None
        mwl = int(cfg.get("max_window_layers", 0)) if mt == "qwen2" else 0
        self.windows: List[int] = [int(sw) if (sw and i >= mwl) else 0 for i in range(cfg["num_hidden_layers"])]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        B, T = input_ids.shape
        pos = positions_from_mask(attention_mask) if position_ids is None else position_ids
        x = self.embed_tokens(input_ids)
        inv = self.inv_freq
        if self.dynamic:
            seq_len = int(pos.max().item()) + 1
            if seq_len > self.max_pos:
                base = self.theta * ((self.factor * seq_len / self.max_pos) - (self.factor - 1)) ** (
                    self.rope_dim / (self.rope_dim - 2))
                inv = 1.0 / (base ** (torch.arange(0, self.rope_dim, 2, dtype=torch.int64, device=x.device).float()
                                      / self.rope_dim))
        freqs = pos[:, :, None].float() * inv[None, None, :].float()
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos().to(x.dtype)
        sin = emb.sin().to(x.dtype)
        i = torch.arange(T, device=x.device).view(T, 1)
        j = torch.arange(T, device=x.device).view(1, T)
        keep = (j <= i).view(1, 1, T, T) & (attention_mask.view(B, 1, 1, T) != 0)
        minv = dtype_min(x.dtype)
        hs: List[torch.Tensor] = []
        for li, layer in enumerate(self.layers):
            hs.append(x)
            k = keep
            w = self.windows[li]
            if w > 0:
                k = k & (j > i - w).view(1, 1, T, T)
            add_mask = torch.zeros(B, 1, T, T, dtype=x.dtype, device=x.device).masked_fill(~k, minv)
            x = layer(x, cos, sin, add_mask)
        hs.append(self.norm(x))
        return hs


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.model = LlamaModel(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        if cfg.get("tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        hs = self.model(input_ids, attention_mask, position_ids)
        return self.lm_head(hs[-1]), hs


# --------------------------------------------------------------------------------------------------
# Tiny configs
# --------------------------------------------------------------------------------------------------

def tiny_config(a: argparse.Namespace) -> dict:
    if a.tiny == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "vocab_size": a.vocab, "n_positions": a.max_pos, "n_embd": a.hidden, "n_layer": a.layers,
            "n_head": a.heads, "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
            "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "initializer_range": 0.02,
            "bos_token_id": a.vocab - 1, "eos_token_id": a.vocab - 1, "tie_word_embeddings": True,
            "scale_attn_weights": True, "torch_dtype": "float32",
        }
    mt = a.model_type or "llama"
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                           "qwen2": "Qwen2ForCausalLM"}[mt]],
        "model_type": mt, "vocab_size": a.vocab, "hidden_size": a.hidden,
        "intermediate_size": a.intermediate or 2 * a.hidden + a.hidden // 2,
        "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads or a.heads, "max_position_embeddings": a.max_pos,
        "rms_norm_eps": 1e-6, "rope_theta": a.rope_theta, "hidden_act": "silu",
        "attention_bias": bool(a.attention_bias), "mlp_bias": False,
        "tie_word_embeddings": bool(a.tie), "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
    }
    if a.rope_scaling:
        cfg["rope_scaling"] = json.loads(a.rope_scaling)
    if mt == "mistral":
        cfg["sliding_window"] = a.sliding_window
    if mt == "qwen2":
        cfg["use_sliding_window"] = a.sliding_window is not None
        cfg["sliding_window"] = a.sliding_window
        cfg["max_window_layers"] = a.max_window_layers
    return cfg


def init_weights(model: nn.Module, seed: int, std: float) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight") or ".ln_" in name \
                    or name.startswith("transformer.ln_f"):
                # norms: around 1 (not exactly 1, so a swapped or missing norm weight shows in the parity tests)
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * torch.randn(p.shape, generator=g))


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

def reference_batch(vocab: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A padded batch: row 0 full, row 1 right-padded, row 2 left-padded (the cases the native code must handle)."""
    g = torch.Generator().manual_seed(seed + 1)
    B, T = 3, 11
    ids = torch.randint(0, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.int64)
    mask[1, 7:] = 0
    mask[2, :4] = 0
    ids[1, 7:] = 0
    ids[2, :4] = 0
    return ids, mask


def write_reference(path: str, tensors: Dict[str, torch.Tensor]) -> None:
    """A minimal safetensors file (the format is simple enough to write by hand; keeps fixtures dependency-free)."""
    header: Dict[str, dict] = {}
    blobs: List[bytes] = []
    off = 0
    dt = {torch.float32: "F32", torch.int64: "I64"}
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        b = t.numpy().tobytes()
        header[k] = {"dtype": dt[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def export_tiny(a: argparse.Namespace) -> None:
    cfg = tiny_config(a)
    torch.manual_seed(a.seed)
    model = GPT2LMHeadModel(cfg) if cfg["model_type"] == "gpt2" else LlamaForCausalLM(cfg)
    init_weights(model, a.seed, a.init_std)
    model.eval()
    scripted = torch.jit.script(model)
    extra = {"config.json": json.dumps(cfg, indent=2)}
    extra.update(tokenizer_files(a.tokenizer_dir))
    save_archive(scripted, a.out, extra)
    if a.dump_reference:
        ids, mask = reference_batch(cfg["vocab_size"], a.seed)
        with torch.no_grad():
            logits, hs = model(ids, mask)
        t = {"input_ids": ids, "attention_mask": mask, "logits": logits}
        for i, h in enumerate(hs):
            t[f"hidden_states.{i}"] = h
        # A Hugging Face forward with position_ids=None: positions 0..T-1 in every row, padding rows included; the
        # masks are unchanged (transformers' eager attention, including its rows that see only padding).
        with torch.no_grad():
            seq = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
            logits, hs = model(ids, mask, seq)
        t["sequential.logits"] = logits
        for i, h in enumerate(hs):
            t[f"sequential.hidden_states.{i}"] = h
        write_reference(a.dump_reference, t)
    print(json.dumps({"out": a.out, "model_type": cfg["model_type"],
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "bytes": os.path.getsize(a.out)}))


def tokenizer_files(d: Optional[str]) -> Dict[str, str]:
    """tokenizer.json / tokenizer_config.json from a folder (e.g. made by scripts/gpt2_tokenizer.mjs)."""
    out: Dict[str, str] = {}
    if not d:
        return out
    for f in ("tokenizer.json", "tokenizer_config.json"):
        p = os.path.join(d, f)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as fh:
                out[f] = fh.read()
    if "tokenizer.json" not in out:
        raise SystemExit(f"--tokenizer-dir {d} has no tokenizer.json")
    return out


def save_archive(module: torch.jit.ScriptModule, out: str, extra: Dict[str, str]) -> None:
    tmp = out + ".tmp"
    torch.jit.save(module, tmp, _extra_files=extra)
    os.replace(tmp, out)


def export_hf(a: argparse.Namespace) -> None:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # type: ignore
    except ImportError:
        raise SystemExit("--hf needs the Python package `transformers` (pip install transformers); "
                         "use --tiny to make a reference model with torch alone")
    src = a.hf
    model = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    model.config.use_cache = False
    mt = model.config.model_type
    if mt not in ("gpt2", "llama", "mistral", "qwen2"):
        raise SystemExit(f"model_type {mt!r} is not supported (gpt2, llama, mistral, qwen2)")
    base_name = "transformer" if mt == "gpt2" else "model"

    class Wrapper(nn.Module):
        # Attributes named as in the HF model, so parameter names in the archive are the HF state-dict names.
        def __init__(self) -> None:
            super().__init__()
            setattr(self, base_name, getattr(model, base_name))
            self.lm_head = model.lm_head

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
            out = getattr(self, base_name)(input_ids=input_ids, attention_mask=attention_mask,
                                           position_ids=positions_from_mask(attention_mask),
                                           output_hidden_states=True, use_cache=False, return_dict=False)
            hs = out[-1]
            return self.lm_head(hs[-1]), hs

    w = Wrapper().eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 16))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        traced = torch.jit.trace(w, (ids, mask), check_trace=False, strict=False)
    extra = {"config.json": model.config.to_json_string()}
    try:
        tok = AutoTokenizer.from_pretrained(src)
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            tok.save_pretrained(d)
            for f in ("tokenizer.json", "tokenizer_config.json"):
                p = os.path.join(d, f)
                if os.path.exists(p):
                    with open(p, encoding="utf-8") as fh:
                        extra[f] = fh.read()
    except Exception as e:  # a model without a tokenizer still exports
        print(f"warning: no tokenizer exported ({e})", file=sys.stderr)
    save_archive(traced, a.out, extra)
    print(json.dumps({"out": a.out, "model_type": mt, "bytes": os.path.getsize(a.out)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--hf", help="Hugging Face model name or local directory (needs transformers)")
    m.add_argument("--tiny", choices=["gpt2", "llama"], help="pure-PyTorch reference model with random weights")
    p.add_argument("--out", required=True, help="output .pt archive")
    p.add_argument("--model-type", choices=["llama", "mistral", "qwen2"], help="Llama family variant (--tiny llama)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None)
    p.add_argument("--vocab", type=int, default=101)
    p.add_argument("--max-pos", type=int, default=64)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--rope-scaling", default=None, help='JSON, e.g. \'{"rope_type":"linear","factor":2.0}\'')
    p.add_argument("--sliding-window", type=int, default=None)
    p.add_argument("--max-window-layers", type=int, default=0)
    p.add_argument("--attention-bias", action="store_true")
    p.add_argument("--tie", action="store_true", help="tie lm_head to the embeddings (Llama family)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-std", type=float, default=0.2)
    p.add_argument("--tokenizer-dir", default=None, help="folder with tokenizer.json (+ tokenizer_config.json) to embed")
    p.add_argument("--dump-reference", default=None, help="write the eager outputs on a fixed padded batch here")
    a = p.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    if a.hf:
        export_hf(a)
    else:
        export_tiny(a)


if __name__ == "__main__":
    main()
