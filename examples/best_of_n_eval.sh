#!/usr/bin/env bash
# Best-of-N evaluation: how often does picking one of N sampled responses by VisualPRM (each
# aggregation) or by the judge (knockout) give the right answer, against majority vote, a random
# pick (pass@1) and the oracle (pass@N)?
#
# Input: RESPONSES, jsonl rows {id, image|images, question, answer, responses: [...N strings]},
#   e.g. 8 samples per geometry3k test question from your policy (vLLM, temperature 1.0).
#   DEMO=1 uses the bundled generated mini set instead (written by `make-demo-data`).
# Resource layout: one 80 GB GPU holds VisualPRM-8B (bf16, ~17 GB) and the 7B judge (~16 GB);
#   on CPU use DEVICE=cpu DTYPE=float32 with the tiny test models (slow but runs anywhere).
# Output: OUT/report.json, OUT/results.jsonl, and a PNG plot of accuracy against N.
# Usage: examples/best_of_n_eval.sh [--dry-run] [more eval-bon flags]
set -euo pipefail
PYTHON=${PYTHON:-python}
RESPONSES=${RESPONSES:-data/geo3k/test_samples_n8.jsonl}
IMAGE_ROOT=${IMAGE_ROOT:-data/geo3k}
PRM=${PRM:-visualprm}
JUDGE=${JUDGE:-mr-judge}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
OUT=${OUT:-eval-output/best-of-n}

DRY_RUN=0
EXTRA=()
for arg in "$@"; do
  if [[ "$arg" == "--dry-run" ]]; then DRY_RUN=1; else EXTRA+=("$arg"); fi
done
if [[ "${DEMO:-0}" == "1" ]]; then
  DEMO_DIR=${DEMO_DIR:-eval-output/demo-data}
  [[ $DRY_RUN == 1 ]] || "$PYTHON" -m openrlhf_visualprm.cli make-demo-data "$DEMO_DIR"
  RESPONSES="$DEMO_DIR/demo.jsonl"
  IMAGE_ROOT="$DEMO_DIR"
fi

ARGS=(--data "$RESPONSES" --image-root "$IMAGE_ROOT" --prm "$PRM" --judge "$JUDGE"
      --device "$DEVICE" --dtype "$DTYPE" --out "$OUT" ${EXTRA[@]+"${EXTRA[@]}"})
if [[ $DRY_RUN == 1 ]]; then
  echo "would run: $PYTHON -m openrlhf_visualprm.cli eval-bon ${ARGS[*]}"
  # check the arguments against the real eval-bon parser, load nothing
  exec "$PYTHON" - "${ARGS[@]}" <<'PY'
import argparse
import sys

from openrlhf_visualprm.eval import bon

parser = argparse.ArgumentParser(prog="openrlhf-visualprm eval-bon")
bon.add_arguments(parser)
args = parser.parse_args(sys.argv[1:])
print(f"eval-bon arguments OK: prm={args.prm} judge={args.judge} device={args.device} out={args.out}")
PY
fi
exec "$PYTHON" -m openrlhf_visualprm.cli eval-bon "${ARGS[@]}"
