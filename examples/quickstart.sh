#!/usr/bin/env bash
# Quickstart on the embedded model (SmolLM2-135M-Instruct), offline, on CPU:
# validate the shipped constitutions, show the resolved core one, then answer
# shipped red-team and benign prompts under its system prompt. Outputs go to
# runs/quickstart/; rerunning resumes and skips finished answers.
set -euo pipefail
cd "$(dirname "$0")/.."
CAI=${CAI:-.venv/bin/cai}
OUT=${OUT:-runs/quickstart}
mkdir -p "$OUT"
$CAI env
$CAI constitution validate constitutions
$CAI constitution show constitutions/harmless.yaml | tail -n 3
for set in redteam benign; do
  $CAI generate --prompts "examples/prompts/$set.jsonl" --limit "${LIMIT:-20}" \
    --constitution constitutions/harmless.yaml --max-new-tokens 96 --temperature 0 \
    --output "$OUT/answers_$set.jsonl"
done
.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("redteam", "benign"):
    recs = [json.loads(l) for l in (out / f"answers_{name}.jsonl").read_text().splitlines()]
    print(f"\n== {name}: {len(recs)} answers in {out / f'answers_{name}.jsonl'}")
    for r in recs[:3]:
        print("  Q:", r["prompt"][-1]["content"][:100])
        print("  A:", r["completion"][0]["content"][:160].replace("\n", " "))
PY
