"""Tokenizer throughput: bert_tf.tokenization vs google's FullTokenizer (tf-models-official).

  python benchmarks/bench_tokenizer.py [--repeat=3] [--copies=2]

Text: CPython's bundled documentation (pydoc_data.topics), plus a multilingual set. Vocab:
learned from that text (bert_tf.vocab). Prints a Markdown table: tokens/s and the ratio to
the reference measured in the same run (ids are checked equal first).
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import argparse
import os
import sys
import tempfile
import time

import tensorflow as tf
from official.nlp.tools import tokenization as reference

from bert_tf import tokenization, vocab as vocab_lib
from bert_tf.tools.machine import machine_line

MULTILINGUAL = [
    "Ελληνικά: Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "中文：敏捷的棕色狐狸跳过了懒狗。日本語：いろはにほへと ちりぬるを。",
    "Français : Portez ce vieux whisky au juge blond qui fume ; déjà naïf.",
    "Deutsch: Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
]


def best_time(fn, repeat):
  best = float("inf")
  for _ in range(repeat):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeat", type=int, default=3)
  parser.add_argument("--copies", type=int, default=2, help="copies of the corpus")
  parser.add_argument("--batch_lines", type=int, default=4096)
  args = parser.parse_args()

  import pydoc_data.topics
  text = "\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics))
  english = [line for line in text.splitlines() if line.strip()]
  lines = (english + MULTILINGUAL * 200) * args.copies
  with tempfile.TemporaryDirectory() as tmp:
    vocab_file = os.path.join(tmp, "vocab.txt")
    vocab_lib.write_vocab(vocab_lib.build_vocab(english + MULTILINGUAL, 8000), vocab_file)
    rows = []
    for lower in (True, False):
      ref = reference.FullTokenizer(vocab_file, do_lower_case=lower)
      ref.wordpiece_tokenizer.max_input_chars_per_word = tokenization.MAX_CHARS_PER_WORD
      ours = tokenization.BertTokenizer(vocab_file, do_lower_case=lower)
      chunks = [lines[i:i + args.batch_lines] for i in range(0, len(lines), args.batch_lines)]
      expected = [ref.convert_tokens_to_ids(ref.tokenize(l)) for l in lines]
      got = [ids for c in chunks for ids in ours.encode_batch(c)]
      if got != expected:
        sys.exit("ids differ from the reference: benchmark void")
      n_tokens = sum(map(len, expected))
      t_ref = best_time(lambda: [ref.convert_tokens_to_ids(ref.tokenize(l)) for l in lines],
                        args.repeat)
      t_py = best_time(lambda: [ours.encode_batch(c) for c in chunks], args.repeat)
      # In graph, tensors in and out (no Python lists): a tf.function call per batch, and a
      # tf.data pipeline (which adds noticeable per-batch overhead for ragged string work).
      layer = ours.keras_layer()
      fn = tf.function(layer, input_signature=[tf.TensorSpec([None], tf.string)])
      tensors = [tf.constant(c) for c in chunks]
      fn(tensors[0])
      t_fn = best_time(lambda: [fn(c) for c in tensors], args.repeat)
      ds = tf.data.Dataset.from_tensor_slices(lines).batch(args.batch_lines).map(layer).prefetch(2)
      for _ in ds:  # trace once
        pass
      t_graph = best_time(lambda: [None for _ in ds], args.repeat)
      case = "uncased" if lower else "cased"
      rows.append((case, "google FullTokenizer (reference)", n_tokens / t_ref, 1.0))
      rows.append((case, "bert_tf BertTokenizer.encode_batch -> lists", n_tokens / t_py,
                   t_ref / t_py))
      rows.append((case, "bert_tf TokenizerLayer in tf.function (tensors)", n_tokens / t_fn,
                   t_ref / t_fn))
      rows.append((case, "bert_tf TokenizerLayer in tf.data", n_tokens / t_graph,
                   t_ref / t_graph))
  print(f"\nmachine: {machine_line()}")
  print(f"{len(lines)} lines, {n_tokens} tokens, batches of {args.batch_lines} lines, "
        f"best of {args.repeat}, {os.cpu_count()} CPU cores\n")
  print("| vocab | tokenizer | tokens/s | vs reference |")
  print("|---|---|---:|---:|")
  for case, name, rate, ratio in rows:
    print(f"| {case} | {name} | {rate:,.0f} | {ratio:.1f}x |")


if __name__ == "__main__":
  main()
