"""One process of ``benchmarks/bench_scaling.py``: examples/s of the real train loop.

    python -m bert_tf.tools.scaling_worker '{"preset": "mini", "seq": 128,
        "per_replica_batch": 8, "steps": 40, "loop": 10, "distribution": "mirrored",
        "cpu_devices": 2, "output_dir": "/tmp/x"}'

Trains a preset on in-memory random features under the spec's distribution (one_device,
mirrored, multi_worker_mirrored from ``TF_CONFIG``, horovod under horovodrun), ``loop`` steps
per call of the compiled train loop; the first call (tracing) is warm-up, the rest are timed.
The chief prints ``RESULT {"examples_per_sec": ..., "replicas": ...}``.
"""
from __future__ import annotations

import os
import sys
import time

from absl import logging

from bert_tf import configs, distribution
from bert_tf.tools import launch, probe, synthetic

NUM_EXAMPLES = 256


def run(spec: dict) -> dict:
  """Returns {"examples_per_sec", "replicas", "is_chief"} for this process."""
  logging.set_verbosity(logging.WARNING)
  if spec.get("cpu_devices", 0) > 1:
    distribution.split_cpu(spec["cpu_devices"])
  runtime = distribution.make_runtime(spec["distribution"])
  config = configs.preset(spec["preset"], vocab_size=30522)
  seq, loop = spec["seq"], spec["loop"]
  predictions = spec.get("predictions") or synthetic.default_predictions(seq)
  batch = spec["per_replica_batch"] * runtime.num_replicas
  features = synthetic.random_pretraining_features(NUM_EXAMPLES, seq, predictions,
                                                   config.vocab_size)
  trainer = probe.build_pretrainer(
      config, features, runtime, spec["output_dir"], batch, seq, predictions, cache=True,
      optimizer=configs.OptimizerConfig(learning_rate=1e-4, num_train_steps=spec["steps"],
                                        num_warmup_steps=0),
      iterations_per_loop=loop)
  runner = probe.LoopRunner(trainer, loop)
  runner.run()  # warm-up: tracing and the first steps
  calls = max(1, spec["steps"] // loop - 1)
  began = time.perf_counter()
  for _ in range(calls):
    runner.run()
  seconds = time.perf_counter() - began
  return {"examples_per_sec": calls * loop * batch / seconds,
          "replicas": runtime.num_replicas, "is_chief": runtime.is_chief}


def main(argv=None) -> None:
  result = run(launch.spec_from_argv(argv, __doc__))
  if result["is_chief"]:
    launch.print_result(result)
  sys.stdout.flush()
  os._exit(0)  # skip interpreter teardown of TensorFlow (slow, and nothing is left to save)


if __name__ == "__main__":
  main()
