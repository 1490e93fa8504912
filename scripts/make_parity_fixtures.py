#!/usr/bin/env python3
"""Python-side references for moving between the Python transformer-heads library and this one (issue 16).

<out>/parity-{gpt2,llama}/: a head folder as the Python library writes it (head_configs.json with json.dump's
separators, one <name>.safetensors per head, F32 [out, in]) holding a head with num_outputs None (Python builds
Linear(in_size, 1)) and an MLP sequence head, plus expected.safetensors: the heads' outputs on a right-padded and a
left-padded batch (the same token rows), computed as the Python library's HeadedModel.forward does: the trunk called
with position_ids=None (positions 0..T-1 in every row, transformers' eager attention), hs[layer_hook] into MLPHead.
The trunk is the eager reference of scripts/export_torchscript.py with the weights of fixtures/tiny-*.pt.

<out>/int8-ref.safetensors: LLM.int8() matrix products (docs/formats-llm-int8.md), written here from the algorithm's
description, on inputs with and without outlier columns, at thresholds 6.0 and 0.0."""
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchscript import GPT2LMHeadModel, LlamaForCausalLM, write_reference  # noqa: E402


def eager_model(archive):
    files = {"config.json": ""}
    scripted = torch.jit.load(archive, _extra_files=files)
    cfg = json.loads(files["config.json"])
    model = GPT2LMHeadModel(cfg) if cfg["model_type"] == "gpt2" else LlamaForCausalLM(cfg)
    # inv_freq is a non-persistent buffer of the eager module (rebuilt from the config) but in the scripted state.
    model.load_state_dict({k: v for k, v in scripted.state_dict().items() if not k.endswith("inv_freq")}, strict=True)
    return model.eval(), cfg


def head_config(**kw):
    # transformer-heads HeadConfig fields in their declared order (json.dump writes them in this order).
    d = {"name": None, "in_size": None, "num_outputs": None, "layer_hook": -1, "hidden_size": 0, "num_layers": 1,
         "output_activation": "linear", "target": None, "is_causal_lm": False, "pred_for_sequence": False,
         "is_regression": False, "output_bias": False, "loss_fct": "cross_entropy", "trainable": True,
         "loss_weight": 1.0, "ignore_pads": None, "block_gradients": False}
    d.update(kw)
    if d["target"] is None:
        d["target"] = d["name"]
    if d["ignore_pads"] is None:
        d["ignore_pads"] = not d["is_causal_lm"]
    return d


def mlp_head(cfg, g):
    """MLPHead's Linear stack with random weights (what training would have left), as the state dict."""
    n, h, out = cfg["num_layers"], cfg["hidden_size"], cfg["num_outputs"] or 1
    sizes = [cfg["in_size"]] + [h] * (n - 1) + [out]
    sd = {}
    for i in range(n):
        sd[f"lins.{i}.weight"] = 0.3 * torch.randn(sizes[i + 1], sizes[i], generator=g)
        if i < n - 1 or cfg["output_bias"]:
            sd[f"lins.{i}.bias"] = 0.3 * torch.randn(sizes[i + 1], generator=g)
    return sd


def run_head(cfg, sd, x):
    for i in range(cfg["num_layers"]):
        x = F.linear(x, sd[f"lins.{i}.weight"], sd.get(f"lins.{i}.bias"))
        if i < cfg["num_layers"] - 1:
            x = F.relu(x)
    act = cfg["output_activation"]
    return torch.sigmoid(x) if act == "sigmoid" else F.relu(x) if act == "relu" else x


def padded_batches(vocab, g):
    """The same three token rows (9, 5 and 2 real tokens), right-padded and left-padded (pad id 0)."""
    B, T, lens = 3, 9, [9, 5, 2]
    tokens = torch.randint(1, vocab, (B, T), generator=g)
    right_ids = torch.zeros(B, T, dtype=torch.int64)
    right_mask = torch.zeros(B, T, dtype=torch.int64)
    left_ids = torch.zeros(B, T, dtype=torch.int64)
    left_mask = torch.zeros(B, T, dtype=torch.int64)
    for b, n in enumerate(lens):
        right_ids[b, :n] = tokens[b, :n]
        right_mask[b, :n] = 1
        left_ids[b, T - n:] = tokens[b, :n]
        left_mask[b, T - n:] = 1
    return {"right": (right_ids, right_mask), "left": (left_ids, left_mask)}


def parity_folder(out, name, archive, seed):
    model, mcfg = eager_model(archive)
    H = mcfg.get("n_embd") or mcfg["hidden_size"]
    g = torch.Generator().manual_seed(seed)
    heads = [
        head_config(name="probe", in_size=H, num_outputs=None, layer_hook=-2, output_bias=True, is_regression=True,
                    loss_fct="mse"),
        head_config(name="seq", in_size=H, num_outputs=3, layer_hook=1, hidden_size=16, num_layers=2,
                    output_activation="sigmoid", pred_for_sequence=True, ignore_pads=False),
    ]
    d = os.path.join(out, f"parity-{name}")
    os.makedirs(d, exist_ok=True)
    states = {}
    for h in heads:
        states[h["name"]] = mlp_head(h, g)
        write_reference(os.path.join(d, f"{h['name']}.safetensors"), states[h["name"]])
    with open(os.path.join(d, "head_configs.json"), "w") as f:
        json.dump({h["name"]: h for h in heads}, f)
    expected = {}
    for side, (ids, mask) in padded_batches(mcfg["vocab_size"], g).items():
        with torch.no_grad():
            # HeadedModel.forward: the trunk with position_ids=None -> 0..T-1 in every row.
            _, hs = model(ids, mask, torch.arange(ids.shape[1]).expand(ids.shape[0], -1))
            expected[f"{side}.input_ids"] = ids
            expected[f"{side}.attention_mask"] = mask
            for h in heads:
                expected[f"{side}.{h['name']}"] = run_head(h, states[h["name"]], hs[h["layer_hook"]]).float()
    write_reference(os.path.join(d, "expected.safetensors"), expected)


# ------------------------------------------------------------------------------------------------ LLM.int8()

def int8_weight(w):
    """Int8Params: the float16 weight quantized per output row, CB = round(w * 127 / absmax(row)), SCB = absmax."""
    w16 = w.half().float()
    scb = w16.abs().amax(dim=1)
    cb = torch.round(w16 * (127.0 / scb).unsqueeze(1)).to(torch.int8)
    return cb, scb


def llm_int8(x, cb, scb, bias, threshold):
    """MatMul8bitLt forward: outlier columns (any |x| >= threshold, threshold > 0) in x's precision against the
    dequantized weight columns; every other column as int8 x int8 with int32 accumulation, dequantized with the row
    (activation) and column (weight) scales / 127^2."""
    a = x.reshape(-1, x.shape[-1])
    a16 = a.half().float()
    cols = None
    if threshold > 0:
        outliers = a16.abs() >= threshold
        if bool(outliers.any()):
            cols = torch.nonzero(outliers.any(dim=0)).view(-1)
            a16 = torch.where(outliers, torch.zeros_like(a16), a16)
    row = a16.abs().amax(dim=1)
    ca = torch.round(a16 * (127.0 / row).unsqueeze(1)).to(torch.int8)
    if cols is not None:
        ca[:, cols] = 0
    acc = ca.double() @ cb.double().t()  # exact: integers far below 2^53
    out = acc.float() * (row.unsqueeze(1) * scb.unsqueeze(0)) * 6.200124e-05
    if bias is not None:
        out = out + bias
    out = out.to(x.dtype)
    if cols is not None:
        sub_b = (cb[:, cols].float() * scb.view(-1, 1) * 7.874015718698502e-3).to(x.dtype)
        out = torch.addmm(out, a[:, cols], sub_b.t())
    return out.reshape(*x.shape[:-1], -1)


def int8_reference(out):
    g = torch.Generator().manual_seed(16)
    K, O = 96, 40
    w = 0.05 * torch.randn(O, K, generator=g)
    w[3, 5] = 0.9  # a row with a large weight: its scale differs from the others
    bias = 0.1 * torch.randn(O, generator=g)
    plain = 1.5 * torch.randn(2, 7, K, generator=g).clamp(-3.9, 3.9)  # every |x| < 6: no outlier column
    outl = plain.clone()
    outl[0, 2, 11] = 9.5
    outl[1, 4, 11] = -7.25
    outl[1, 0, 40] = 6.0  # exactly the threshold: an outlier (>=)
    outl[0, 6, 70] = 5.99  # just below: stays in int8
    outl[1, 6, 90] = -30.0
    cb, scb = int8_weight(w)
    t = {"weight": w, "bias": bias, "cb": cb.to(torch.int64), "scb": scb, "x_plain": plain, "x_outliers": outl}
    for name, x in (("plain", plain), ("outliers", outl)):
        for thr in (6.0, 0.0):
            t[f"y_{name}_t{int(thr)}"] = llm_int8(x, cb, scb, bias, thr)
        t[f"y_{name}_nobias"] = llm_int8(x, cb, scb, None, 6.0)
    t["outlier_cols"] = torch.tensor([11, 40, 90], dtype=torch.int64)
    write_reference(os.path.join(out, "int8-ref.safetensors"), t)


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    parity_folder(out, "gpt2", os.path.join(out, "tiny-gpt2.pt"), 161)
    parity_folder(out, "llama", os.path.join(out, "tiny-llama.pt"), 162)
    int8_reference(out)


if __name__ == "__main__":
    main()
