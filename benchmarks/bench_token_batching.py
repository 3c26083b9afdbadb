"""Fine-tuning throughput: token-budget batching vs google's fixed-length padding, same data.

  python benchmarks/bench_token_batching.py [--preset=mini] [--examples=2048] [--steps=40]

Data: random token ids with MNLI-like lengths (log-normal, median ~40 tokens, clipped to
[8, max_seq_length]). Both modes get the same padded-token memory per step: fixed = 32
examples x max_seq_length; tokens = a budget of 32 x max_seq_length tokens, bucketed by length
and padded per batch. Prints a Markdown table: train examples/s (tracing excluded), padding
efficiency (real / padded tokens) and the ratio to fixed-length padding from the same run.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import argparse
import tempfile

from absl import logging
import numpy as np

from bert_tf import configs, distribution, finetuning, optimization
from bert_tf.data import classifier as data
from bert_tf.tools.machine import machine_line


def synthetic_features(n, max_seq_length, vocab_size, seed=0) -> data.Features:
  rng = np.random.default_rng(seed)
  lengths = np.clip(rng.lognormal(np.log(40), 0.5, n).astype(int), 8, max_seq_length)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  ids = rng.integers(5, vocab_size, int(offsets[-1])).astype(np.int32)
  return data.Features(ids, offsets, (lengths // 2).astype(np.int32),
                       rng.integers(0, 3, n).astype(np.int32))


def run(mode, features, bert_config, args):
  batch = 32
  config = finetuning.FinetuneConfig(
      output_dir=tempfile.mkdtemp(prefix=f"bench_{mode}_"), max_seq_length=args.max_seq_length,
      batch_size_in_tokens=mode == "tokens",
      train_batch_size=batch * args.max_seq_length if mode == "tokens" else batch,
      num_train_epochs=100, iterations_per_loop=args.steps // 2, save_checkpoints_steps=10 ** 6)
  trainer = finetuning.ClassifierTrainer(
      bert_config, config, optimization.OptimizerConfig(learning_rate=1e-4),
      distribution.make_runtime("one_device"), data.make_task("xnli"))
  return trainer.train(features, stop_after_steps=args.steps)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="mini")
  parser.add_argument("--examples", type=int, default=2048)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--max_seq_length", type=int, default=128)
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  bert_config = configs.preset(args.preset, vocab_size=30522)
  features = synthetic_features(args.examples, args.max_seq_length, bert_config.vocab_size)
  results = {mode: run(mode, features, bert_config, args) for mode in ("fixed", "tokens")}
  base = results["fixed"]["examples_per_sec"]
  print(f"\nmachine: {machine_line()}")
  print(f"BERT-{args.preset}, max_seq_length {args.max_seq_length}, mean length "
        f"{features.lengths.mean():.1f} tokens, {args.steps} steps (first call excluded), CPU\n")
  print("| batching | examples/s | padding efficiency | ratio to fixed |")
  print("|---|---:|---:|---:|")
  names = {"fixed": "fixed: 32 examples padded to max_seq_length (google)",
           "tokens": f"tokens: {32 * args.max_seq_length}-token budget, length buckets"}
  for mode, m in results.items():
    print(f"| {names[mode]} | {m['examples_per_sec']:.1f} | {m['padding_efficiency']:.2f} | "
          f"{m['examples_per_sec'] / base:.2f}x |")


if __name__ == "__main__":
  main()
