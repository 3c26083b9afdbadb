"""Tagging prediction across processes: 2 MultiWorkerMirrored workers (and 2 Horovod ranks when
Horovod is installed) predict the committed CoNLL dev file with the same weights as one device:
every sentence exactly once, in file order, with the same tags (predict_words also checks that
every window and every word with a token was predicted exactly once across the workers).

This file is also the worker: ``python tests/test_tagging_multiworker.py SPEC_JSON`` with SPEC
{"distribution", "weights": npz, "output_dir"}; the chief writes test_predictions.txt there.
"""
import json
import os
import subprocess
import sys

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
import numpy as np
import pytest

from bert_tf.testing import launch

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "conll")
# 8 tokens: long sentences split into several windows; batches of 5 windows do not split
# evenly over 2 workers, and the last batch is short.
MAX_SEQ, BATCH = 8, 5


def _trainer(runtime, output_dir):
  from bert_tf import tokenization
  from bert_tf.configs import FinetuneConfig, OptimizerConfig
  from bert_tf.data import tagging as data
  from bert_tf.testing.tiny import classifier_config
  from bert_tf.training.tagging import TaggerTrainer, TaggingSpec
  tokenizer = tokenization.BertTokenizer(os.path.join(SAMPLE, "vocab.txt"), do_lower_case=False)
  labels = data.label_list(data.read_conll(os.path.join(SAMPLE, "train.txt")))
  sentences = data.read_conll(os.path.join(SAMPLE, "dev.txt"), labels=labels)
  features = data.featurize(sentences, tokenizer, MAX_SEQ,
                            {label: i for i, label in enumerate(labels)})
  config = FinetuneConfig(output_dir=output_dir, predict_batch_size=BATCH,
                          max_seq_length=MAX_SEQ, seed=4, stall_timeout_secs=0.0)
  trainer = TaggerTrainer(classifier_config(len(tokenizer.vocab), 0.0), config,
                          OptimizerConfig(learning_rate=1e-3), runtime,
                          TaggingSpec("conll2003", tuple(labels)))
  return trainer, features, sentences


def _worker(spec):
  from bert_tf import distribution
  runtime = distribution.make_runtime(spec["distribution"])
  trainer, features, sentences = _trainer(runtime, spec["output_dir"])
  weights = np.load(spec["weights"])
  trainer.model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
  trainer._restored = True  # the weights are set: nothing to restore
  trainer.predict(features, sentences)
  workers = int(runtime.sum_over_workers(np.ones(1, np.int32))[0])
  print(f"worker {runtime.worker_index} of {workers} done", flush=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """One device: random (seeded) weights whose predictions vary by word, and its file."""
  from bert_tf import distribution
  root = tmp_path_factory.mktemp("one_device")
  trainer, features, sentences = _trainer(distribution.make_runtime("one_device"), str(root))
  weights = trainer.model.get_weights()
  np.savez(root / "weights.npz", **{f"w{i}": w for i, w in enumerate(weights)})
  trainer._restored = True
  trainer.predict(features, sentences)
  text = (root / "test_predictions.txt").read_text()
  assert len(features) > len(sentences)  # some sentences span several windows
  return str(root / "weights.npz"), text, sentences


def _check(reference, output_dir, label):
  _, expected, sentences = reference
  got = (output_dir / "test_predictions.txt").read_text()
  blocks = [b for b in got.strip("\n").split("\n\n") if not b.startswith("-DOCSTART-")]
  words = [tuple(line.split()[0] for line in b.splitlines()) for b in blocks]
  assert words == [s.words for s in sentences]  # every sentence once, in file order
  predicted = {line.split()[2] for b in blocks for line in b.splitlines()}
  print(f"{label}: {len(sentences)} sentences, {sum(map(len, words))} words, "
        f"{len(predicted)} distinct predicted tags; file equal to one device's")
  assert len(predicted) > 1  # not a degenerate constant prediction
  assert got == expected


def _spec(tmp_path, dist, reference):
  return json.dumps({"distribution": dist, "weights": reference[0],
                     "output_dir": str(tmp_path / "out")})


@pytest.mark.distributed
def test_multi_worker_predict_tags_every_sentence_once_as_one_device(tmp_path, reference):
  (tmp_path / "out").mkdir()
  procs = launch.start_workers(
      [sys.executable, os.path.abspath(__file__),
       _spec(tmp_path, "multi_worker_mirrored", reference)], log_dir=str(tmp_path))
  codes = launch.wait_all(procs, timeout=180)
  logs = [launch.read_log(str(tmp_path), i) for i in range(2)]
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  assert all("of 2 done" in log for log in logs)
  _check(reference, tmp_path / "out", "multi_worker_mirrored x2")


@pytest.mark.distributed
def test_horovod_predict_tags_every_sentence_once_as_one_device(tmp_path, reference):
  pytest.importorskip("horovod.tensorflow", reason="Horovod not installed "
                      "(scripts/bootstrap.sh --horovod)")
  (tmp_path / "out").mkdir()
  result = subprocess.run(
      launch.horovodrun([sys.executable, os.path.abspath(__file__),
                         _spec(tmp_path, "horovod", reference)]),
      capture_output=True, text=True, timeout=180, cwd=launch.ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _check(reference, tmp_path / "out", "horovod x2")


if __name__ == "__main__":
  _worker(json.loads(sys.argv[1]))
