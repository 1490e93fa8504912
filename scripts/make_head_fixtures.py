#!/usr/bin/env python3
"""Reference losses and gradients for the heads tests, computed with PyTorch autograd from the rules of the Python
transformer-heads library (reference/formats.md section 1.4), written independently of the native code.

For each base model it writes into <out>/heads-<model>/:
  model.pt                 a TorchScript archive (scripts/export_torchscript.py --tiny)
  head_configs.json        the Python library's format: one line, {name: {17 snake_case fields}}
  <name>.safetensors       random head weights (lins.K.weight|bias), so predictions are not trivially small
  batch.safetensors        input_ids, attention_mask and one tensor per label column
  expected.safetensors     loss.<head>, loss (total), grad.<head>.<key> for a frozen backbone
"""
import json
import os
import sys
from argparse import Namespace

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_torchscript as ex  # noqa: E402

FIELDS = ["name", "in_size", "num_outputs", "layer_hook", "hidden_size", "num_layers", "output_activation", "target",
          "is_causal_lm", "pred_for_sequence", "is_regression", "output_bias", "loss_fct", "trainable", "loss_weight",
          "ignore_pads", "block_gradients"]


def head_config(**kw):
    d = {"layer_hook": -1, "hidden_size": 0, "num_layers": 1, "output_activation": "linear", "target": None,
         "is_causal_lm": False, "pred_for_sequence": False, "is_regression": False, "output_bias": False,
         "loss_fct": "cross_entropy", "trainable": True, "loss_weight": 1.0, "ignore_pads": None, "block_gradients": False}
    d.update(kw)
    if d["target"] is None:
        d["target"] = d["name"]
    if d["ignore_pads"] is None:
        d["ignore_pads"] = not d["is_causal_lm"]
    return {k: d[k] for k in FIELDS}


def heads_for(H, V, lm_trainable):
    return [
        head_config(name="seq_cls", in_size=H, num_outputs=3, pred_for_sequence=True, output_bias=True),
        head_config(name="seq_cls_nopad", in_size=H, num_outputs=3, layer_hook=2, num_layers=2, hidden_size=16,
                    pred_for_sequence=True, ignore_pads=False, loss_weight=0.7),
        head_config(name="causal", in_size=H, num_outputs=V, layer_hook=-2, is_causal_lm=True, target="causal_labels"),
        head_config(name="causal_ign", in_size=H, num_outputs=V, is_causal_lm=True, ignore_pads=True, target="causal_labels"),
        head_config(name="tok_reg", in_size=H, num_outputs=1, layer_hook=1, is_regression=True, loss_fct="mse", output_bias=True),
        head_config(name="seq_reg", in_size=H, num_outputs=1, layer_hook=0, pred_for_sequence=True, is_regression=True,
                    loss_fct="mse", num_layers=3, hidden_size=8),
        head_config(name="masked", in_size=H, num_outputs=1, loss_fct="masked_mse", layer_hook=-3),
        head_config(name="bce", in_size=H, num_outputs=1, pred_for_sequence=True, output_activation="sigmoid",
                    loss_fct="bce", output_bias=True, is_regression=True),
        head_config(name="bcel", in_size=H, num_outputs=1, is_regression=True, loss_fct="bce_with_logits", ignore_pads=False),
        head_config(name="all_ignored", in_size=H, num_outputs=4, layer_hook=1),
        head_config(name="relu_noloss", in_size=H, num_outputs=2, output_activation="relu", loss_fct=None),
        # Tied GPT-2: a trainable lm_head would train the embeddings through the whole trunk; kept frozen there so the
        # reference can run the trunk without autograd. The untied Llama head trains.
        head_config(name="lm_head", in_size=H, num_outputs=V, is_causal_lm=True, target="causal_labels", loss_weight=0.5,
                    trainable=lm_trainable),
    ]


def padded_batch(vocab, pad, T, lengths, g):
    """Random token ids (never the pad id) right-padded with the pad id to T; rows have the given real lengths."""
    ids = torch.randint(0, vocab, (len(lengths), T), generator=g)
    ids[ids == pad] = (pad + 1) % vocab
    mask = torch.ones(len(lengths), T, dtype=torch.int64)
    for row, n in enumerate(lengths):
        ids[row, n:] = pad
        mask[row, n:] = 0
    return ids, mask


def make_head(cfg, g):
    n = cfg["num_layers"]
    dims = [cfg["in_size"]] + [cfg["hidden_size"]] * (n - 1) + [cfg["num_outputs"] or 1]
    state = {}
    for i in range(n):
        state[f"lins.{i}.weight"] = 0.3 * torch.randn(dims[i + 1], dims[i], generator=g)
        if i < n - 1 or cfg["output_bias"]:
            state[f"lins.{i}.bias"] = 0.1 * torch.randn(dims[i + 1], generator=g)
    return {k: v.requires_grad_(True) for k, v in state.items()}


def head_forward(cfg, state, x):
    if cfg["block_gradients"]:
        x = x.detach()
    n = cfg["num_layers"]
    for i in range(n):
        x = F.linear(x, state[f"lins.{i}.weight"], state.get(f"lins.{i}.bias"))
        if i < n - 1:
            x = F.relu(x)
    act = cfg["output_activation"]
    return torch.sigmoid(x) if act == "sigmoid" else F.relu(x) if act == "relu" else x


def loss_fn(name, inp, tgt):
    if name == "cross_entropy":
        return F.cross_entropy(inp, tgt.long(), ignore_index=-100)
    if name == "mse":
        return F.mse_loss(inp, tgt.float())
    if name == "masked_mse":
        m = tgt != -100
        return F.mse_loss(inp[m], tgt[m].float())
    if name == "bce":
        return F.binary_cross_entropy(inp, tgt.float())
    if name == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(inp, tgt.float())
    raise ValueError(name)


def head_loss(cfg, logits, labels, seq_len, vocab):
    if cfg["is_causal_lm"]:
        ul, ut = logits[..., :-1, :], labels[..., 1:]
    else:
        ul, ut = logits, labels
    if cfg["pred_for_sequence"]:
        ul = logits[torch.arange(logits.shape[0]), seq_len] if cfg["ignore_pads"] else ul[..., -1, :]
    if cfg["ignore_pads"] and not cfg["pred_for_sequence"]:
        ul = torch.cat([ul[i, : seq_len[i]] for i in range(ul.shape[0])])
        ut = torch.cat([ut[i, : seq_len[i]] for i in range(ut.shape[0])])
    else:
        ut = ut.reshape(-1)
    ul = ul.reshape(-1) if cfg["is_regression"] else ul.reshape(-1, cfg["num_outputs"] or vocab)
    loss = loss_fn(cfg["loss_fct"], ul, ut)
    if not torch.all(loss.isfinite()):
        loss = torch.sum(ul * 0.0)
    return loss


def build(kind, out_dir, seed):
    os.makedirs(out_dir, exist_ok=True)
    a = Namespace(tiny=kind, model_type=None, layers=3, hidden=32, heads=4, kv_heads=2 if kind == "llama" else None,
                  intermediate=None, vocab=50, max_pos=32, rope_theta=10000.0, rope_scaling=None, sliding_window=None,
                  max_window_layers=0, attention_bias=False, tie=kind == "gpt2", seed=seed, init_std=0.2,
                  out=os.path.join(out_dir, "model.pt"), dump_reference=None)
    cfg = ex.tiny_config(a)
    torch.manual_seed(seed)
    model = ex.GPT2LMHeadModel(cfg) if kind == "gpt2" else ex.LlamaForCausalLM(cfg)
    ex.init_weights(model, seed, a.init_std)
    model.eval()
    ex.save_archive(torch.jit.script(model), a.out, {"config.json": json.dumps(cfg)})

    H, V = a.hidden, a.vocab
    pad = cfg.get("pad_token_id") or cfg["eos_token_id"]
    g = torch.Generator().manual_seed(seed + 100)
    B, T = 3, 9
    ids, mask = padded_batch(V, pad, T, [9, 6, 4], g)
    causal = ids.clone().masked_fill(mask == 0, -100)
    labels = {
        "seq_cls": torch.randint(0, 3, (B,), generator=g),
        "seq_cls_nopad": torch.randint(0, 3, (B,), generator=g),
        "causal_labels": causal,
        "tok_reg": torch.randn(B, T, generator=g),
        "seq_reg": torch.randn(B, generator=g),
        "masked": torch.randn(B, T, 1, generator=g).masked_fill(torch.rand(B, T, 1, generator=g) < 0.3, -100.0),
        "bce": (torch.rand(B, generator=g) < 0.5).float(),
        "bcel": (torch.rand(B, T, generator=g) < 0.5).float(),
        "all_ignored": torch.full((B, T), -100, dtype=torch.int64),
    }

    heads = heads_for(H, V, lm_trainable=kind == "llama")
    with open(os.path.join(out_dir, "head_configs.json"), "w") as f:
        json.dump({h["name"]: h for h in heads}, f)  # the Python library's encoder: one line, default separators
    states = {}
    for h in heads:
        if h["name"] == "lm_head":
            continue
        states[h["name"]] = make_head(h, g)
        ex.write_reference(os.path.join(out_dir, f"{h['name']}.safetensors"), {k: v.detach() for k, v in states[h["name"]].items()})

    with torch.no_grad():  # frozen backbone
        _, hs = model(ids, mask)
    seq_len = ((ids == pad).int().argmax(-1) - 1) % T
    lm_w = model.lm_head.weight.detach().clone().requires_grad_(True)
    total = torch.tensor(0.0, requires_grad=True)
    losses = {}
    for h in heads:  # lm_head is last in the list, as the Python library orders it
        x = hs[h["layer_hook"]]
        logits = (x @ lm_w.t()) if h["name"] == "lm_head" else head_forward(h, states[h["name"]], x)
        if h["target"] in labels and h["loss_fct"] is not None:
            losses[h["name"]] = head_loss(h, logits.float(), labels[h["target"]], seq_len, V)
    for name, l in losses.items():
        w = next(h["loss_weight"] for h in heads if h["name"] == name)
        if torch.all(l.isfinite()):
            total = total + l * w
    total.backward()

    exp = {"loss": total.detach().reshape(1)}
    for name, l in losses.items():
        exp[f"loss.{name}"] = l.detach().reshape(1)
    for name, st in states.items():
        for k, v in st.items():
            if v.grad is not None:
                exp[f"grad.{name}.{k}"] = v.grad
    if kind == "llama":
        exp["grad.lm_head.lins.0.weight"] = lm_w.grad
    ex.write_reference(os.path.join(out_dir, "expected.safetensors"), exp)
    batch = {"input_ids": ids, "attention_mask": mask}
    batch.update({f"label.{k}": v for k, v in labels.items()})
    ex.write_reference(os.path.join(out_dir, "batch.safetensors"), batch)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "fixtures"
    build("gpt2", os.path.join(out, "heads-gpt2"), 21)
    build("llama", os.path.join(out, "heads-llama"), 22)
