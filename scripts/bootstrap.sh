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
  # (This machine's pip config names extra local indexes; drop its "Location ... ignored" noise.)
  { "$PY" -m pip install --quiet --upgrade pip setuptools wheel 2>&1 \
      && "$PY" -m pip install --quiet -e "$ROOT[dev]" 2>&1; } | { grep -v "^WARNING: Location 'file:" || true; }
  [[ "${PIPESTATUS[0]}" == 0 ]] || { echo "[bootstrap] pip install failed" >&2; exit 1; }
  echo "$WANT" > "$STAMP"
fi

if [[ "$WITH_HOROVOD" == 1 ]]; then
  "$ROOT/scripts/install_horovod.sh" "$PY"
fi
