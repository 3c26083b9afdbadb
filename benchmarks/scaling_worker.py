"""One process of benchmarks/bench_scaling.py: trains a preset on in-memory data and prints
{"examples_per_sec": ...} (warm-up excluded) from the chief."""
import json
import os
import sys

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
from absl import logging
import numpy as np
import tensorflow as tf

from bert_tf import configs, distribution, optimization, training


def main():
  spec = json.loads(sys.argv[1])
  if spec.get("cpu_devices", 0) > 1:
    distribution.split_cpu(spec["cpu_devices"])
  runtime = distribution.make_runtime(spec["distribution"])
  config = configs.preset(spec["preset"], vocab_size=30522)
  seq, preds = spec["seq"], 20
  rng = np.random.default_rng(0)
  n = 256
  features = {
      "input_ids": rng.integers(1, config.vocab_size, (n, seq)).astype(np.int32),
      "input_mask": np.ones((n, seq), np.int32), "segment_ids": np.zeros((n, seq), np.int32),
      "masked_lm_positions": np.tile(np.arange(1, preds + 1, dtype=np.int32), (n, 1)),
      "masked_lm_ids": rng.integers(1, config.vocab_size, (n, preds)).astype(np.int32),
      "masked_lm_weights": np.ones((n, preds), np.float32),
      "next_sentence_labels": rng.integers(0, 2, (n, 1)).astype(np.int32)}

  def dataset_fn(context, batch_size):
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    return ds.cache().repeat().batch(batch_size, drop_remainder=True)

  steps = spec["steps"]
  train_config = training.TrainConfig(
      output_dir=spec["output_dir"], train_batch_size=spec["per_replica_batch"] *
      runtime.num_replicas, max_seq_length=seq, max_predictions_per_seq=preds,
      num_train_steps=steps, iterations_per_loop=spec["loop"], save_checkpoints_steps=10 ** 9,
      stall_timeout_secs=0)
  opt = optimization.OptimizerConfig(learning_rate=1e-4, num_train_steps=steps,
                                     num_warmup_steps=0)
  logging.set_verbosity(logging.WARNING)
  trainer = training.Pretrainer(config, train_config, opt, runtime, dataset_fn)
  metrics = trainer.train(stop_after_steps=steps)
  if runtime.is_chief:
    print("RESULT " + json.dumps({"examples_per_sec": metrics["examples_per_sec"],
                                  "replicas": runtime.num_replicas}), flush=True)
  # Workers of a multi-worker job may exit before the chief's final save otherwise.
  os._exit(0)


if __name__ == "__main__":
  main()
