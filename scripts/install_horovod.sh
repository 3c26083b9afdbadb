#!/usr/bin/env bash
# Install Horovod 0.28.1 (gloo, no MPI) for the TensorFlow in the given interpreter.
#
# Horovod 0.28.1 (the last release) does not compile against TF 2.20: its
# horovod/tensorflow/xla_mpi_ops.cc includes tensorflow/compiler/xla/client/xla_builder.h,
# which TF 2.20 moved (upstream fix: horovod PR 4302, unreleased). Those XLA ops only matter
# for GPU + XLA custom calls, so we build the PyPI sdist with that one source dropped.
# The wheel is cached in $BERT_TF_CACHE (default ~/.cache/bert_tf) keyed by the versions,
# so only the first install on a machine pays the ~10 minute build.
set -euo pipefail
PY="${1:?usage: install_horovod.sh /path/to/venv/bin/python}"
HVD_VERSION=0.28.1

if "$PY" -c "import horovod.tensorflow as h; import horovod; assert horovod.__version__ == '$HVD_VERSION'" 2>/dev/null; then
  exit 0
fi

CACHE="${BERT_TF_CACHE:-$HOME/.cache/bert_tf}/wheels"
TF_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("tensorflow"))')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
KEY="horovod-$HVD_VERSION-tf$TF_VERSION-$PY_TAG"
mkdir -p "$CACHE/$KEY"

WHEEL="$(ls "$CACHE/$KEY"/horovod-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$WHEEL" ]]; then
  echo "[horovod] building Horovod $HVD_VERSION for TensorFlow $TF_VERSION (once per machine, ~10 min on 2 cores)"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$WORK"
  tar -xzf "$WORK"/horovod-$HVD_VERSION.tar.gz -C "$WORK"
  SRC="$WORK/horovod-$HVD_VERSION"
  CMAKE_LISTS="$SRC/horovod/tensorflow/CMakeLists.txt"
  grep -q 'xla_mpi_ops.cc' "$CMAKE_LISTS" || { echo "[horovod] xla_mpi_ops.cc not found in $CMAKE_LISTS; sdist changed?" >&2; exit 1; }
  sed -i '/xla_mpi_ops\.cc/d' "$CMAKE_LISTS"
  "$PY" -m pip install --quiet cmake packaging pyyaml cloudpickle psutil
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
  HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 MAKEFLAGS="-j$(nproc)" \
    "$PY" -m pip wheel --no-build-isolation --no-deps "$SRC" -w "$WORK/dist"
  cp "$WORK"/dist/horovod-*.whl "$CACHE/$KEY/"
  WHEEL="$(ls "$CACHE/$KEY"/horovod-*.whl | head -n1)"
fi
echo "[horovod] installing $WHEEL"
"$PY" -m pip install --quiet "$WHEEL"
"$PY" -m pip install --quiet cloudpickle psutil pyyaml packaging
"$PY" -c "import horovod.tensorflow as hvd; print('[horovod] ok', hvd.__name__)"
