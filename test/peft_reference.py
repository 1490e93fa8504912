#!/usr/bin/env python3
"""The independent reference of test/peft.test.ts: PEFT's rules for which modules a LoraConfig adapts and with what
rank and scaling, applied in plain PyTorch to the reference models of scripts/export_torchscript.py.

No peft package is installed here, so the rules are re-stated from PEFT's source (huggingface/peft HEAD 5d602fd):
  tuners_utils.check_target_module_exists  (target_modules list, layers_to_transform, layers_pattern)
  utils/other.get_pattern_key               (rank_pattern / alpha_pattern keys: re.match(rf"(.*\\.)?({key})$", name))
  lora/model._create_and_replace            (r, alpha per module; scaling alpha / r, or alpha / sqrt(r) with rslora)
  lora/layer.Linear.forward                 (y = base(x) + lora_B(lora_A(x)) * scaling)

  peft_reference.py write DIR BASE.pt SEED CONFIG_JSON
      Writes a PEFT-layout folder for the base archive: adapter_config.json (the LoraConfig fields of CONFIG_JSON over
      PEFT's defaults, as PEFT writes them), adapter_model.safetensors (random non-zero A and B of the shapes PEFT
      makes), head_configs.json + cls.safetensors (a linear head), and expected.safetensors: input_ids,
      attention_mask and `hidden_last` (final hidden state) of the adapted model.
  peft_reference.py eval DIR BASE.pt IDS_JSON OUT
      Loads DIR's adapter (written by anyone) onto the base by the rules above; writes `hidden_last` and the
      per-module ranks/scalings it used (as JSON on stdout).
"""
import json
import math
import os
import re
import struct
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import export_torchscript as ex  # noqa: E402
from make_head_fixtures import head_config  # noqa: E402
from make_lora_fixtures import LoraWrap  # noqa: E402  (W x + scaling * B A x, the fixtures' own)


# ------------------------------------------------------------------------------------ PEFT's rules (re-stated)

def get_pattern_key(pattern_keys, key_to_match):
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", key_to_match):
            return key
    return key_to_match


def check_target_module_exists(config, key):
    target_modules = config["target_modules"]
    if key in target_modules:
        return True
    found = any(key.endswith(f".{t}") for t in target_modules)
    layer_indexes = config.get("layers_to_transform")
    layers_pattern = config.get("layers_pattern")
    using = layer_indexes is not None and (len(layer_indexes) != 0 if isinstance(layer_indexes, list) else True)
    if using and found:
        layer_index = None
        if layers_pattern is None or len(layers_pattern) == 0:
            layer_index = re.match(r".*?\.[^.]*\.(\d+)\.", key)
        else:
            layers_pattern = [layers_pattern] if isinstance(layers_pattern, str) else layers_pattern
            for pattern in layers_pattern:
                layer_index = re.match(rf".*?\.{pattern}\.(\d+)\.", key)
                if layer_index is not None:
                    break
        if layer_index is None:
            found = False
        else:
            i = int(layer_index.group(1))
            found = i == layer_indexes if isinstance(layer_indexes, int) else i in layer_indexes
    return found


def resolve_targets(config, model_cfg):
    """PEFT _prepare_adapter_config: target_modules None takes the model type's default
    (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING)."""
    if config.get("target_modules") is None:
        config["target_modules"] = {"gpt2": ["c_attn"], "llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
                                    "qwen2": ["q_proj", "v_proj"]}[model_cfg["model_type"]]
    return config


def module_plan(model, config):
    """{module name: (module, r, scaling)} for the modules PEFT would adapt."""
    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    plan = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, ex.Conv1D)) or not check_target_module_exists(config, name):
            continue
        r = rank_pattern.get(get_pattern_key(rank_pattern.keys(), name), config["r"])
        alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), name), config["lora_alpha"])
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        plan[name] = (mod, r, scaling)
    return plan


# ------------------------------------------------------------------------------------ files

def load_base(path):
    extra = {"config.json": ""}
    scripted = torch.jit.load(path, _extra_files=extra)
    cfg = json.loads(extra["config.json"])
    model = ex.GPT2LMHeadModel(cfg) if cfg["model_type"] == "gpt2" else ex.LlamaForCausalLM(cfg)
    # The scripted module also lists its non-persistent rotary buffer (recomputed from the config by the eager one).
    missing, unexpected = model.load_state_dict(scripted.state_dict(), strict=False)
    assert not missing and all(k.endswith("inv_freq") for k in unexpected), (missing, unexpected)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, cfg


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    header.pop("__metadata__", None)
    dt = {"F32": torch.float32, "I64": torch.int64}
    out = {}
    for k, v in header.items():
        s, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=dt[v["dtype"]]).reshape(v["shape"]).clone()
    return out


def adapt(model, config, tensors):
    plan = module_plan(model, config)
    used = set()
    for name, (mod, r, scaling) in plan.items():
        key = f"base_model.model.{name}"
        A, B = tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"]
        fin, fout = (mod.weight.shape if isinstance(mod, ex.Conv1D) else (mod.in_features, mod.out_features))
        assert tuple(A.shape) == (r, fin) and tuple(B.shape) == (fout, r), (name, A.shape, B.shape, r)
        used.update({f"{key}.lora_A.weight", f"{key}.lora_B.weight"})
        parent, last = name.rsplit(".", 1)
        setattr(model.get_submodule(parent), last, LoraWrap(mod, A, B, scaling))
    extra = sorted(k for k in tensors if "lora_" in k and k not in used)
    assert not extra, f"adapter tensors PEFT would not load: {extra[:4]}"
    return {n: {"r": r, "scaling": s} for n, (_, r, s) in plan.items()}


PEFT_DEFAULTS = {"alpha_pattern": {}, "auto_mapping": None, "bias": "none", "fan_in_fan_out": False,
                 "inference_mode": True, "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
                 "loftq_config": {}, "lora_alpha": 8, "lora_dropout": 0.0, "megatron_config": None,
                 "megatron_core": "megatron.core", "modules_to_save": None, "peft_type": "LORA", "r": 8,
                 "rank_pattern": {}, "revision": None, "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}


def write(out, base, seed, fields):
    os.makedirs(out, exist_ok=True)
    model, cfg = load_base(base)
    config = dict(PEFT_DEFAULTS, **fields, base_model_name_or_path=os.path.abspath(base))
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    # What a reader of the file gets: sort_keys also sorts the pattern keys, and PEFT takes the first matching key.
    with open(os.path.join(out, "adapter_config.json")) as f:
        config = resolve_targets(json.load(f), cfg)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, (mod, r, _) in module_plan(model, config).items():
        fin, fout = (mod.weight.shape if isinstance(mod, ex.Conv1D) else (mod.in_features, mod.out_features))
        tensors[f"base_model.model.{name}.lora_A.weight"] = (torch.rand(r, fin, generator=g) * 2 - 1) / fin ** 0.5
        tensors[f"base_model.model.{name}.lora_B.weight"] = 0.1 * torch.randn(fout, r, generator=g)
    plan = adapt(model, config, tensors)
    H = cfg.get("n_embd") or cfg["hidden_size"]
    V = cfg["vocab_size"]
    ids = torch.randint(0, V, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        _, hs = model(ids, mask)
    ex.write_reference(os.path.join(out, "adapter_model.safetensors"), tensors)
    ex.write_reference(os.path.join(out, "expected.safetensors"), {"input_ids": ids, "attention_mask": mask, "hidden_last": hs[-1]})
    ex.write_reference(os.path.join(out, "cls.safetensors"), {"lins.0.weight": 0.3 * torch.randn(2, H, generator=g)})
    with open(os.path.join(out, "head_configs.json"), "w") as f:
        json.dump({"cls": head_config(name="cls", in_size=H, num_outputs=2, pred_for_sequence=True)}, f)
    print(json.dumps(plan))


def evaluate(folder, base, ids_json, out):
    model, _ = load_base(base)
    with open(os.path.join(folder, "adapter_config.json")) as f:
        config = resolve_targets(json.load(f), load_base(base)[1])
    plan = adapt(model, config, read_safetensors(os.path.join(folder, "adapter_model.safetensors")))
    ids = torch.tensor(json.loads(ids_json), dtype=torch.int64)
    with torch.no_grad():
        _, hs = model(ids, torch.ones_like(ids))
    ex.write_reference(out, {"hidden_last": hs[-1]})
    print(json.dumps(plan))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5]))
    elif sys.argv[1] == "eval":
        evaluate(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        raise SystemExit(__doc__)
