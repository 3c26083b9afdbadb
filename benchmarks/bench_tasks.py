"""Fine-tuning task throughput: examples/s of each task at its usual sequence length, training
and prediction -> Markdown table.

  classifier (MRPC-shaped sentence pairs) at 128, SQuAD at 384, tagging (CoNLL) at 128

Each (task, preset) cell runs in a fresh process (``--cell``) with the task's real trainer on
one device, randomly initialised (throughput does not depend on the weights):

* train: ``trainer.train`` (the engine's loop: AdamW, dropout 0.1, every batch padded to the
  sequence length as google's scripts do), ``--steps`` steps per loop call; the figure is the
  engine's own ``examples_per_sec`` over the timed calls (the first call traces and is left
  out), from ``train_metrics.jsonl``; and examples per CPU-second of the process (all its
  threads) over the same calls, steadier than wall time on a shared machine. An example is a
  feature: a SQuAD doc span, a tagging window, a classifier pair.
* predict: the task's inference over a set of full-length features (classifier logits, SQuAD
  span logits, tagging word predictions, each gathered and coverage-checked as in the
  scripts), run twice; the second (traced) pass is timed, in wall and process CPU time.
  SQuAD's n-best post-processing is not included.

Every feature is full length: classifier pairs of exactly 128 tokens, SQuAD doc spans of a
long context at 384 (doc_stride 128, query 64), tagging windows of long sentences cut at word
boundaries near 128 (their mean length is printed).

    python benchmarks/bench_tasks.py --presets tiny,mini          # a few minutes on 2 cores
    python benchmarks/bench_tasks.py --presets base --train_batch 8 --steps 1 --calls 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = {"classifier": 128, "squad": 384, "tagging": 128}
SQUAD_VOCAB = os.path.join(ROOT, "tests", "data", "squad", "vocab.txt")
CONLL_VOCAB = os.path.join(ROOT, "tests", "data", "conll", "vocab.txt")


def _words(vocab_file, rng, count):
  with open(vocab_file, encoding="utf-8") as f:
    vocab = [w.strip() for w in f if w.strip().isalpha() and not w.startswith("[")]
  return [vocab[i] for i in rng.integers(0, len(vocab), count)]


def _features(task, seq, count, rng):
  """``count`` full-length features of ``task`` (and what the trainer's predict needs)."""
  from bert_tf import tokenization
  if task == "classifier":
    from bert_tf.data import classifier as data
    offsets = (np.arange(count + 1) * seq).astype(np.int64)
    ids = rng.integers(5, 1000, count * seq).astype(np.int32)
    first = np.full(count, seq // 2, np.int32)
    ids[offsets[:-1]] = 2
    ids[offsets[:-1] + first - 1] = 3
    ids[offsets[1:] - 1] = 3
    return data.Features(ids=ids, offsets=offsets, first_lengths=first,
                         labels=rng.integers(0, 2, count).astype(np.int32)), None
  if task == "squad":
    from bert_tf.data import squad
    tokenizer = tokenization.BertTokenizer(SQUAD_VOCAB)
    examples, made = [], 0
    while made < count:  # one long paragraph per question: many 384-token doc spans each
      context = _words(SQUAD_VOCAB, rng, 2000)
      question = " ".join(_words(SQUAD_VOCAB, rng, 12))
      start = int(rng.integers(0, 1990))
      examples.append(squad.SquadExample(f"q{len(examples)}", question, context,
                                         " ".join(context[start:start + 3]), start, start + 2))
      made += len(squad.convert_examples_to_features(examples[-1:], tokenizer, seq, 128, 64,
                                                     True))
    features = squad.convert_examples_to_features(examples, tokenizer, seq, 128, 64, True)
    return features, None
  from bert_tf.data import tagging
  tokenizer = tokenization.BertTokenizer(CONLL_VOCAB, do_lower_case=False)
  tags = ("O", "B-PER", "I-PER", "B-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC", "I-LOC")
  sentences = []
  while True:
    words = _words(CONLL_VOCAB, rng, 400)
    sentences.append(tagging.Sentence(tuple(words), tuple(rng.choice(tags, len(words))), 1,
                                      f"synthetic:{len(sentences)}"))
    features = tagging.featurize(sentences, tokenizer, seq, {t: i for i, t in enumerate(tags)})
    if len(features) >= count:
      return features, tags


def _cell(spec):
  """One (task, preset): {"train", "predict", "mean_tokens", "features"}."""
  import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
  from bert_tf import distribution
  from bert_tf.configs import FinetuneConfig, OptimizerConfig, preset
  task, seq = spec["task"], TASKS[spec["task"]]
  rng = np.random.default_rng(0)
  train_batch, predict_batch = spec["train_batch"], spec["predict_batch"]
  steps, calls = spec["steps"], spec["calls"]
  train_count = train_batch * steps * calls
  features, tags = _features(task, seq, max(train_count, spec["predict_count"]), rng)
  config = preset(spec["preset"], max_position_embeddings=max(512, seq))
  runtime = distribution.make_runtime("one_device")
  output_dir = tempfile.mkdtemp(prefix=f"bench_{task}_")
  common = dict(output_dir=output_dir, train_batch_size=train_batch, max_seq_length=seq,
                num_train_epochs=1, iterations_per_loop=steps, save_checkpoints_steps=10 ** 6,
                seed=1, stall_timeout_secs=0.0)
  opt = OptimizerConfig(learning_rate=2e-5)
  if task == "classifier":
    from bert_tf.data.classifier import make_task
    from bert_tf.training.classification import ClassifierTrainer
    trainer = ClassifierTrainer(config, FinetuneConfig(**common), opt, runtime,
                                make_task("mrpc"))
    predict = lambda f: trainer.logits(f, predict_batch)  # noqa: E731
  elif task == "squad":
    from bert_tf.configs.squad import SquadConfig
    from bert_tf.training.squad import SquadTrainer
    trainer = SquadTrainer(config, SquadConfig(**common, predict_batch_size=predict_batch),
                           opt, runtime)
    predict = trainer.span_logits
  else:
    from bert_tf.training.tagging import TaggerTrainer, TaggingSpec
    trainer = TaggerTrainer(config, FinetuneConfig(**common), opt, runtime,
                            TaggingSpec("conll2003", tags))
    predict = lambda f: trainer.predict_words(f, predict_batch)  # noqa: E731
  cpu_seconds = []  # process CPU time (all threads) of each loop call: steadier under load
  compiled = trainer.compiled_train_loop

  def timed_train_loop():
    loop = compiled()

    def run(iterator, n):
      began = time.process_time()
      totals = loop(iterator, n)
      totals.numpy()  # done
      cpu_seconds.append(time.process_time() - began)
      return totals
    return run

  trainer.compiled_train_loop = timed_train_loop
  trainer.train(features, stop_after_steps=steps * calls)
  with open(os.path.join(output_dir, "train_metrics.jsonl")) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  train_rate = lines[-1]["examples_per_sec"]
  predict_set = features  # the whole set (at least --predict_count features)
  trainer._restored = True  # random weights: nothing to restore
  predict(predict_set)  # traces
  began, began_cpu = time.perf_counter(), time.process_time()
  predict(predict_set)
  seconds, cpu = time.perf_counter() - began, time.process_time() - began_cpu
  lengths = np.asarray(features.lengths)
  shutil.rmtree(output_dir, ignore_errors=True)  # the final checkpoint: 1.3 GB for Base
  return {"train": train_rate, "train_steps": lines[-1]["step"],
          "train_cpu": train_batch * steps * (calls - 1) / sum(cpu_seconds[1:]),
          "predict": len(predict_set) / seconds, "predict_cpu": len(predict_set) / cpu, "predict_features": len(predict_set),
          "mean_tokens": float(lengths.mean()), "device": runtime.description}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--presets", default="tiny,mini")
  parser.add_argument("--tasks", default=",".join(TASKS))
  parser.add_argument("--train_batch", type=int, default=32)
  parser.add_argument("--predict_batch", type=int, default=64)
  parser.add_argument("--predict_count", type=int, default=256, help="features predicted")
  parser.add_argument("--steps", type=int, default=2, help="optimizer steps per loop call")
  parser.add_argument("--calls", type=int, default=4, help="loop calls (the first: warm-up)")
  parser.add_argument("--rounds", type=int, default=1, help="runs of every cell, interleaved "
                      "(round 1 all cells, then round 2, ...): the table gives the median and "
                      "the spread, which shows how much the machine's load moved the figures")
  parser.add_argument("--timeout", type=float, default=3600.0)
  parser.add_argument("--cell", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.cell:
    print("RESULT " + json.dumps(_cell(json.loads(args.cell))), flush=True)
    return
  from bert_tf.tools.machine import machine_line
  cells = [(task, preset) for preset in args.presets.split(",")
           for task in args.tasks.split(",")]
  results = {cell: [] for cell in cells}
  loads = []
  for round_ in range(args.rounds):
    for task, preset in cells:
      spec = {"task": task, "preset": preset, "train_batch": args.train_batch,
              "predict_batch": args.predict_batch, "predict_count": args.predict_count,
              "steps": args.steps, "calls": args.calls}
      print(f"round {round_ + 1}: {task} {preset}", flush=True)
      loads.append(os.getloadavg()[0])
      result = subprocess.run([sys.executable, os.path.abspath(__file__), "--cell",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=args.timeout, cwd=ROOT)
      found = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
      if result.returncode or not found:
        sys.exit(f"{task} {preset} failed:\n{result.stderr[-3000:]}")
      results[(task, preset)].append(json.loads(found[-1][len("RESULT "):]))
      print(f"  {results[(task, preset)][-1]}", flush=True)
  first = results[cells[0]][0]
  print(f"\nmachine: {machine_line()}")
  print(f"{first['device']}; load average {min(loads):.1f}-{max(loads):.1f} at the cells' "
        f"starts; train: global batch {args.train_batch}, {args.steps} step(s) per loop call, "
        f"{args.calls - 1} timed call(s) after a warm-up call; predict: at least "
        f"{args.predict_count} features in batches of {args.predict_batch}, the second pass "
        f"timed; {args.rounds} round(s), median (min .. max)\n")
  print("| task | seq | model | train examples/s | train examples/CPU-s | predict examples/s | "
        "predict examples/CPU-s | features predicted | mean tokens/feature |")
  print("|---|---:|---|---:|---:|---:|---:|---:|---:|")

  def cell(values):
    text = f"{statistics.median(values):.1f}"
    return text if len(values) == 1 else f"{text} ({min(values):.1f} .. {max(values):.1f})"

  for task, preset in cells:
    runs = results[(task, preset)]
    print(f"| {task} | {TASKS[task]} | {preset} | {cell([r['train'] for r in runs])} | "
          f"{cell([r['train_cpu'] for r in runs])} | {cell([r['predict'] for r in runs])} | "
          f"{cell([r['predict_cpu'] for r in runs])} | {runs[0]['predict_features']} | "
          f"{runs[0]['mean_tokens']:.0f} |")


if __name__ == "__main__":
  main()
