"""The committed distillation task (tests/data/distill): a teacher trained on 2000 labelled
examples beats a student trained on the 200 gold labels alone; the student distilled on the
teacher's soft labels of the 1800-example transfer set beats the gold-only student. Seeds fixed;
the body is benchmarks/bench_distillation.py's ``experiment`` (tiny models, fewer epochs)."""
import importlib.util
import os

import pytest

from bert_tf.testing.launch import ROOT
from bert_tf.testing.tiny import classifier_config, tiny_config


def _bench():
  path = os.path.join(ROOT, "benchmarks", "bench_distillation.py")
  spec = importlib.util.spec_from_file_location("bench_distillation", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.integration
def test_distilled_student_beats_the_gold_only_student(tmp_path):
  bench = _bench()
  vocab = len(open(os.path.join(bench.TASK_DIR, "vocab.txt")).read().split())
  settings = bench.Settings(classifier_config(vocab, dropout=0.0), tiny_config(vocab_size=vocab),
                            teacher_epochs=4, gold_epochs=20, distill_epochs=6,
                            without_transfer=False)
  accuracy = bench.experiment(str(tmp_path), settings, log=print)["accuracy"]
  print(accuracy)
  assert accuracy["teacher"] >= 0.9, accuracy
  assert accuracy["student_gold"] <= accuracy["teacher"] - 0.1, accuracy
  assert accuracy["student_distilled_transfer"] >= accuracy["student_gold"] + 0.1, accuracy
