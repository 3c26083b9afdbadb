"""Tagging features: every word WordPiece-tokenised on its own, the first sub-token of a word
carries its label, everything else ([CLS], [SEP], later sub-tokens, context, padding) weighs
nothing in the loss. Sentences longer than max_seq_length are split at word boundaries into
several windows; with document context, each window is filled up with the tokens around it in
its document (labels stay on the window's own words)."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Sequence

import numpy as np

from bert_tf.data.classifier.features import ArraysFile, cache_key, file_identity, vocab_digest
from bert_tf.data.tagging.reading import Sentence


@dataclasses.dataclass
class TaggingFeatures(ArraysFile):
  """Windows of token ids, ragged: window i is ``ids[offsets[i]:offsets[i+1]]``.

  Attributes:
    ids: int32 [total tokens] ([CLS] ... [SEP] per window).
    offsets: int64 [windows + 1].
    labels: int32 [total tokens]: the label id at the first sub-token of each of the window's
      own words, -1 at every other position.
    word_ids: int32 [total tokens]: at those same positions, the word's index among all words
      of the set (``word_offsets`` tells which sentence); -1 elsewhere.
    window_sentence: int32 [windows], the sentence each window belongs to.
    word_offsets: int64 [sentences + 1], where each sentence's words start among all words.
    vanished: int64 word indexes of words that tokenise to nothing (control characters): they
      have no position and are predicted "O".
    split_sentences: sentences longer than one window (split into several).
    truncated_words: single words longer than a window (cut to its length).
  """
  ids: np.ndarray
  offsets: np.ndarray
  labels: np.ndarray
  word_ids: np.ndarray
  window_sentence: np.ndarray
  word_offsets: np.ndarray
  vanished: np.ndarray
  split_sentences: int = 0
  truncated_words: int = 0

  def __len__(self):
    return len(self.offsets) - 1

  @property
  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets).astype(np.int32)

  @property
  def num_words(self) -> int:
    return int(self.word_offsets[-1])

  @classmethod
  def load(cls, path: str) -> "TaggingFeatures":
    features = super().load(path)
    features.split_sentences = int(features.split_sentences)
    features.truncated_words = int(features.truncated_words)
    return features

  def positions(self, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions in the window, their word indexes) of the words the window predicts."""
    word_ids = self.word_ids[self.offsets[window]:self.offsets[window + 1]]
    positions = np.flatnonzero(word_ids >= 0)
    return positions, word_ids[positions]


def _split_words(pieces, labels, first_word, budget, counts):
  """One sentence's words -> windows [(ids, labels, word_ids)], split at word boundaries."""
  windows = [([], [], [])]
  for i, (word_pieces, label) in enumerate(zip(pieces, labels)):
    if not word_pieces:
      counts["vanished"].append(first_word + i)
      continue
    if len(word_pieces) > budget:
      word_pieces = word_pieces[:budget]
      counts["truncated"] += 1
    ids, window_labels, word_ids = windows[-1]
    if len(ids) + len(word_pieces) > budget:
      windows.append(([], [], []))
      ids, window_labels, word_ids = windows[-1]
    ids.extend(word_pieces)
    window_labels.extend([label] + [-1] * (len(word_pieces) - 1))
    word_ids.extend([first_word + i] + [-1] * (len(word_pieces) - 1))
  counts["split"] += len(windows) > 1
  return windows


def context_sizes(left_available: int, right_available: int, room: int) -> tuple[int, int]:
  """Tokens of context to take on each side: half the room each, the unused share of a short
  side going to the other."""
  left = min(left_available, max(room // 2, room - right_available))
  return left, min(right_available, room - left)


def _documents(sentences: Sequence[Sentence], doc_context: bool):
  """Sentence indexes grouped by document (each sentence alone without document context)."""
  if not doc_context:
    return [[i] for i in range(len(sentences))]
  groups = []
  for i, s in enumerate(sentences):
    if not groups or sentences[groups[-1][-1]].document != s.document:
      groups.append([])
    groups[-1].append(i)
  return groups


def featurize(sentences: Sequence[Sentence], tokenizer, max_seq_length: int,
              label_ids: dict, doc_context: bool = False, chunk: int = 8192
              ) -> TaggingFeatures:
  """Windows of [CLS] tokens [SEP] for ``sentences``; ``label_ids`` maps tags to ids (tags
  outside it, e.g. of an unlabelled file, get -1: no loss, no accuracy)."""
  cls_id, sep_id = tokenizer.vocab["[CLS]"], tokenizer.vocab["[SEP]"]
  words = [w for s in sentences for w in s.words]
  pieces = [p for start in range(0, len(words), chunk)
            for p in tokenizer.encode_batch(words[start:start + chunk])]
  word_offsets = np.concatenate([[0], np.cumsum([len(s.words) for s in sentences])]
                                ).astype(np.int64)
  budget = max_seq_length - 2
  counts = {"vanished": [], "truncated": 0, "split": 0}
  rows, window_sentence = [], []
  for document in _documents(sentences, doc_context):
    stream, windows = [], []  # the document's tokens; (sentence, start, end, labels, word_ids)
    for s in document:
      a, b = word_offsets[s], word_offsets[s + 1]
      labels = [label_ids.get(t, -1) for t in sentences[s].tags]
      for ids, window_labels, word_ids in _split_words(pieces[a:b], labels, int(a), budget,
                                                       counts):
        windows.append((s, len(stream), len(stream) + len(ids), window_labels, word_ids))
        stream.extend(ids)
    for s, start, end, window_labels, word_ids in windows:
      left, right = context_sizes(start, len(stream) - end, budget - (end - start)) \
          if doc_context else (0, 0)
      rows.append(([cls_id, *stream[start - left:end + right], sep_id],
                   [-1] * (left + 1) + window_labels + [-1] * (right + 1),
                   [-1] * (left + 1) + word_ids + [-1] * (right + 1)))
      window_sentence.append(s)
  lengths = np.array([len(r[0]) for r in rows], np.int64)
  flat = lambda k: np.fromiter((t for r in rows for t in r[k]), np.int32,  # noqa: E731
                               count=int(lengths.sum()))
  return TaggingFeatures(
      ids=flat(0), offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
      labels=flat(1), word_ids=flat(2), window_sentence=np.array(window_sentence, np.int32),
      word_offsets=word_offsets, vanished=np.array(counts["vanished"], np.int64),
      split_sentences=counts["split"], truncated_words=counts["truncated"])


CACHE_FORMAT = 1  # bump when featurize's output changes for the same inputs


def features_key(path: str, read_options: dict, tokenizer, max_seq_length: int,
                 label_ids: dict, doc_context: bool) -> str:
  """What the features of ``path`` depend on: the file (path, size, mtime), how it was read,
  the vocabulary's bytes, casing, max_seq_length, the label ids and document context."""
  return cache_key("tagging", CACHE_FORMAT, file_identity(path), read_options,
                   vocab_digest(tokenizer),
                   tokenizer.do_lower_case, max_seq_length, sorted(label_ids.items()),
                   doc_context)


def cached_featurize(sentences: Sequence[Sentence], tokenizer, max_seq_length: int,
                     label_ids: dict, doc_context: bool, path: str, read_options: dict,
                     cache_dir: Optional[str], log: Callable = print) -> TaggingFeatures:
  """``featurize``, kept in ``cache_dir`` (None: no cache) under ``features_key``: a second
  run on the same file and settings loads the windows instead of tokenising again; any change
  to the file, the vocabulary, the casing, max_seq_length, the labels, document context or
  the reading options makes a new entry. An entry that does not fit the sentences read (their
  count or word count) is rebuilt."""
  import tensorflow as tf
  if not cache_dir:
    return featurize(sentences, tokenizer, max_seq_length, label_ids, doc_context)
  key = features_key(path, read_options, tokenizer, max_seq_length, label_ids, doc_context)
  entry = os.path.join(cache_dir, f"tagging-{os.path.basename(path)}-{key}.npz")
  words = sum(len(s.words) for s in sentences)
  if tf.io.gfile.exists(entry):
    features = TaggingFeatures.load(entry)
    if len(features.word_offsets) == len(sentences) + 1 and features.num_words == words:
      log(f"{path}: features from cache {entry}")
      return features
    log(f"{path}: cache entry {entry} does not fit the {len(sentences)} sentences read; "
        "rebuilding it")
  features = featurize(sentences, tokenizer, max_seq_length, label_ids, doc_context)
  tf.io.gfile.makedirs(cache_dir)
  features.save(entry)
  return features
