#!/usr/bin/env bash
# Quickstart on the embedded model (SmolLM2-135M-Instruct), offline, on CPU: the whole
# Constitutional AI pipeline from one recipe (examples/recipes/quickstart.yaml):
# critique/revise -> SFT -> sampled answers -> AI preference labels -> DPO -> before/after eval.
# Outputs go to runs/quickstart/ (override with OUT=...); a rerun skips every unchanged stage.
set -euo pipefail
cd "$(dirname "$0")/.."
CAI=${CAI:-.venv/bin/cai}
OUT=${OUT:-runs/quickstart}
$CAI env
$CAI constitution validate constitutions
$CAI run examples/recipes/quickstart.yaml --run-dir "$OUT" "$@"
echo "open the report: $OUT/eval/report.html"
