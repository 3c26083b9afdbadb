"""The one-line description of the machine a benchmark ran on, for every table header.

Speed figures on CPUs depend on the vendor, the vector ISA and whether TensorFlow's oneDNN
kernels are on (TensorFlow enables them by default only on some CPUs), so a ratio without its
machine is not a result. ``machine_line()`` names: CPU model, the ISA extensions that change
TensorFlow's CPU kernels, logical cores, oneDNN as TensorFlow actually runs it (not just the
environment variable) and TensorFlow's thread pools.
"""
from __future__ import annotations

import os
import platform

# ISA extensions that select different oneDNN / Eigen kernels (in this order in the line).
_ISA = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model_and_flags() -> tuple[str, set[str]]:
  """(model name, cpu flag set) from /proc/cpuinfo; the platform's processor string elsewhere."""
  model, flags = "", set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
      for line in f:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
          model = value.strip()
        elif key == "flags" and not flags:
          flags = set(value.split())
        if model and flags:
          break
  except OSError:
    pass
  return model or platform.processor() or "unknown CPU", flags


def onednn_state() -> str:
  """``on`` / ``off`` as TensorFlow runs (imports TensorFlow), and who chose it: the user's
  ``TF_ENABLE_ONEDNN_OPTS``, bert_tf's default (on, set when ``bert_tf`` is imported) or
  TensorFlow's own default for the CPU (only when TensorFlow was imported before bert_tf)."""
  import bert_tf
  state = "on" if bert_tf.onednn_enabled() else "off"
  env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
  if env is None:
    return f"{state} (TensorFlow's default for this CPU)"
  return f"{state} (TF_ENABLE_ONEDNN_OPTS={env})" if bert_tf.ONEDNN_SET_BY_USER else (
      f"{state} (bert_tf's default)")


def machine_line() -> str:
  """e.g. ``AMD EPYC | avx2 fma avx512f avx512_bf16 | 2 cores | oneDNN on (bert_tf's default) | TF
  threads intra 0 inter 0 (0 = TensorFlow's choice) | TF 2.20.0``."""
  import tensorflow as tf
  model, flags = cpu_model_and_flags()
  isa = " ".join(f for f in _ISA if f in flags) or "no AVX2"
  intra = tf.config.threading.get_intra_op_parallelism_threads()
  inter = tf.config.threading.get_inter_op_parallelism_threads()
  return (f"{model} | {isa} | {os.cpu_count()} cores | oneDNN {onednn_state()} | "
          f"TF threads intra {intra} inter {inter} (0 = TensorFlow's choice) | "
          f"TF {tf.__version__}")
