#!/usr/bin/env bash
# Prints a python3 that can `import torch`: $TH_PYTHON, then python3 on PATH, then Debian's /usr/bin/python3
# (pyenv or venv pythons often come first on PATH without torch).
for py in "${TH_PYTHON:-}" python3 /usr/bin/python3; do
  [[ -n "$py" ]] || continue
  if "$py" -c 'import torch' >/dev/null 2>&1; then command -v "$py"; exit 0; fi
done
exit 1
