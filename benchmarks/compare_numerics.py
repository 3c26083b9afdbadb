"""Before/after numerics of a refactor: the same deterministic runs through two checkouts' CLIs.

Writes one set of inputs (random google-format pretraining TFRecords, an MRPC-format GLUE
folder with a small vocab), then in each checkout runs, with ``--deterministic``:

  1. ``run_pretraining.py`` (BERT 2/32, fp32, dropout on, 2 accumulation micro-batches, 12
     AdamW steps), then ``--do_eval``;
  2. ``run_classifier.py --task=mrpc`` from that run's encoder export (dropout on, token
     batches, 2 epochs), ``--do_eval``.

and compares every variable of the final checkpoints, the eval results and the logged losses.
It uses nothing of bert_tf but its command lines, so any two checkouts can be compared:

    python benchmarks/compare_numerics.py --before /tmp/bert_tf_before --after .
    python benchmarks/compare_numerics.py --before . --after .     # run-to-run determinism

Exit status 0 when everything is bitwise equal.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

SEQ, PREDICTIONS, VOCAB = 32, 5, 64
WORDS = [f"w{i}" for i in range(VOCAB - 5)]


def write_inputs(root: str) -> dict:
  import tensorflow as tf
  rng = np.random.default_rng(7)
  os.makedirs(root, exist_ok=True)
  records = os.path.join(root, "train.tfrecord")
  with tf.io.TFRecordWriter(records) as writer:
    for _ in range(96):
      n = int(rng.integers(SEQ // 2, SEQ + 1))
      ids = np.zeros(SEQ, np.int64)
      ids[:n] = rng.integers(5, VOCAB, n)
      mask = (np.arange(SEQ) < n).astype(np.int64)
      segments = ((np.arange(SEQ) >= n // 2) & (mask == 1)).astype(np.int64)
      positions = np.sort(rng.choice(np.arange(1, n), PREDICTIONS, replace=False))
      feature = {
          "input_ids": ids, "input_mask": mask, "segment_ids": segments,
          "masked_lm_positions": positions,
          "masked_lm_ids": rng.integers(5, VOCAB, PREDICTIONS),
          "next_sentence_labels": rng.integers(0, 2, 1)}
      example = {k: tf.train.Feature(int64_list=tf.train.Int64List(value=list(map(int, v))))
                 for k, v in feature.items()}
      example["masked_lm_weights"] = tf.train.Feature(float_list=tf.train.FloatList(
          value=(rng.random(PREDICTIONS) > 0.2).astype(float).tolist()))
      writer.write(tf.train.Example(features=tf.train.Features(feature=example))
                   .SerializeToString())
  config = os.path.join(root, "bert_config.json")
  with open(config, "w") as f:
    json.dump({"vocab_size": VOCAB, "hidden_size": 32, "num_hidden_layers": 2,
               "num_attention_heads": 4, "intermediate_size": 37, "hidden_act": "gelu",
               "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
               "max_position_embeddings": 64, "type_vocab_size": 2,
               "initializer_range": 0.02}, f)
  vocab = os.path.join(root, "vocab.txt")
  with open(vocab, "w") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
  glue = os.path.join(root, "MRPC")
  os.makedirs(glue, exist_ok=True)
  for split, count in (("train", 60), ("dev", 21)):
    with open(os.path.join(glue, f"{split}.tsv"), "w") as f:
      f.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
      for i in range(count):
        a = " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
        b = " ".join(rng.choice(WORDS, int(rng.integers(2, 9))))
        f.write(f"{int(rng.integers(0, 2))}\t{i}\t{i + 1000}\t{a}\t{b}\n")
  return {"records": records, "config": config, "vocab": vocab, "glue": glue}


def run_checkout(repo: str, inputs: dict, out: str, python: str) -> dict:
  pre, cls = os.path.join(out, "pretrain"), os.path.join(out, "classifier")
  common = [f"--bert_config_file={inputs['config']}", "--deterministic", "--seed=5"]
  commands = [
      [os.path.join(repo, "run_pretraining.py"), *common, f"--input_file={inputs['records']}",
       f"--output_dir={pre}", "--do_train", "--do_eval", "--train_batch_size=8",
       f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDICTIONS}",
       "--num_train_steps=12", "--num_warmup_steps=3", "--learning_rate=1e-3",
       "--gradient_accumulation_steps=2", "--iterations_per_loop=4",
       "--save_checkpoints_steps=12", "--max_eval_steps=4"],
      [os.path.join(repo, "run_classifier.py"), *common, "--task=mrpc",
       f"--data_dir={inputs['glue']}", f"--vocab_file={inputs['vocab']}",
       f"--init_checkpoint={os.path.join(pre, 'encoder')}", f"--output_dir={cls}", "--do_train",
       "--do_eval", "--max_seq_length=24", "--batch_size_in_tokens", "--train_batch_size=96",
       "--eval_batch_size=200", "--learning_rate=1e-3", "--num_train_epochs=2",
       "--iterations_per_loop=3", "--cache_features=false"],
  ]
  for command in commands:
    done = subprocess.run([python, *command], cwd=repo, capture_output=True, text=True,
                          timeout=900)
    if done.returncode:
      sys.exit(f"{command[0]} failed in {repo}:\n{done.stderr[-3000:]}")
  import tensorflow as tf
  result = {}
  for name, folder in (("pretrain", pre), ("classifier", cls)):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(folder))
    for key in sorted(reader.get_variable_to_shape_map()):
      if key.endswith("VARIABLE_VALUE"):  # weights, optimizer slots, step counters
        result[f"{name}:{key}"] = reader.get_tensor(key)
    with open(os.path.join(folder, "eval_results.txt")) as f:
      for line in f:
        key, value = line.strip().split(" = ")
        result[f"{name}:eval:{key}"] = np.float64(value)
    with open(os.path.join(folder, "train_metrics.jsonl")) as f:
      losses = [json.loads(line.replace("NaN", "null"))["loss"] for line in f]
    result[f"{name}:logged_losses"] = np.array(losses)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--before", required=True, help="checkout before the change")
  parser.add_argument("--after", required=True, help="checkout after the change")
  parser.add_argument("--python", default=sys.executable)
  parser.add_argument("--work_dir", default=None)
  args = parser.parse_args()
  work = args.work_dir or tempfile.mkdtemp(prefix="compare_numerics_")
  inputs = write_inputs(os.path.join(work, "inputs"))
  results = {}
  for side in ("before", "after"):
    repo = os.path.abspath(getattr(args, side))
    results[side] = run_checkout(repo, inputs, os.path.join(work, side), args.python)
  before, after = results["before"], results["after"]
  print("| quantity | values | max abs difference |\n|---|---:|---:|")
  worst, problems = 0.0, []
  for key in sorted(set(before) | set(after)):
    if key not in before or key not in after:
      side = "before" if key in before else "after"
      # A new step counter (not a weight, slot or the step itself) is reported, not failed.
      if "skipped_steps" in key:
        print(f"| {key} | only {side} | |")
      else:
        problems.append(f"{key}: only {side}")
      continue
    a, b = np.asarray(before[key]), np.asarray(after[key])
    if a.shape != b.shape:
      problems.append(f"{key}: shape {a.shape} vs {b.shape}")
      continue
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    worst = max(worst, diff)
    if diff or "VARIABLE_VALUE" not in key:
      print(f"| {key} | {a.size} | {diff:.3g} |")
  weights = sum(1 for k in before if "VARIABLE_VALUE" in k)
  print(f"\n{weights} checkpoint tensors compared; largest difference anywhere: {worst:.3g}")
  for problem in problems:
    print("MISMATCH", problem)
  sys.exit(0 if worst == 0.0 and not problems else 1)


if __name__ == "__main__":
  main()
