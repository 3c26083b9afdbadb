"""Reading CoNLL-format tagging files: one token a line (word first, the tag in
``label_column``), a blank line between sentences, ``-DOCSTART-`` lines between documents.

Errors name ``file:line``; with ``skip_malformed`` the sentence holding a bad line is skipped
and counted instead (the other sentences keep their words and tags intact).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Sequence

from bert_tf.data.classifier.reading import MalformedRowError, ReadStats, read_tsv

# Each split's file names: CoNLL-2003 as distributed (eng.*) and the common renamings.
SPLIT_FILES = {"train": ("train.txt", "eng.train"),
               "dev": ("dev.txt", "valid.txt", "eng.testa"),
               "test": ("test.txt", "eng.testb")}
# conll2003's four columns: word, part-of-speech, chunk, named entity.
TASK_COLUMNS = {"conll2003": 4, "bio": None}  # None: as many as the file's first token line
TASK_NAMES = tuple(TASK_COLUMNS)
OUTSIDE = "O"
_BIO_TAG = re.compile(r"[BI]-\S+")
# Columns are separated by spaces and tabs only: a word may hold any other character, other
# Unicode whitespace included (a no-break space, U+3000, U+2028 ...), as conlleval splits on
# " ". A line of whitespace alone (of any kind) ends a sentence.
_SEPARATOR = re.compile(r"[ \t]+")


@dataclasses.dataclass(frozen=True)
class Sentence:
  words: tuple
  tags: tuple
  document: int      # index of the document (-DOCSTART- section) in its file
  where: str         # "file:line" of its first token


def split_path(data_dir: str, split: str) -> str:
  """The file of ``split`` (train, dev, test) in ``data_dir``, under any of its usual names."""
  import tensorflow as tf
  names = SPLIT_FILES[split]
  for name in names:
    path = os.path.join(data_dir, name)
    if tf.io.gfile.exists(path):
      return path
  raise FileNotFoundError(f"{data_dir}: no {split} file (looked for {', '.join(names)})")


def tag_problem(tag: str, labels: Optional[Sequence[str]], strict: bool) -> Optional[str]:
  """Why ``tag`` is not acceptable (None if it is)."""
  if strict and tag != OUTSIDE and not _BIO_TAG.fullmatch(tag):
    return f"tag {tag!r} is not BIO/IOB1 (expected O, B-TYPE or I-TYPE)"
  if labels is not None and tag not in labels:
    return f"tag {tag!r} is not in the training label set {list(labels)}"
  return None


class _SentenceBuilder:
  """Collects token lines into sentences; a sentence with a bad line is dropped whole."""

  def __init__(self, path, stats, skip_malformed):
    self.path, self.stats, self.skip_malformed = path, stats, skip_malformed
    self.sentences, self.document = [], 0
    self._words, self._tags, self._start, self._bad = [], [], None, None

  def add(self, number, word, tag):
    if self._start is None:
      self._start = number
    self._words.append(word)
    self._tags.append(tag)

  def fail(self, number, reason):
    where = f"{self.path}:{number}"
    if not self.skip_malformed:
      raise MalformedRowError(f"{where}: {reason}")
    if self._bad is None:
      self._bad = (where, reason)
    if self._start is None:
      self._start = number

  def end(self):
    if self._start is not None:
      self.stats.rows += 1
      if self._bad is not None:
        self.stats.skip(*self._bad)
      else:
        self.sentences.append(Sentence(tuple(self._words), tuple(self._tags), self.document,
                                       f"{self.path}:{self._start}"))
    self._words, self._tags, self._start, self._bad = [], [], None, None


def read_conll(path: str, task: str = "conll2003", label_column: int = -1,
               labels: Optional[Sequence[str]] = None, strict: bool = True,
               skip_malformed: bool = False, stats: Optional[ReadStats] = None
               ) -> list[Sentence]:
  """Sentences of a CoNLL file. Columns are separated by spaces or tabs (only: other
  whitespace is part of a word); a line of whitespace alone ends a sentence.

  Args:
    task: ``conll2003`` (exactly 4 columns) or ``bio`` (the column count of the file's first
      token line, at least 2).
    label_column: which column holds the tag (negative: from the end).
    labels: the training label set; a tag outside it is an error (evaluation files).
    strict: every tag must be O, B-TYPE or I-TYPE (BIO / IOB1 / IOB2).
    skip_malformed: skip (and count in ``stats``) sentences with a bad line instead of raising
      ``MalformedRowError`` ("file:line: reason").
  """
  stats = stats if stats is not None else ReadStats()
  expected = TASK_COLUMNS[task]
  builder = _SentenceBuilder(path, stats, skip_malformed)
  # read_tsv drops (skip_malformed) or raises on a line that is not UTF-8; a dropped line
  # must drop its whole sentence, so its skips are counted here, per sentence.
  bad_lines, seen = ReadStats(), 0

  def drop_bad_lines(number):
    nonlocal seen
    if bad_lines.skipped > seen:
      builder.fail(number - (bad_lines.skipped - seen), "not valid UTF-8")
      seen = bad_lines.skipped

  number = 0
  for number, fields in read_tsv(path, bad_lines, skip_malformed):
    drop_bad_lines(number)
    line = "\t".join(fields)
    columns = [c for c in _SEPARATOR.split(line) if c]
    if not line.strip():
      builder.end()
      continue
    if columns[0] == "-DOCSTART-":
      builder.end()
      builder.document += 1
      continue
    if expected is None:
      expected = max(len(columns), 2)
    if len(columns) != expected:
      builder.fail(number, f"expected {expected} columns (word ... tag), got {len(columns)}")
      continue
    try:
      tag = columns[label_column]
    except IndexError:
      builder.fail(number, f"--label_column={label_column} is outside the {expected} columns")
      continue
    problem = tag_problem(tag, labels, strict)
    if problem:
      builder.fail(number, problem)
      continue
    builder.add(number, columns[0], tag)
  drop_bad_lines(number + 1 + bad_lines.skipped - seen)
  builder.end()
  return builder.sentences


def label_list(sentences: Sequence[Sentence]) -> list[str]:
  """The label set of a training file: "O" first (id 0, also the prediction for words that
  tokenise to nothing), then the other tags sorted."""
  return [OUTSIDE] + sorted({t for s in sentences for t in s.tags} - {OUTSIDE})


LABELS_FILE = "labels.txt"


def save_labels(output_dir: str, labels: Sequence[str]) -> str:
  import tensorflow as tf
  tf.io.gfile.makedirs(output_dir)
  path = os.path.join(output_dir, LABELS_FILE)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(f"{label}\n" for label in labels))
  return path


def load_labels(output_dir: str) -> Optional[list[str]]:
  """The label set saved with a run's output (None if there is none yet)."""
  import tensorflow as tf
  path = os.path.join(output_dir, LABELS_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return f.read().split()
