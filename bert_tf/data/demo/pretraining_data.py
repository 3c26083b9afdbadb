"""The demo pretraining data: CPython's bundled documentation -> corpus, vocab, TFRecords.

Layout of ``output_dir`` (all written atomically; ``settings.json`` last):

  corpus.txt                          google's input format, every document
  vocab.txt                           WordPiece vocabulary learned from corpus.txt
  train-0000i-of-0000N.tfrecord       pretraining records, N shards (90% of the documents)
  eval-00000-of-00001.tfrecord        pretraining records of the other 10%, dupe_factor 1
  settings.json                       the settings and counts; a rerun with the same
                                      settings does nothing, with others it refuses
                                      unless ``overwrite``
"""
from __future__ import annotations

import dataclasses
import json
import os

EVAL_EVERY = 10  # every 10th document goes to the eval split


@dataclasses.dataclass(frozen=True)
class DemoSettings:
  vocab_size: int = 8000
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  dupe_factor: int = 5
  num_shards: int = 2
  random_seed: int = 12345
  do_lower_case: bool = True


def output_paths(output_dir: str, settings: DemoSettings) -> dict[str, list[str]]:
  join = lambda name: os.path.join(output_dir, name)  # noqa: E731
  n = settings.num_shards
  return {"corpus": [join("corpus.txt")], "vocab": [join("vocab.txt")],
          "train": [join(f"train-{i:05d}-of-{n:05d}.tfrecord") for i in range(n)],
          "eval": [join("eval-00000-of-00001.tfrecord")]}


def prepare_demo_data(output_dir: str, settings: DemoSettings = DemoSettings(),
                      overwrite: bool = False, num_workers: int = 0) -> dict:
  """Builds (or finds up to date) the demo data in ``output_dir``.

  Returns:
    dict: the settings, the counts, and "paths" (see ``output_paths``); "reused" is True when
    nothing had to be built.

  Raises:
    FileExistsError: outputs exist that were made with other settings or without a
      settings.json, and ``overwrite`` is False. Nothing is changed then.
  """
  import tensorflow as tf
  from bert_tf import tokenization, vocab as vocab_lib
  from bert_tf.data import pretraining, text
  from bert_tf.data.demo import corpus

  paths = output_paths(output_dir, settings)
  manifest = os.path.join(output_dir, "settings.json")
  wanted = dataclasses.asdict(settings)
  all_paths = [p for group in paths.values() for p in group]
  if tf.io.gfile.exists(manifest):
    with tf.io.gfile.GFile(manifest) as f:
      found = json.load(f)
    if found.get("settings") == wanted and all(tf.io.gfile.exists(p) for p in all_paths):
      return dict(found, paths=paths, reused=True)
    if not overwrite:
      raise FileExistsError(
          f"{output_dir} holds demo data made with other settings ({manifest}: "
          f"{found.get('settings')}); pass overwrite=True (--overwrite) to rebuild it")
  else:
    existing = [p for p in all_paths if tf.io.gfile.exists(p)]
    if existing and not overwrite:
      raise FileExistsError(f"{existing[0]} exists and is not from a finished demo build; "
                            "pass overwrite=True (--overwrite) to replace it")
  tf.io.gfile.makedirs(output_dir)

  def commit(tmp, final):
    tf.io.gfile.rename(tmp, final, overwrite=True)

  documents = corpus.demo_documents()
  tmp = lambda p: p + ".tmp"  # noqa: E731
  text.write_documents(documents, tmp(paths["corpus"][0]))
  lines = [s for doc in documents for s in doc]
  vocab = vocab_lib.build_vocab(lines, settings.vocab_size, settings.do_lower_case)
  vocab_lib.write_vocab(vocab, tmp(paths["vocab"][0]))
  commit(tmp(paths["vocab"][0]), paths["vocab"][0])
  commit(tmp(paths["corpus"][0]), paths["corpus"][0])

  tokenizer = tokenization.BertTokenizer(paths["vocab"][0], settings.do_lower_case)
  splits = {"train": [d for i, d in enumerate(documents) if i % EVAL_EVERY],
            "eval": [d for i, d in enumerate(documents) if not i % EVAL_EVERY]}
  counts = {"documents": len(documents), "vocab_size": len(vocab)}
  for split, docs in splits.items():
    split_text = os.path.join(output_dir, f"{split}_corpus.txt.tmp")
    text.write_documents(docs, split_text)
    config = pretraining.PretrainingDataConfig(
        max_seq_length=settings.max_seq_length,
        max_predictions_per_seq=settings.max_predictions_per_seq,
        random_seed=settings.random_seed + (split == "eval"),
        dupe_factor=settings.dupe_factor if split == "train" else 1, num_workers=num_workers)
    stats = pretraining.create_pretraining_data(
        [split_text], [tmp(p) for p in paths[split]], tokenizer, config)
    tf.io.gfile.remove(split_text)
    for p in paths[split]:
      commit(tmp(p), p)
    counts[f"{split}_instances"] = stats["instances"]
  result = {"settings": wanted, "counts": counts}
  with tf.io.gfile.GFile(manifest + ".tmp", "w") as f:
    json.dump(result, f, indent=2, sort_keys=True)
  commit(manifest + ".tmp", manifest)
  return dict(result, paths=paths, reused=False)
