"""One try of a memory or speed measurement: the real pretraining step in a fresh process.

Run by ``max_batch.run_try`` (one try per process, so an out-of-memory failure cannot poison
the next try), hence by ``max_batch_size.py``, ``benchmarks/bench_memory.py`` and
``benchmarks/bench_throughput_grid.py``:

    python -m bert_tf.tools.memory_worker '{"preset": "base", "seq": 128, "batch": 16,
                                            "recompute": "full", "dtype": "fp32"}'

It builds ``training.Pretrainer`` (model, google's AdamW, global-norm clipping) over an
in-memory repeating dataset, runs its compiled train loop (``steps_per_call`` optimizer steps
per call, see ``probe.LoopRunner``) and prints one line ``RESULT {json}`` with:

  peak_bytes         CPU: this process's resident high-water mark (``VmHWM``), on every CPU;
                     GPU: TensorFlow's allocator peak of GPU:0.
  tensor_peak_bytes  TensorFlow's allocator peak (live tensors) during the calls, reset after
                     the build; null where the device keeps no allocator statistics (the CPU
                     when oneDNN is off, see ``memory_stats``).
  static_bytes       CPU resident set after the model and optimizer exist, before the first
                     step: TensorFlow + weights + slots; the rest of the peak is the step.
  call_seconds       wall time of each loop call (the first includes tracing); with "modes",
                     a dict mode -> list.

Spec keys (JSON): preset or config (a bert_config.json's dict), vocab_size (30522), seq,
predictions (default ``synthetic.default_predictions``), batch (global), dtype
(fp32|fp16|bf16), recompute (none|full|selective) or modes (a list, built side by side and
timed interleaved in one process), distribution (one_device|mirrored), cpu_devices (split the
CPU for mirrored), calls (timed loop calls after the first, default 0), steps_per_call (1),
dropout (None: the preset's 0.1), gpu_memory_limit_mb (cap GPU:0 as a logical device).
"""
from __future__ import annotations

import os
import sys
import tempfile

import tensorflow as tf
from absl import logging

from bert_tf import configs, distribution, memory
from bert_tf.tools import launch, memory_stats, probe, synthetic


def _runtime(spec: dict):
  """Devices set up before TensorFlow initialises; returns (runtime, on_gpu)."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus and spec.get("gpu_memory_limit_mb"):
    tf.config.set_logical_device_configuration(
        gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=spec["gpu_memory_limit_mb"])])
  if spec.get("distribution", "one_device") == "mirrored" and not gpus:
    distribution.split_cpu(spec.get("cpu_devices", 2))
  return distribution.make_runtime(spec.get("distribution", "one_device")), bool(gpus)


def model_config(spec: dict) -> configs.BertConfig:
  overrides = {}
  if spec.get("dropout") is not None:
    overrides = dict(hidden_dropout_prob=spec["dropout"],
                     attention_probs_dropout_prob=spec["dropout"])
  if spec.get("config"):  # a bert_config.json's contents
    return configs.BertConfig.from_dict(spec["config"]).replace(**overrides)
  return configs.preset(spec.get("preset", "base"), vocab_size=spec.get("vocab_size", 30522),
                        max_position_embeddings=max(512, spec["seq"]), **overrides)


def interleaved_calls(runners: dict, calls: int) -> tuple:
  """1 + ``calls`` rounds of one call per runner, the order reversed every other round so
  drift of a shared machine hits all alike. Returns ({name: [seconds]}, last loss)."""
  names = list(runners)
  times = {name: [] for name in names}
  loss = None
  for r in range(1 + calls):
    for name in (names if r % 2 == 0 else names[::-1]):
      seconds, loss = runners[name].timed()
      times[name].append(seconds)
  return times, loss


def run(spec: dict) -> dict:
  """Builds the contenders of ``spec``, runs their calls, returns the RESULT dict."""
  logging.set_verbosity(logging.WARNING)
  runtime, on_gpu = _runtime(spec)
  seq, batch = spec["seq"], spec["batch"]
  predictions = spec.get("predictions") or synthetic.default_predictions(seq)
  config = model_config(spec)
  features = synthetic.random_pretraining_features(batch, seq, predictions, config.vocab_size)
  steps = spec.get("steps_per_call", 1)
  modes = spec.get("modes") or [spec.get("recompute", "none")]
  device = "GPU:0" if on_gpu else "CPU:0"
  with tempfile.TemporaryDirectory() as tmp:
    runners = {mode: probe.LoopRunner(probe.build_pretrainer(
        config, features, runtime, os.path.join(tmp, mode), batch, seq, predictions,
        dtype=spec.get("dtype", "fp32"), recompute=mode, iterations_per_loop=steps), steps)
               for mode in modes}
    static = memory_stats.rss_bytes()
    tracked = memory_stats.reset_allocator_peak(device)
    times, loss = interleaved_calls(runners, spec.get("calls", 0))
  tensor_peak = memory_stats.allocator_peak(device) if tracked else None
  if on_gpu and tensor_peak is None:
    raise RuntimeError(f"TensorFlow keeps no allocator statistics for {device}")
  return {"batch": batch, "seq": seq, "predictions": predictions, "loss": loss,
          "static_bytes": static, "call_seconds": times[modes[0]] if len(modes) == 1 else times,
          "steps_per_call": steps, "num_params": memory.num_parameters(config)["total"],
          "modes": modes, "replicas": runtime.num_replicas, "tensor_peak_bytes": tensor_peak,
          "peak_bytes": tensor_peak if on_gpu else memory_stats.vm_hwm_bytes(),
          "device": "GPU" if on_gpu else "CPU"}


def main(argv=None) -> None:
  launch.print_result(run(launch.spec_from_argv(argv, __doc__)))
  sys.stdout.flush()
  os._exit(0)  # skip interpreter teardown of TensorFlow (slow, and nothing is left to save)


if __name__ == "__main__":
  main()
