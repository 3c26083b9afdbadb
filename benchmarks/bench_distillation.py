"""Distillation on the committed task (tests/data/distill, see its generate.py): teacher
accuracy, the student on gold labels alone, the student distilled without and with the
transfer set, and inference examples/s: the two models here, and the presets at sequence
length 128 (the reason to distil into a small BERT).

  python benchmarks/bench_distillation.py [--teacher=L-2_H-128_A-2] [--student=L-2_H-32_A-4]
      [--epochs_scale=1.0] [--seed=1] [--dropout=0.0] [--speed_presets=tiny,...,base]

The teacher is trained on teacher/ (2000 labelled: its edge, standing in for a large teacher's
pretraining); the students see labelled/ (200 gold labels) and, with transfer data, transfer/
(1800 examples whose labels are ignored). All are trained from scratch (no pretraining: the
task's words are made up), so the default pair is small; presets work too
(``--teacher=L-4_H-256_A-4``), though from scratch at these settings mini did not learn the
task here. Every run is seeded; accuracies are on the 400 dev examples. Prints Markdown tables
with the machine line in the header. ``experiment`` is also the body of
tests/test_distill_task.py (smaller settings).
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np

from bert_tf import configs, distribution, tokenization
from bert_tf.configs.distillation import DistillConfig
from bert_tf.data import classifier as data
from bert_tf.data.classifier import distill as distill_data
from bert_tf.training import distillation
from bert_tf.training.classification import ClassifierTrainer

TASK_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
                        "data", "distill")
SEQ = 24


@dataclasses.dataclass(frozen=True)
class Settings:
  teacher: configs.BertConfig
  student: configs.BertConfig
  teacher_epochs: float = 6.0
  gold_epochs: float = 30.0      # 200 examples: as many steps as ~3 epochs of 2000
  distill_epochs: float = 6.0
  batch: int = 16
  learning_rate: float = 3e-4
  alpha: float = 0.0
  temperature: float = 2.0
  seed: int = 1
  without_transfer: bool = True  # also the student distilled on the 200 labelled alone


def _run(output_dir, s: Settings, epochs, **overrides):
  values = dict(output_dir=output_dir, train_batch_size=s.batch, eval_batch_size=256,
                predict_batch_size=256, max_seq_length=SEQ, num_train_epochs=epochs,
                iterations_per_loop=50, save_checkpoints_steps=10 ** 6, seed=s.seed,
                classifier_dropout=0.0)
  values.update(overrides)
  return configs.FinetuneConfig(**values)


def _optimizer(s: Settings):
  return configs.OptimizerConfig(learning_rate=s.learning_rate)


def experiment(work_dir: str, s: Settings, log=print) -> dict:
  """Trains the teacher, the gold-only student and two distilled students; returns their dev
  accuracies, the trainers' models and the dev features."""
  task = data.make_task("sst2")
  tokenizer = tokenization.BertTokenizer(os.path.join(TASK_DIR, "vocab.txt"))
  runtime = distribution.make_runtime("one_device")
  load = lambda folder, split: data.load_features(  # noqa: E731
      task, os.path.join(TASK_DIR, folder), split, tokenizer, SEQ, log=lambda *_: None)[""]
  dev = load("labelled", "dev")
  results, models = {}, {}

  def fit(name, trainer, features):
    began = time.perf_counter()
    trainer.train(features)
    results[name] = trainer.evaluate({"": dev})["eval_accuracy"]
    models[name] = trainer
    log(f"{name}: dev accuracy {results[name]:.4f} ({time.perf_counter() - began:.0f} s)")

  teacher_dir = os.path.join(work_dir, "teacher")
  fit("teacher", ClassifierTrainer(s.teacher, _run(teacher_dir, s, s.teacher_epochs),
                                   _optimizer(s), runtime, task), load("teacher", "train"))
  fit("student_gold", ClassifierTrainer(
      s.student, _run(os.path.join(work_dir, "gold"), s, s.gold_epochs), _optimizer(s),
      runtime, task), load("labelled", "train"))
  distill = DistillConfig(alpha=s.alpha, temperature=s.temperature, teacher_config=s.teacher,
                          teacher_checkpoint=teacher_dir)
  runs = (("student_distilled", None, s.gold_epochs),) if s.without_transfer else ()
  for name, transfer, epochs in runs + (("student_distilled_transfer", "transfer",
                                         s.distill_epochs),):
    d = dataclasses.replace(distill, transfer_data_dir=transfer and os.path.join(TASK_DIR,
                                                                                 transfer))
    examples, labelled = distill_data.read_examples(task, os.path.join(TASK_DIR, "labelled"),
                                                    d.transfer_data_dir, log=lambda *_: None)
    features = distill_data.distill_features(examples, labelled, task, tokenizer, SEQ,
                                             tokenizer)
    fit(name, distillation.DistillationTrainer(
        s.student, _run(os.path.join(work_dir, name), s, epochs), _optimizer(s), runtime, task,
        d), features)
  return dict(accuracy=results, models=models, dev=dev)


def examples_per_second(trainer, features, repeats=3) -> float:
  """Inference over ``features`` (best of ``repeats``, after a warm-up pass)."""
  trainer.logits(features, 256)
  best = float("inf")
  for _ in range(repeats):
    began = time.perf_counter()
    trainer.logits(features, 256)
    best = min(best, time.perf_counter() - began)
  return len(features) / best


def preset_speed(names, seq=128, batch=32, batches=4) -> dict:
  """Inference examples/s of presets on random ids (speed does not depend on the weights):
  the gain a distilled small BERT brings. Best of 3 timed passes after a warm-up."""
  import tensorflow as tf
  from bert_tf.modeling import BertClassifier, BertEncoder
  speeds = {}
  for name in names:
    model = BertClassifier(BertEncoder(configs.preset(name)), 3)
    ids = tf.random.stateless_uniform([batch, seq], [1, 2], 5, 30522, tf.int32)
    inputs = dict(input_ids=ids, input_mask=tf.ones_like(ids), segment_ids=tf.zeros_like(ids))
    forward = tf.function(lambda x, m=model: m(x, training=False)["logits"])
    forward(inputs).numpy()
    best = float("inf")
    for _ in range(3):
      began = time.perf_counter()
      for _ in range(batches):
        forward(inputs).numpy()
      best = min(best, time.perf_counter() - began)
    speeds[name] = batch * batches / best
  return speeds


def _shape(name: str, vocab_size: int, dropout: float) -> configs.BertConfig:
  """A preset (the 24 small BERTs, base, large) or any ``L-<layers>_H-<hidden>_A-<heads>``
  (inner size 4H), at this task's vocabulary size."""
  import re
  values = dict(vocab_size=vocab_size, max_position_embeddings=64,
                hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
  match = re.fullmatch(r"L-(\d+)_H-(\d+)_A-(\d+)", name)
  if name in configs.PRESETS or not match:
    return configs.preset(name, **values)
  layers, hidden, heads = map(int, match.groups())
  return configs.BertConfig(num_hidden_layers=layers, hidden_size=hidden,
                            num_attention_heads=heads, intermediate_size=4 * hidden, **values)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--teacher", default="L-2_H-128_A-2", help="teacher: a preset or "
                      "L-<layers>_H-<hidden>_A-<heads>")
  parser.add_argument("--student", default="L-2_H-32_A-4", help="student: likewise")
  parser.add_argument("--epochs_scale", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument("--speed_presets", default="tiny,mini,small,medium,base",
                      help="presets whose inference speed to compare (empty: none)")
  parser.add_argument("--dropout", type=float, default=0.0,
                      help="hidden and attention dropout (models trained from scratch here)")
  args = parser.parse_args()
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from bert_tf.tools.machine import machine_line
  vocab = len(open(os.path.join(TASK_DIR, "vocab.txt")).read().split())
  shape = lambda name: _shape(name, vocab, args.dropout)  # noqa: E731
  x = args.epochs_scale
  s = Settings(shape(args.teacher), shape(args.student), teacher_epochs=6 * x,
               gold_epochs=30 * x, distill_epochs=6 * x, seed=args.seed)
  out = experiment(tempfile.mkdtemp(prefix="bench_distill_"), s)
  acc, models, dev = out["accuracy"], out["models"], out["dev"]
  speed = {name: examples_per_second(models[name], dev) for name in ("teacher", "student_gold")}
  print(f"\nmachine: {machine_line()}")
  print(f"task: tests/data/distill (dev 400); teacher {args.teacher}, student {args.student}, "
        f"from scratch, dropout {args.dropout}; epochs teacher {s.teacher_epochs:g}, gold "
        f"{s.gold_epochs:g}, distil {s.distill_epochs:g}; batch {s.batch}, lr "
        f"{s.learning_rate:g}; alpha {s.alpha}, T {s.temperature}, seed {s.seed}\n")
  print("| model | dev accuracy | inference examples/s |")
  print("|---|---|---|")
  print(f"| teacher {args.teacher} (2000 gold) | {acc['teacher']:.4f} | "
        f"{speed['teacher']:.0f} |")
  for name, what in (("student_gold", "gold labels only (200)"),
                     ("student_distilled", "distilled, no transfer data (200)"),
                     ("student_distilled_transfer", "distilled + transfer set (200 + 1800)")):
    print(f"| student {args.student}, {what} | {acc[name]:.4f} | "
          f"{speed['student_gold']:.0f} |")
  print(f"\nstudent / teacher inference speed: "
        f"{speed['student_gold'] / speed['teacher']:.1f}x")
  names = [n for n in args.speed_presets.split(",") if n]
  if names:
    speeds = preset_speed(names)
    print("\n| preset (seq 128, batch 32, random weights) | inference examples/s | vs "
          f"{names[-1]} |\n|---|---|---|")
    for name in names:
      shape = configs.PRESETS[name]
      print(f"| {name} (L-{shape['num_hidden_layers']}_H-{shape['hidden_size']}) | "
            f"{speeds[name]:.1f} | {speeds[name] / speeds[names[-1]]:.1f}x |")


if __name__ == "__main__":
  main()
