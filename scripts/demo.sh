#!/usr/bin/env bash
# The demo on the embedded default: creates/reuses .venv, then runs every stage that exists.
# Outputs go to ./demo_output (override with DEMO_DIR=...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
DEMO_DIR="${DEMO_DIR:-$ROOT/demo_output}"
PY="$ROOT/.venv/bin/python"
mkdir -p "$DEMO_DIR"

echo "== 1. BERT-Tiny: google checkpoint round trip, parity with Model Garden, recompute, fp16 =="
"$PY" "$ROOT/scripts/model_check.py" --output_dir="$DEMO_DIR/model_check"
