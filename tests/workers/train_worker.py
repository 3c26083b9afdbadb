"""A training worker for the multi-process tests (MultiWorkerMirrored via TF_CONFIG, or Horovod
under horovodrun). Usage: train_worker.py SPEC_JSON

SPEC: {"distribution": ..., "initial_weights": npz, "features_seed": int, "runs": [{"name",
"dtype", "steps", "output_dir", "epsilon", "learning_rate"}], "result_dir": dir}
For each run: load the initial weights, train, and (chief only) save the weights to
result_dir/<name>.npz with the last metrics. With "classifier": true, then also fine-tune
training_spec.build_classifier and evaluate it (every worker takes part; the chief saves
classifier.npz with the weights and the eval logits, and classifier.json with the metrics).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bert_tf  # noqa: E402,F401  (Keras 2 before tensorflow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bert_tf import distribution  # noqa: E402
from training_spec import build_classifier, build_trainer  # noqa: E402


def main():
  spec = json.loads(sys.argv[1])
  runtime = distribution.make_runtime(spec["distribution"])
  initial = dict(np.load(spec["initial_weights"]))
  for run in spec["runs"]:
    trainer = build_trainer(runtime, spec["features_seed"], **run)
    trainer.model.set_weights([initial[f"w{i}"] for i in range(len(initial))])
    metrics = trainer.train()
    if runtime.is_chief:
      weights = {f"w{i}": w for i, w in enumerate(trainer.model.get_weights())}
      np.savez(os.path.join(spec["result_dir"], f"{run['name']}.npz"), **weights)
      with open(os.path.join(spec["result_dir"], f"{run['name']}.json"), "w") as f:
        json.dump({k: v for k, v in metrics.items() if not isinstance(v, str)}, f)
  if spec.get("classifier"):
    trainer, train, evals = build_classifier(
        runtime, output_dir=os.path.join(spec["result_dir"], "classifier"))
    trainer.train(train)
    results = trainer.evaluate(evals)
    logits = trainer.logits(evals[""], trainer.config.eval_batch_size)
    if runtime.is_chief:
      np.savez(os.path.join(spec["result_dir"], "classifier.npz"), logits=logits,
               **{f"w{i}": w for i, w in enumerate(trainer.model.get_weights())})
      with open(os.path.join(spec["result_dir"], "classifier.json"), "w") as f:
        json.dump(results, f)
  print(f"worker {runtime.worker_index} done", flush=True)


if __name__ == "__main__":
  main()
