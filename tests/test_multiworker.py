"""Scale-out parity on localhost: 2 MultiWorkerMirrored processes and 2 Horovod ranks each give
the same loss and weights as one device on the same global batch (fp32, and one fp16 step),
and the same fine-tuned classifier and eval results (every eval example counted once), and the
same SQuAD answers (every feature predicted once, every question answered once)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bert_tf import distribution
from bert_tf.testing import launch
from bert_tf.testing.numerics import max_diff
from bert_tf.testing.train_worker import (parity_classifier, parity_pretrainer, parity_squad,
                                          squad_predict, squad_sets)

pytestmark = pytest.mark.distributed

WORKER = [sys.executable, "-m", "bert_tf.testing.train_worker"]
RUNS = [
    # fp32: two steps, each of 2 replicas x 2 accumulation micro-batches.
    {"name": "fp32", "dtype": "fp32", "steps": 2, "gradient_accumulation_steps": 2},
    # fp16 with loss scaling, one step. epsilon=1 makes the update ~0.1 * gradient (instead of
    # Adam's ~sign(gradient)), so the weights show gradient differences, not their signs.
    {"name": "fp16", "dtype": "fp16", "steps": 1, "epsilon": 1.0, "learning_rate": 1.0},
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Initial weights and the one-device results for every run."""
  root = tmp_path_factory.mktemp("reference")
  runtime = distribution.make_runtime("one_device")
  first = parity_pretrainer(runtime, 0, output_dir=str(root / "init"))
  initial = first.model.get_weights()
  np.savez(root / "initial.npz", **{f"w{i}": w for i, w in enumerate(initial)})
  results = {}
  for run in RUNS:
    values = {k: v for k, v in run.items() if k != "name"}
    trainer = parity_pretrainer(runtime, 0, **values, output_dir=str(root / run["name"]))
    trainer.model.set_weights(initial)
    metrics = trainer.train()
    results[run["name"]] = (trainer.model.get_weights(), metrics)
  import tf_keras
  tf_keras.mixed_precision.set_global_policy("float32")
  # Fine-tuning: one device with 2 accumulation micro-batches = 2 replicas' share of a step.
  classifier, train, evals = parity_classifier(runtime, output_dir=str(root / "classifier"),
                                               accumulation=2)
  classifier.train(train)
  results["classifier"] = (classifier.model.get_weights(), classifier.evaluate(evals),
                           classifier.logits(evals[""], classifier.config.eval_batch_size))
  # SQuAD: predict the committed 2.0 file with the seed's weights.
  results["squad"] = squad_predict(parity_squad(runtime, output_dir=str(root / "squad")),
                                   squad_sets())
  return str(root / "initial.npz"), initial, results


def _spec(tmp_path, dist, initial_path):
  runs = [{**run, "output_dir": str(tmp_path / dist / run["name"])} for run in RUNS]
  return json.dumps({"distribution": dist, "initial_weights": initial_path, "features_seed": 0,
                     "runs": runs, "result_dir": str(tmp_path), "classifier": True,
                     "squad": True})


def _compare_squad(tmp_path, reference, label):
  ref = reference[2]["squad"]
  got = json.loads((tmp_path / "squad.json").read_text())
  logit_diff = max_diff([ref["logits"]], [np.load(tmp_path / "squad.npz")["logits"]])
  qids = list(ref["predictions"])
  odds = max(abs(got["null_odds"][q] - ref["null_odds"][q]) for q in qids)
  print(f"{label} SQuAD predict: {len(qids)} questions, max |span logit diff| "
        f"{logit_diff:.2e}, max |null odds diff| {odds:.2e}")
  assert len(qids) == 17 and list(got["predictions"]) == qids  # each question once, in order
  assert got["predictions"] == ref["predictions"]
  texts = lambda out: {q: [e["text"] for e in out["nbest"][q]] for q in qids}  # noqa: E731
  assert texts(got) == texts(ref)  # the whole n-best, spans included
  assert logit_diff <= 1e-5 and odds <= 1e-4
  assert got["eval"] == pytest.approx(ref["eval"])


def _compare(tmp_path, reference, label):
  _compare_squad(tmp_path, reference, label)
  _, initial, results = reference
  ref_weights, ref_eval, ref_logits = results["classifier"]
  got = np.load(tmp_path / "classifier.npz")
  got_eval = json.loads((tmp_path / "classifier.json").read_text())
  diff = max_diff(ref_weights, [got[f"w{i}"] for i in range(len(ref_weights))])
  logit_diff = max_diff([ref_logits], [got["logits"]])
  print(f"{label} fine-tuning: max |weight diff| {diff:.2e}, max |eval logit diff| "
        f"{logit_diff:.2e}; accuracy {got_eval['eval_accuracy']} vs {ref_eval['eval_accuracy']}")
  assert ref_eval["global_step"] >= 3  # it trained (40 varied-length examples, 160 tokens/step)
  files = os.listdir(tmp_path / "classifier")  # the chief's checkpoints, no worker scratch
  assert "checkpoint" in files and not any(f.startswith(".worker_") for f in files)
  assert diff <= 1e-5 and logit_diff <= 1e-5
  assert np.all(np.any(got["logits"] != 0, axis=1))  # every eval example has its logits
  for key in ("eval_accuracy", "eval_f1", "eval_loss", "global_step"):
    assert got_eval[key] == pytest.approx(ref_eval[key], abs=1e-5), key
  for run in RUNS:
    ref_weights, ref_metrics = results[run["name"]]
    got = np.load(tmp_path / f"{run['name']}.npz")
    got = [got[f"w{i}"] for i in range(len(got.files))]
    metrics = json.loads((tmp_path / f"{run['name']}.json").read_text())
    ref_delta = max_diff(ref_weights, initial)
    diff = max_diff(ref_weights, got)
    print(f"{label} {run['name']}: max |weight diff| vs one device {diff:.2e} (update size "
          f"{ref_delta:.2e}); loss {metrics['loss']:.6f} vs {ref_metrics['loss']:.6f}")
    if run["dtype"] == "fp32":
      assert diff <= 1e-5
      assert metrics["loss"] == pytest.approx(ref_metrics["loss"], abs=1e-5)
    else:
      assert diff <= 2e-2 * ref_delta
      assert metrics["loss"] == pytest.approx(ref_metrics["loss"], abs=1e-3)
      assert metrics["loss_scale"] == ref_metrics["loss_scale"]
      assert metrics["skipped_steps"] == ref_metrics["skipped_steps"] == 0


def test_multi_worker_mirrored_two_processes_equal_one_device(tmp_path, reference):
  procs = launch.start_workers(
      [*WORKER, _spec(tmp_path, "multi_worker_mirrored", reference[0])], log_dir=str(tmp_path))
  codes = launch.wait_all(procs, timeout=300)
  logs = [launch.read_log(str(tmp_path), i) for i in range(2)]
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  _compare(tmp_path, reference, "multi_worker_mirrored x2")
  # Only the chief wrote checkpoints; the other worker's scratch directory is gone.
  files = os.listdir(tmp_path / "multi_worker_mirrored" / "fp32")
  assert "ckpt-2.index" in files and not any(f.startswith(".worker_") for f in files)


def test_horovod_two_ranks_equal_one_device(tmp_path, reference):
  pytest.importorskip("horovod.tensorflow", reason="Horovod not installed "
                      "(scripts/bootstrap.sh --horovod)")
  result = subprocess.run(
      launch.horovodrun([*WORKER, _spec(tmp_path, "horovod", reference[0])]),
      capture_output=True, text=True, timeout=300, cwd=launch.ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _compare(tmp_path, reference, "horovod x2")
