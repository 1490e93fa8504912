#!/usr/bin/env python3
"""Hugging Face model folders made from the TorchScript fixtures, for the safetensors / HF-folder loader tests.

The archives' state dicts already carry Hugging Face names, so each folder is config.json (the archive's own) plus the
weights in the layouts real checkpoints use (reference/formats.md 4.1-4.4):

  hf-tiny-gpt2/           model.safetensors with GPT2LMHeadModel names (transformer. prefix, tied lm_head left out),
                          F32, and a small WordPiece tokenizer.json + tokenizer_config.json (101 tokens, eos id 100)
  hf-tiny-gpt2-noprefix/  names without prefix plus the h.N.attn.bias / masked_bias buffers, as the original
                          openai-community/gpt2 file has them
  hf-tiny-gpt2-f16/       F16 weights; hf-tiny-gpt2-f16.ref.safetensors holds the outputs of the archive's module with
                          its weights rounded to F16 (computed in float32) on the reference batch
  hf-tiny-llama/          two shards + model.safetensors.index.json (untied lm_head.weight in the second shard), with the
                          rotary_emb.inv_freq buffers old Llama checkpoints carry
  hf-tiny-llama-bf16/     BF16 weights in one file
  hf-tiny-mistral/, hf-tiny-qwen2/   F32, one file (qwen2: tied, so no lm_head.weight)

safetensors is written by hand (the Python package is not needed): u64 header length, compact JSON header with
__metadata__ {"format": "pt"} first, padded with spaces to 8 bytes, then the data in header order.
Usage: make_hf_fixtures.py FIXTURES_DIR   (needs FIXTURES_DIR/tiny-{gpt2,llama,mistral,qwen2}.pt)
"""
import json
import os
import shutil
import struct
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_torchscript as ex  # noqa: E402

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the same 2 bytes as int16
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    off = 0
    for k in sorted(tensors):
        t = tensors[k]
        b = tensor_bytes(t)
        header[k] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def archive(fixtures, name):
    """(config dict, config.json text, HF state dict) of a TorchScript fixture."""
    path = os.path.join(fixtures, f"{name}.pt")
    module = torch.jit.load(path)
    with zipfile.ZipFile(path) as z:
        text = next(z.read(n).decode() for n in z.namelist() if n.endswith("/extra/config.json"))
    cfg = json.loads(text)
    sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
    sd.pop("model.inv_freq", None)  # the reference module's own rotary table, not a Hugging Face tensor
    if cfg.get("tie_word_embeddings", cfg["model_type"] == "gpt2"):
        sd.pop("lm_head.weight")  # safetensors.torch refuses shared tensors, so HF leaves the tied copy out
    return module, cfg, text, sd


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def write_folder(path, config_text, tensors, extra_files=None):
    fresh_dir(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(config_text)
    write_safetensors(os.path.join(path, "model.safetensors"), tensors)
    for name, text in (extra_files or {}).items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)


def tiny_tokenizer(vocab_size, eos):
    """A WordPiece tokenizer with `vocab_size` ids: [UNK], letters, ##letters, digits, a few words; eos is added."""
    words = ["[UNK]"] + list("abcdefghijklmnopqrstuvwxyz") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + \
        list("0123456789") + list(".,!?'") + ["hello", "world", "the", "spam", "ham", "free", "money", "now", "meeting",
                                              "tomorrow", "is", "a", "win", "prize", "call", "me"]
    words = list(dict.fromkeys(words))[: vocab_size - 1]
    vocab = {w: i for i, w in enumerate(words)}
    eos_text = "<|endoftext|>"
    vocab[eos_text] = eos
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": eos, "content": eos_text, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True}],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }
    tok_cfg = {"bos_token": eos_text, "eos_token": eos_text, "unk_token": "[UNK]", "model_max_length": 64,
               "tokenizer_class": "PreTrainedTokenizerFast"}
    return json.dumps(tok, indent=2), json.dumps(tok_cfg, indent=2)


def main():
    fixtures = sys.argv[1]

    # GPT-2: GPT2LMHeadModel names, with a tokenizer
    module, cfg, text, sd = archive(fixtures, "tiny-gpt2")
    tok, tok_cfg = tiny_tokenizer(cfg["vocab_size"], cfg["eos_token_id"])
    write_folder(os.path.join(fixtures, "hf-tiny-gpt2"), text, sd, {"tokenizer.json": tok, "tokenizer_config.json": tok_cfg})

    # GPT-2 as the original openai file: no prefix, causal-mask buffers included
    plain = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in sd.items()}
    P = cfg["n_positions"]
    for i in range(cfg["n_layer"]):
        plain[f"h.{i}.attn.bias"] = torch.tril(torch.ones(P, P)).view(1, 1, P, P)
        plain[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    write_folder(os.path.join(fixtures, "hf-tiny-gpt2-noprefix"), text, plain)

    # GPT-2 in F16, and the archive's outputs with the same rounding
    half = {k: v.to(torch.float16) for k, v in sd.items()}
    write_folder(os.path.join(fixtures, "hf-tiny-gpt2-f16"), text, half)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    ids, mask = ex.reference_batch(cfg["vocab_size"], 1)  # the batch of tiny-gpt2.ref.safetensors (seed 1)
    with torch.no_grad():
        logits, hs = module(ids, mask)
    ref = {"input_ids": ids, "attention_mask": mask, "logits": logits}
    for i, h in enumerate(hs):
        ref[f"hidden_states.{i}"] = h
    ex.write_reference(os.path.join(fixtures, "hf-tiny-gpt2-f16.ref.safetensors"), ref)

    # Llama (GQA, untied): two shards and an index, plus old-style rotary buffers
    _, cfg, text, sd = archive(fixtures, "tiny-llama")
    hd = cfg["hidden_size"] // cfg["num_attention_heads"]
    for i in range(cfg["num_hidden_layers"]):
        sd[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    path = os.path.join(fixtures, "hf-tiny-llama")
    fresh_dir(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write(text)
    names = sorted(sd)
    first = [n for n in names if n.startswith("model.layers.0.") or n.startswith("model.layers.1.") or n == "model.embed_tokens.weight"]
    shards = [first, [n for n in names if n not in first]]
    weight_map = {}
    total = 0
    for i, part in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(path, fname), {n: sd[n] for n in part})
        for n in part:
            weight_map[n] = fname
            total += sd[n].numel() * sd[n].element_size()
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)

    # Llama in BF16
    _, cfg, text, sd = archive(fixtures, "tiny-llama")
    write_folder(os.path.join(fixtures, "hf-tiny-llama-bf16"), text, {k: v.to(torch.bfloat16) for k, v in sd.items()})

    for name in ("tiny-mistral", "tiny-qwen2"):
        _, cfg, text, sd = archive(fixtures, name)
        write_folder(os.path.join(fixtures, f"hf-{name}"), text, sd)


if __name__ == "__main__":
    main()
