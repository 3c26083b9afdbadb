"""One try of a memory or speed measurement: the real pretraining step in a fresh process.

Run by ``max_batch_size.py`` (one try per process, so an out-of-memory failure cannot poison
the next try) and by ``benchmarks/bench_memory.py`` / ``bench_throughput_grid.py``:

    python benchmarks/memory_worker.py '{"preset": "base", "seq": 128, "batch": 16,
                                         "recompute": "full", "dtype": "fp32"}'

It builds ``training.Pretrainer`` (model, google's AdamW, global-norm clipping) with an
in-memory repeating dataset and runs its real train loop (``_make_train_loop``:
``iterations_per_loop`` optimizer steps per ``tf.function`` call), then prints one line
``RESULT {json}`` with:

  peak_bytes       this process's peak resident set (``VmHWM`` from /proc/self/status) on
                   CPU; on a GPU, TensorFlow's allocator peak for GPU:0 (``get_memory_info``).
  tensor_peak_bytes  TensorFlow's allocator peak (live tensors) during the step(s), from
                   ``get_memory_info`` (CPU:0 or GPU:0), reset after the build.
  static_bytes     resident set after the model and optimizer exist and before the first step
                   (CPU), i.e. TensorFlow + weights + slots; the rest of the peak is the step.
  call_seconds     wall time of each loop call (the first includes tracing); with "modes",
                   a dict mode -> list.

Spec keys (JSON): preset or config (a bert_config.json's dict), vocab_size (30522), seq, predictions (google's: 20 at seq 128, 80
at 512 — ``default_predictions``), batch (global), dtype (fp32|fp16|bf16), recompute
(none|full|selective) or modes (a list, timed interleaved in one process), distribution (one_device|mirrored), cpu_devices (split the CPU for
mirrored), calls (timed loop calls after the first, default 0), steps_per_call (1),
dropout (None: the preset's 0.1), gpu_memory_limit_mb (cap GPU:0 as a logical device).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bert_tf  # noqa: E402,F401  (Keras 2 before tensorflow)


def default_predictions(seq: int) -> int:
  """google's max_predictions_per_seq: 20 at seq 128, 80 at seq 512 (about 15% of tokens)."""
  return {128: 20, 512: 80}.get(seq, max(1, int(round(0.15 * seq))))


def _rss_bytes() -> int:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(spec: dict) -> dict:
  import numpy as np
  import tensorflow as tf
  from absl import logging

  from bert_tf import configs, distribution, optimization, training

  logging.set_verbosity(logging.WARNING)
  gpus = tf.config.list_physical_devices("GPU")
  if gpus and spec.get("gpu_memory_limit_mb"):
    tf.config.set_logical_device_configuration(
        gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=spec["gpu_memory_limit_mb"])])
  if spec.get("distribution", "one_device") == "mirrored" and not gpus:
    distribution.split_cpu(spec.get("cpu_devices", 2))
  runtime = distribution.make_runtime(spec.get("distribution", "one_device"))

  seq, batch = spec["seq"], spec["batch"]
  preds = spec.get("predictions") or default_predictions(seq)
  overrides = {}
  if spec.get("dropout") is not None:
    overrides = dict(hidden_dropout_prob=spec["dropout"],
                     attention_probs_dropout_prob=spec["dropout"])
  if spec.get("config"):  # a bert_config.json's contents
    config = configs.BertConfig.from_dict(spec["config"]).replace(**overrides)
  else:
    config = configs.preset(spec.get("preset", "base"),
                            vocab_size=spec.get("vocab_size", 30522),
                            max_position_embeddings=max(512, seq), **overrides)

  # Full-length examples (no padding: padding would not change memory, only the mask), as many
  # as one global batch, repeated; the data is a few MB at most.
  rng = np.random.default_rng(0)
  n = batch
  features = {
      "input_ids": rng.integers(1, config.vocab_size, (n, seq)).astype(np.int32),
      "input_mask": np.ones((n, seq), np.int32),
      "segment_ids": (np.arange(seq)[None, :] >= seq // 2).repeat(n, 0).astype(np.int32),
      "masked_lm_positions": np.sort(rng.permuted(
          np.tile(np.arange(1, seq), (n, 1)), axis=1)[:, :preds], axis=1).astype(np.int32),
      "masked_lm_ids": rng.integers(1, config.vocab_size, (n, preds)).astype(np.int32),
      "masked_lm_weights": np.ones((n, preds), np.float32),
      "next_sentence_labels": rng.integers(0, 2, (n, 1)).astype(np.int32)}

  def dataset_fn(context, micro_batch):
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    return ds.repeat().batch(micro_batch, drop_remainder=True)

  steps_per_call = spec.get("steps_per_call", 1)
  # "modes": several recompute modes in this one process, their timed calls interleaved
  # round by round (order reversed every other round), so drift of a shared machine hits all
  # alike; "recompute": one mode. The first call of each (tracing) is not timed.
  modes = spec.get("modes") or [spec.get("recompute", "none")]
  with tempfile.TemporaryDirectory() as tmp:
    contenders = {}
    for mode in modes:
      train_config = training.TrainConfig(
          output_dir=os.path.join(tmp, mode), train_batch_size=batch, max_seq_length=seq,
          max_predictions_per_seq=preds, num_train_steps=10 ** 6,
          dtype=spec.get("dtype", "fp32"), recompute=mode, iterations_per_loop=steps_per_call,
          save_checkpoints_steps=10 ** 9, stall_timeout_secs=0)
      opt = optimization.OptimizerConfig(learning_rate=1e-4, num_train_steps=10 ** 6,
                                         num_warmup_steps=1000)
      trainer = training.Pretrainer(config, train_config, opt, runtime, dataset_fn)
      iterator = iter(trainer._distributed_train_dataset(0))  # pylint: disable=protected-access
      contenders[mode] = (trainer, iterator, trainer._make_train_loop())  # pylint: disable=protected-access
    num_steps = tf.constant(steps_per_call)
    static = _rss_bytes()
    device = "GPU:0" if gpus else "CPU:0"
    tf.config.experimental.reset_memory_stats(device)
    times = {mode: [] for mode in modes}
    loss = None

    def call(mode):
      _, iterator, loop = contenders[mode]
      began = time.perf_counter()
      value = float(loop(iterator, num_steps).numpy()[0])
      times[mode].append(time.perf_counter() - began)
      return value

    for r in range(1 + spec.get("calls", 0)):
      for mode in (modes if r % 2 == 0 else modes[::-1]):
        loss = call(mode)
  if len(modes) == 1:
    times = times[modes[0]]
  result = {"batch": batch, "seq": seq, "predictions": preds, "loss": loss,
            "static_bytes": static, "call_seconds": times, "steps_per_call": steps_per_call,
            "num_params": int(sum(np.prod(v.shape) for v in trainer.model.trainable_variables)),
            "modes": modes,
            "replicas": runtime.num_replicas}
  # TensorFlow's allocator: the peak of live tensor bytes during the step(s).
  result["tensor_peak_bytes"] = tf.config.experimental.get_memory_info(device)["peak"]
  if gpus:
    result["peak_bytes"] = result["tensor_peak_bytes"]
    result["device"] = "GPU"
  else:
    # VmHWM: the high-water mark of this process's own address space. ru_maxrss is not used:
    # Linux folds the pre-exec image into it (exec keeps the forking parent's high-water
    # mark), so a child of a 2 GiB pytest process would report at least 2 GiB.
    result["peak_bytes"] = _vm_hwm_bytes()
    result["device"] = "CPU"
  return result


def _vm_hwm_bytes() -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) * 1024  # kB
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
  result = main(json.loads(sys.argv[1]))
  print("RESULT " + json.dumps(result), flush=True)
  sys.stdout.flush()
  os._exit(0)  # skip interpreter teardown of TensorFlow (slow, and nothing is left to save)
