"""A training worker for the multi-process parity tests: one MultiWorkerMirrored worker (via
TF_CONFIG) or one Horovod rank (under horovodrun).

  python -m bert_tf.testing.train_worker SPEC_JSON

SPEC: {"distribution", "initial_weights": npz, "features_seed": int, "runs": [{"name",
"output_dir", and ``parity_pretrainer`` overrides}], "result_dir": dir, "classifier": bool}.
For each run: load the initial weights, train, and (chief only) save the weights to
result_dir/<name>.npz and the last metrics to <name>.json. With "classifier": true, then also
fine-tune ``parity_classifier`` and evaluate it (every worker takes part; the chief saves
classifier.npz with the weights and the eval logits, and classifier.json with the metrics).

The tests build the same ``parity_pretrainer`` / ``parity_classifier`` on one device as the
reference.
"""
import json
import os
import sys

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
import numpy as np

from bert_tf import distribution
from bert_tf.testing import builders
from bert_tf.testing.synthetic import classifier_features
from bert_tf.testing.tiny import tiny_config


def parity_pretrainer(runtime, features_seed, *, output_dir, steps=2, **overrides):
  """A pretraining run with a log line at every step, a checkpoint at the end, no warm-up and
  no stall watchdog."""
  values = dict(iterations_per_loop=1, save_checkpoints_steps=steps, num_warmup_steps=0,
                stall_timeout_secs=0.0, **overrides)
  return builders.pretrainer(output_dir, runtime, steps=steps, features_seed=features_seed,
                             **values)


def parity_classifier(runtime, *, output_dir, accumulation=1):
  """A token-batched MRPC fine-tune (no dropout): (trainer, train features, eval sets)."""
  trainer = builders.classifier_trainer(
      output_dir, runtime, task="mrpc",
      config=tiny_config(vocab_size=100, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=32),
      train_batch_size=160, eval_batch_size=96, max_seq_length=24, num_train_epochs=1,
      iterations_per_loop=2, save_checkpoints_steps=100,
      gradient_accumulation_steps=accumulation, seed=3, learning_rate=1e-2)
  # 37 eval examples: the batches do not split evenly over the replicas.
  return trainer, classifier_features(0, 40), {"": classifier_features(1, 37)}


def _save(result_dir, name, weights, **arrays):
  np.savez(os.path.join(result_dir, f"{name}.npz"), **arrays,
           **{f"w{i}": w for i, w in enumerate(weights)})


def main(argv):
  if len(argv) != 2:
    sys.exit(__doc__)
  spec = json.loads(argv[1])
  runtime = distribution.make_runtime(spec["distribution"])
  initial = dict(np.load(spec["initial_weights"]))
  result_dir = spec["result_dir"]
  for run in spec["runs"]:
    run = dict(run)
    name = run.pop("name")
    trainer = parity_pretrainer(runtime, spec["features_seed"], **run)
    trainer.model.set_weights([initial[f"w{i}"] for i in range(len(initial))])
    metrics = trainer.train()
    if runtime.is_chief:
      _save(result_dir, name, trainer.model.get_weights())
      with open(os.path.join(result_dir, f"{name}.json"), "w") as f:
        json.dump({k: v for k, v in metrics.items() if not isinstance(v, str)}, f)
  if spec.get("classifier"):
    trainer, train, evals = parity_classifier(
        runtime, output_dir=os.path.join(result_dir, "classifier"))
    trainer.train(train)
    results = trainer.evaluate(evals)
    logits = trainer.logits(evals[""], trainer.config.eval_batch_size)
    if runtime.is_chief:
      _save(result_dir, "classifier", trainer.model.get_weights(), logits=logits)
      with open(os.path.join(result_dir, "classifier.json"), "w") as f:
        json.dump(results, f)
  print(f"worker {runtime.worker_index} done", flush=True)


if __name__ == "__main__":
  main(sys.argv)
