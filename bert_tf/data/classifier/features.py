"""Features: google's convert_single_example ([CLS] a [SEP] b [SEP] ids) for many examples,
kept ragged (no padding until a batch is assembled), and ``load_features``: one split read
and featurised, or found in a cache directory."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from typing import Callable, Optional, Sequence

import numpy as np

from bert_tf.data.classifier.reading import Example, ReadStats
from bert_tf.data.classifier.tasks import Task


class ArraysFile:
  """``save`` / ``load`` of a dataclass of NumPy arrays (and plain numbers) as one .npz,
  written to a temporary name and renamed: the feature caches of every task use it."""

  def save(self, path: str):
    import tensorflow as tf
    buffer = io.BytesIO()  # np.savez seeks; gfile writers cannot
    np.savez(buffer, **dataclasses.asdict(self))
    with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
      f.write(buffer.getvalue())
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)

  @classmethod
  def load(cls, path: str):
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "rb") as f:
      data = np.load(io.BytesIO(f.read()))
      return cls(**{k: data[k] for k in data.files})


def vocab_digest(tokenizer) -> str:
  """sha256 of the tokenizer's vocab file: a feature cache key part."""
  import tensorflow as tf
  with tf.io.gfile.GFile(tokenizer.vocab_file, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass
class Features(ArraysFile):
  """Tokenised examples, ragged: example i is ``ids[offsets[i]:offsets[i+1]]``.

  Attributes:
    ids: int32 [total tokens], every example's token ids one after the other.
    offsets: int64 [examples + 1], where each example starts (and the last ends).
    first_lengths: int32 [examples], tokens with segment id 0 ([CLS] a [SEP]); the rest of
      the example has segment 1.
    labels: int32 [examples] label ids (-1: unlabelled), or float32 scores for regression
      (NaN: unlabelled).
  """
  ids: np.ndarray
  offsets: np.ndarray
  first_lengths: np.ndarray
  labels: np.ndarray

  def __len__(self):
    return len(self.offsets) - 1

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets).astype(np.int32)


def _truncate_seq_pair(a: list, b: list, max_length: int):
  """google's rule: drop a token from the end of the longer sequence until they fit."""
  while len(a) + len(b) > max_length:
    (a if len(a) > len(b) else b).pop()


def featurize(examples: Sequence[Example], tokenizer, max_seq_length: int, task: Task,
              chunk: int = 4096) -> Features:
  """google's convert_single_example: [CLS] a [SEP] (b [SEP]), truncated to max_seq_length.

  ``tokenizer``: ``bert_tf.tokenization.BertTokenizer`` (batched ``encode_batch``).
  """
  cls_id, sep_id = tokenizer.vocab["[CLS]"], tokenizer.vocab["[SEP]"]
  rows, firsts = [], []
  for start in range(0, len(examples), chunk):
    part = examples[start:start + chunk]
    ids_a = tokenizer.encode_batch([e.text_a for e in part])
    texts_b = [e.text_b for e in part if e.text_b is not None]
    ids_b = iter(tokenizer.encode_batch(texts_b))
    for e, a in zip(part, ids_a):
      if e.text_b is None:
        a = a[:max_seq_length - 2]
        rows.append([cls_id, *a, sep_id])
      else:
        b = next(ids_b)
        _truncate_seq_pair(a, b, max_seq_length - 3)
        rows.append([cls_id, *a, sep_id, *b, sep_id])
      firsts.append(len(a) + 2)
  lengths = np.array([len(r) for r in rows], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  ids = np.fromiter((t for r in rows for t in r), np.int32, count=int(offsets[-1]))
  if task.is_regression:
    labels = np.array([np.nan if e.label is None else e.label for e in examples], np.float32)
  else:
    index = {label: i for i, label in enumerate(task.labels)}
    labels = np.array([-1 if e.label is None else index[e.label] for e in examples], np.int32)
  return Features(ids, offsets, np.array(firsts, np.int32), labels)


def cache_key(*parts) -> str:
  """Short hash of JSON-able parts (file identities and featurisation settings)."""
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_identity(path: str) -> list:
  """[path, size, mtime in ns]: a file changed in place changes its identity."""
  import tensorflow as tf
  stat = tf.io.gfile.stat(path)
  return [path, stat.length, stat.mtime_nsec]


def _features_key(task: Task, data_dir: str, split: str, tokenizer, max_seq_length: int,
                  skip_malformed: bool) -> str:
  import tensorflow as tf
  vocab_hash = vocab_digest(tokenizer)
  files = [file_identity(p) for p in task.split_files(data_dir, split) if tf.io.gfile.exists(p)]
  return cache_key(*task.cache_identity(), split, os.path.abspath(data_dir), files, vocab_hash,
                   tokenizer.do_lower_case, max_seq_length, skip_malformed)


def load_features(task: Task, data_dir: str, split: str, tokenizer, max_seq_length: int,
                  cache_dir: Optional[str] = None, skip_malformed: bool = False,
                  log: Callable = print) -> dict[str, Features]:
  """Reads and featurises one split: {set name: Features}, cached in ``cache_dir``.

  The cache key covers the task (with its XNLI languages), the files read (path, size,
  mtime), the vocabulary, casing and max_seq_length: a change to any rebuilds the features.
  """
  import tensorflow as tf
  stats = ReadStats()
  key = None
  if cache_dir:
    key = _features_key(task, data_dir, split, tokenizer, max_seq_length, skip_malformed)
    index_path = os.path.join(cache_dir, f"{split}-{key}.json")
    if tf.io.gfile.exists(index_path):
      with tf.io.gfile.GFile(index_path) as f:
        names = json.load(f)["sets"]
      log(f"{split}: features from cache {index_path}")
      return {name: Features.load(os.path.join(cache_dir, f"{split}-{key}-{i}.npz"))
              for i, name in enumerate(names)}
  sets = task.examples(data_dir, split, skip_malformed, stats)
  if stats.skipped:
    log(f"{split}: skipped {stats.skipped} malformed row(s) of {stats.rows} "
        f"({stats.reasons}); first: {stats.first_skipped}")
  features = {name: featurize(examples, tokenizer, max_seq_length, task)
              for name, examples in sets.items()}
  if cache_dir:
    tf.io.gfile.makedirs(cache_dir)
    for i, f in enumerate(features.values()):
      f.save(os.path.join(cache_dir, f"{split}-{key}-{i}.npz"))
    with tf.io.gfile.GFile(index_path, "w") as f:
      json.dump({"sets": list(features), "skipped": stats.skipped, "rows": stats.rows}, f)
  return features
