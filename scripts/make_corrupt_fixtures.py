#!/usr/bin/env python3
"""Damaged TorchScript archives for the loader's error-path tests, made from fixtures/tiny-gpt2.pt.

  tiny-gpt2-rezipped.pt    every record copied unchanged by Python's zipfile (a second zip writer: the loader must
                           accept what it writes, so that the truncated copy below fails for its truncation only);
  tiny-gpt2-truncated.pt   the same, with the token-embedding record data/0 cut from 25,856 to 100 bytes;
  tiny-gpt2-dropped.pt     the same, without the record data/1 (wpe.weight);
  tiny-gpt2-badcode.pt     the same, with the model's TorchScript source replaced by text that does not compile;
  int-weight-gpt2.pt       a GPT-2 archive whose h.0.ln_2.bias is stored as int32.

Usage: make_corrupt_fixtures.py FIXTURES_DIR (after tiny-gpt2.pt exists there)
"""
import json
import os
import sys
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_torchscript as ex  # noqa: E402


def rewrite(src: str, dst: str, cut: dict, drop: set, replace: dict = {}) -> None:
    tmp = dst + ".tmp"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            record = info.filename.split("/", 1)[1]
            if record in drop:
                continue
            data = zin.read(info)
            if record in cut:
                data = data[: cut[record]]
            data = replace.get(record, data)
            zout.writestr(info.filename, data)
    os.replace(tmp, dst)


def main() -> None:
    out = sys.argv[1]
    src = os.path.join(out, "tiny-gpt2.pt")
    with zipfile.ZipFile(src) as z:
        size = z.getinfo("tiny-gpt2.pt/data/0").file_size
    # data/0 is wte.weight, [101, 64] float32; the tests name both byte counts.
    assert size == 101 * 64 * 4, size
    rewrite(src, os.path.join(out, "tiny-gpt2-rezipped.pt"), {}, set())
    rewrite(src, os.path.join(out, "tiny-gpt2-truncated.pt"), {"data/0": 100}, set())
    rewrite(src, os.path.join(out, "tiny-gpt2-dropped.pt"), {}, {"data/1"})
    rewrite(src, os.path.join(out, "tiny-gpt2-badcode.pt"), {}, set(),
            {"code/__torch__.py": b"class GPT2LMHeadModel(Module):\n  this is not python (\n"})

    cfg = {"model_type": "gpt2", "vocab_size": 11, "n_positions": 8, "n_embd": 8, "n_layer": 1, "n_head": 2,
           "layer_norm_epsilon": 1e-5, "bos_token_id": 10, "eos_token_id": 10}
    model = ex.GPT2LMHeadModel(cfg)
    model.transformer.h[0].ln_2.bias = torch.nn.Parameter(torch.arange(8, dtype=torch.int32), requires_grad=False)
    ex.save_archive(torch.jit.script(model), os.path.join(out, "int-weight-gpt2.pt"), {"config.json": json.dumps(cfg)})


if __name__ == "__main__":
    main()
