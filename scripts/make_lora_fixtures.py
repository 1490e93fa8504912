#!/usr/bin/env python3
"""A PEFT-layout LoRA adapter and the reference outputs of the adapted model, computed with PyTorch autograd on the
reference models of export_torchscript.py (LoRA math from reference/formats.md 2.4: y = base(x) + B(A(x)) * alpha/r).

Writes <out>/lora-<model>/: model.pt, adapter_config.json, adapter_model.safetensors (PEFT key names),
head_configs.json + cls.safetensors, batch.safetensors, expected.safetensors (loss, grad.<peft key>, grad.cls.<key>).
"""
import json
import os
import sys
from argparse import Namespace

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_torchscript as ex  # noqa: E402
from make_head_fixtures import head_config, padded_batch  # noqa: E402

R, ALPHA = 4, 8.0


class LoraWrap(nn.Module):
    def __init__(self, base, A, B, scaling):
        super().__init__()
        self.base, self.A, self.B, self.scaling = base, A, B, scaling

    def forward(self, x):
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.scaling


def build(kind, out_dir, seed):
    os.makedirs(out_dir, exist_ok=True)
    a = Namespace(tiny=kind, model_type=None, layers=2, hidden=32, heads=4, kv_heads=2 if kind == "llama" else None,
                  intermediate=None, vocab=50, max_pos=32, rope_theta=10000.0, rope_scaling=None, sliding_window=None,
                  max_window_layers=0, attention_bias=False, tie=kind == "gpt2", seed=seed, init_std=0.2,
                  out=os.path.join(out_dir, "model.pt"), dump_reference=None, tokenizer_dir=None)
    cfg = ex.tiny_config(a)
    model = ex.GPT2LMHeadModel(cfg) if kind == "gpt2" else ex.LlamaForCausalLM(cfg)
    ex.init_weights(model, seed, a.init_std)
    model.eval()
    ex.save_archive(torch.jit.script(model), a.out, {"config.json": json.dumps(cfg)})
    for p in model.parameters():
        p.requires_grad_(False)

    targets = ["c_attn", "c_proj", "c_fc"] if kind == "gpt2" else ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    g = torch.Generator().manual_seed(seed + 7)
    adapters = {}
    for name, mod in list(model.named_modules()):
        last = name.split(".")[-1]
        if last not in targets or "lm_head" in name:
            continue
        if isinstance(mod, ex.Conv1D):
            fin, fout = mod.weight.shape
        else:
            fin, fout = mod.in_features, mod.out_features
        bound = 1 / fin ** 0.5
        A = ((torch.rand(R, fin, generator=g) * 2 - 1) * bound).requires_grad_(True)
        B = (0.05 * torch.randn(fout, R, generator=g)).requires_grad_(True)  # non-zero: the adapter does something
        parent = model.get_submodule(name.rsplit(".", 1)[0])
        setattr(parent, last, LoraWrap(mod, A, B, ALPHA / R))
        adapters[name] = (A, B)

    H, V = a.hidden, a.vocab
    head = head_config(name="cls", in_size=H, num_outputs=3, pred_for_sequence=True, output_bias=True)
    W = (0.3 * torch.randn(3, H, generator=g)).requires_grad_(True)
    b = (0.1 * torch.randn(3, generator=g)).requires_grad_(True)
    pad = cfg["eos_token_id"]
    B_, T = 3, 8
    ids, mask = padded_batch(V, pad, T, [8, 5, 8], g)
    labels = torch.tensor([0, 2, 1])
    _, hs = model(ids, mask)
    seq_len = ((ids == pad).int().argmax(-1) - 1) % T
    logits = F.linear(hs[-1], W, b)
    loss = F.cross_entropy(logits[torch.arange(B_), seq_len], labels)
    loss.backward()

    exp = {"loss": loss.detach().reshape(1), "grad.cls.lins.0.weight": W.grad, "grad.cls.lins.0.bias": b.grad,
           "hidden_last": hs[-1].detach()}
    adapter_tensors = {}
    for name, (A, B) in adapters.items():
        key = f"base_model.model.{name}"
        adapter_tensors[f"{key}.lora_A.weight"] = A.detach()
        adapter_tensors[f"{key}.lora_B.weight"] = B.detach()
        exp[f"grad.{key}.lora_A.weight"] = A.grad
        exp[f"grad.{key}.lora_B.weight"] = B.grad
    ex.write_reference(os.path.join(out_dir, "adapter_model.safetensors"), adapter_tensors)
    ex.write_reference(os.path.join(out_dir, "cls.safetensors"), {"lins.0.weight": W.detach(), "lins.0.bias": b.detach()})
    ex.write_reference(os.path.join(out_dir, "expected.safetensors"), exp)
    ex.write_reference(os.path.join(out_dir, "batch.safetensors"), {"input_ids": ids, "attention_mask": mask, "cls": labels})
    with open(os.path.join(out_dir, "head_configs.json"), "w") as f:
        json.dump({"cls": head}, f)
    # As PEFT writes it (plus a key a newer PEFT adds, which readers must ignore).
    adapter_cfg = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": os.path.abspath(a.out), "bias": "none",
                   "fan_in_fan_out": kind == "gpt2", "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
                   "layers_to_transform": None, "loftq_config": {}, "lora_alpha": ALPHA, "lora_dropout": 0.0,
                   "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA",
                   "r": R, "rank_pattern": {}, "revision": None, "target_modules": targets, "task_type": "CAUSAL_LM",
                   "use_rslora": False, "use_dora": False}
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump(adapter_cfg, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    build("gpt2", os.path.join(out, "lora-gpt2"), 31)
    build("llama", os.path.join(out, "lora-llama"), 32)
