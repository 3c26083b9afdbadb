"""Distillation on the committed task (tests/data/distill, see its generate.py): teacher
accuracy, the student on gold labels alone, the student distilled without and with the
transfer set, and the student's inference examples/s against the teacher's.

  python benchmarks/bench_distillation.py [--teacher=L-2_H-128_A-2] [--student=L-2_H-32]
      [--epochs_scale=1.0] [--seed=1]

The teacher is trained on teacher/ (2000 labelled: its edge, standing in for a large teacher's
pretraining); the students see labelled/ (200 gold labels) and, with transfer data, transfer/
(1800 examples whose labels are ignored). Every run is seeded; accuracies are on the 400 dev
examples. Prints a Markdown table with the machine line in its header.
``experiment`` is also the body of tests/test_distill_task.py (smaller settings).
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--teacher", default="L-4_H-256_A-4", help="teacher preset")
  parser.add_argument("--student", default="L-2_H-128_A-2", help="student preset")
  parser.add_argument("--epochs_scale", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=1)
  args = parser.parse_args()
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  from bert_tf.tools.machine import machine_line
  vocab = len(open(os.path.join(TASK_DIR, "vocab.txt")).read().split())
  shape = lambda name: configs.preset(name, vocab_size=vocab, max_position_embeddings=64)  # noqa
  x = args.epochs_scale
  s = Settings(shape(args.teacher), shape(args.student), teacher_epochs=6 * x,
               gold_epochs=30 * x, distill_epochs=6 * x, seed=args.seed)
  out = experiment(tempfile.mkdtemp(prefix="bench_distill_"), s)
  acc, models, dev = out["accuracy"], out["models"], out["dev"]
  speed = {name: examples_per_second(models[name], dev) for name in ("teacher", "student_gold")}
  print(f"\nmachine: {machine_line()}")
  print(f"task: tests/data/distill (dev 400); teacher {args.teacher}, student {args.student}; "
        f"alpha {s.alpha}, T {s.temperature}, seed {s.seed}\n")
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


if __name__ == "__main__":
  main()
