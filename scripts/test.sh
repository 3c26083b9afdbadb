#!/usr/bin/env bash
# The test suite, as CI runs it: creates/reuses .venv (with Horovod), then runs pytest.
# Extra arguments go to pytest, e.g.  scripts/test.sh -k recompute
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh" --horovod
cd "$ROOT"
# --timeout: a hung test (a stuck collective, a dead worker) fails instead of blocking CI.
exec "$ROOT/.venv/bin/python" -m pytest tests --timeout=900 -q -p no:cacheprovider "$@"
