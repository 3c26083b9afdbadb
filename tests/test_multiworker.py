"""Scale-out parity on localhost: 2 MultiWorkerMirrored processes and 2 Horovod ranks each give
the same loss and weights as one device on the same global batch (fp32, and one fp16 step)."""
import json
import os
import sys

import numpy as np
import pytest

from bert_tf import distribution

import multiprocess
from training_spec import build_trainer

WORKER = os.path.join(multiprocess.ROOT, "tests", "workers", "train_worker.py")
RUNS = [
    # fp32: two steps, each of 2 replicas x 2 accumulation micro-batches.
    {"name": "fp32", "dtype": "fp32", "steps": 2, "accumulation": 2},
    # fp16 with loss scaling, one step. epsilon=1 makes the update ~0.1 * gradient (instead of
    # Adam's ~sign(gradient)), so the weights show gradient differences, not their signs.
    {"name": "fp16", "dtype": "fp16", "steps": 1, "epsilon": 1.0, "learning_rate": 1.0},
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Initial weights and the one-device results for every run."""
  root = tmp_path_factory.mktemp("reference")
  runtime = distribution.make_runtime("one_device")
  first = build_trainer(runtime, 0, name="init", output_dir=str(root / "init"))
  initial = first.model.get_weights()
  np.savez(root / "initial.npz", **{f"w{i}": w for i, w in enumerate(initial)})
  results = {}
  for run in RUNS:
    trainer = build_trainer(runtime, 0, **{**run, "output_dir": str(root / run["name"])})
    trainer.model.set_weights(initial)
    metrics = trainer.train()
    results[run["name"]] = (trainer.model.get_weights(), metrics)
  import tf_keras
  tf_keras.mixed_precision.set_global_policy("float32")
  return str(root / "initial.npz"), initial, results


def _spec(tmp_path, dist, initial_path):
  runs = [{**run, "output_dir": str(tmp_path / dist / run["name"])} for run in RUNS]
  return json.dumps({"distribution": dist, "initial_weights": initial_path, "features_seed": 0,
                     "runs": runs, "result_dir": str(tmp_path)})


def _compare(tmp_path, reference, label):
  _, initial, results = reference
  for run in RUNS:
    ref_weights, ref_metrics = results[run["name"]]
    got = np.load(tmp_path / f"{run['name']}.npz")
    got = [got[f"w{i}"] for i in range(len(got.files))]
    metrics = json.loads((tmp_path / f"{run['name']}.json").read_text())
    ref_delta = max(float(np.max(np.abs(r - i))) for r, i in zip(ref_weights, initial))
    diff = max(float(np.max(np.abs(r - g))) for r, g in zip(ref_weights, got))
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
  procs = multiprocess.start_workers(
      [sys.executable, WORKER, _spec(tmp_path, "multi_worker_mirrored", reference[0])],
      log_dir=str(tmp_path))
  codes = multiprocess.wait_all(procs, timeout=300)
  logs = [multiprocess.read_log(str(tmp_path), i) for i in range(2)]
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  _compare(tmp_path, reference, "multi_worker_mirrored x2")
  # Only the chief wrote checkpoints; the other worker's scratch directory is gone.
  files = os.listdir(tmp_path / "multi_worker_mirrored" / "fp32")
  assert "ckpt-2.index" in files and not any(f.startswith(".worker_") for f in files)


def test_horovod_two_ranks_equal_one_device(tmp_path, reference):
  pytest.importorskip("horovod.tensorflow", reason="Horovod not installed "
                      "(scripts/bootstrap.sh --horovod)")
  import subprocess
  result = subprocess.run(
      multiprocess.horovodrun([sys.executable, WORKER, _spec(tmp_path, "horovod",
                                                             reference[0])]),
      capture_output=True, text=True, timeout=300, cwd=multiprocess.ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _compare(tmp_path, reference, "horovod x2")
