"""Tasks: what to read for each ``--task_name`` (which files, which columns, which labels).

``Task`` reads the splits its table of ``FileSpec``s names; ``XnliTask`` finds XNLI's files
per language (XNLI-MT-1.0 for training, XNLI-1.0 with its language column for dev/test);
``GLUE_TASKS`` are laid out as google's run_classifier.py / download_glue_data.py have them;
``make_task`` turns --task_name (and the XNLI language flags) into a task.
"""
from __future__ import annotations

import math
import os
from typing import Callable, Optional, Sequence

from bert_tf.data.classifier.reading import (EmptyInputError, Example, FileSpec,
                                             MalformedRowError, ReadStats, read_tsv, shorten)

NLI_LABELS = ("contradiction", "entailment", "neutral")  # google's order
XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
                  "vi", "zh")  # Model Garden's XnliProcessor.supported_languages
try:  # keep in step with Model Garden when it is installed
  from official.nlp.data.classifier_data_lib import XnliProcessor as _MG_XNLI
  assert tuple(_MG_XNLI.supported_languages) == XNLI_LANGUAGES
except ImportError:  # pragma: no cover
  pass


class Task:
  """One task: labels and, per split, the files to read.

  Args:
    name: task name as given to --task_name.
    labels: label strings in google's order; empty for regression (STS-B).
    splits: {"train"|"dev"|"test": [FileSpec, ...]}; several files of one split are named
      example sets (MNLI matched/mismatched).
    metrics: names of the metrics reported besides accuracy / loss.
    primary_group: the example set whose metrics lead (MNLI: "matched").
    label_aliases: {label as written in a file: label} (XNLI-MT's "contradictory").
  """

  def __init__(self, name: str, labels: Sequence[str], splits: dict, metrics=(),
               primary_group: Optional[str] = None, label_aliases: Optional[dict] = None):
    self.name = name
    self.labels = tuple(labels)
    self.splits = splits
    self.metrics = tuple(metrics)
    self.primary_group = primary_group
    self.label_aliases = label_aliases or {}

  @property
  def is_regression(self) -> bool:
    return not self.labels

  @property
  def num_labels(self) -> int:
    return len(self.labels) or 1

  def cache_identity(self) -> tuple:
    """What, besides its files and the featurisation settings, decides the examples a split
    gives: (name, train languages, eval languages), None where a task has no languages (the
    layout of the feature cache keys written so far)."""
    return (self.name, None, None)

  def split_files(self, data_dir: str, split: str) -> list[str]:
    """The paths a split may read, for the feature cache key (missing ones are left out
    there and reported by the reader)."""
    return [self._path(data_dir, spec.path) for spec in self.splits.get(split, [])]

  def examples(self, data_dir: str, split: str, skip_malformed: bool = False,
               stats: Optional[ReadStats] = None) -> dict[str, list[Example]]:
    """Reads one split: {set name: examples}; one set named "" unless the task has several."""
    if split not in self.splits:
      raise ValueError(f"task {self.name} has no {split} split")
    stats = stats if stats is not None else ReadStats()
    sets: dict[str, list[Example]] = {}
    for spec in self.splits[split]:
      for example in self._read_file(data_dir, spec, split, stats, skip_malformed):
        sets.setdefault(example.group, []).append(example)
    return sets

  def _parse_label(self, value: str):
    if self.is_regression:
      try:
        result = float(value)
      except ValueError:
        raise ValueError(f"label {shorten(repr(value))} is not a number") from None
      if not math.isfinite(result):
        raise ValueError(f"label {shorten(repr(value))} is not a finite number")
      return result
    value = self.label_aliases.get(value, value)
    if value not in self.labels:
      raise ValueError(f"unknown label {shorten(repr(value))} (expected one of "
                       f"{list(self.labels)})")
    return value

  def _read_file(self, data_dir: str, spec: FileSpec, split: str, stats: ReadStats,
                 skip_malformed: bool, row_filter: Optional[Callable] = None) -> list[Example]:
    path = self._path(data_dir, spec.path)
    rows = read_tsv(path, stats, skip_malformed)
    skipped_before = stats.skipped
    header = None
    if spec.header:
      first = next(rows, None)
      if first is None:
        raise EmptyInputError(f"{path}: empty file (expected a header line)")
      header = first[1]
    a, b, label = spec.columns(header, path)
    width = len(header) if header is not None else spec.num_columns
    examples = []
    for number, fields in rows:
      stats.rows += 1
      try:
        if len(fields) != width:
          raise ValueError(f"expected {width} tab-separated columns, got {len(fields)}")
        if row_filter is not None and not row_filter(header, fields):
          stats.rows -= 1
          continue
        value = None if label is None else self._parse_label(fields[label])
      except ValueError as e:
        if not skip_malformed:
          raise MalformedRowError(f"{path}:{number}: {e}") from None
        stats.skip(f"{path}:{number}", str(e))
        continue
      group = spec.group(header, fields) if callable(spec.group) else spec.group
      examples.append(Example(f"{split}-{len(examples)}", fields[a],
                              None if b is None else fields[b], value, group))
    if not examples and row_filter is None:  # nothing to train on, evaluate or predict
      skipped = stats.skipped - skipped_before
      raise EmptyInputError(
          f"{path}: no rows" + (" after the header line" if header is not None else "") +
          (f" ({skipped} malformed row(s) skipped: {stats.first_skipped[:2]})" if skipped
           else ""))
    return examples

  def _path(self, data_dir: str, relative: str) -> str:
    return os.path.join(data_dir, relative)


class XnliTask(Task):
  """XNLI: MT training files per language, dev/test with a language column.

  Args:
    train_languages: languages whose XNLI-MT-1.0 training files are read ("en" = zero-shot).
    eval_languages: languages of dev/test to evaluate, each its own set; None = every
      language present in the file.
  """

  def __init__(self, train_languages: Sequence[str] = ("en",),
               eval_languages: Optional[Sequence[str]] = None):
    super().__init__("xnli", NLI_LABELS, {}, label_aliases={"contradictory": "contradiction"})
    self.train_languages = tuple(train_languages)
    self.eval_languages = None if eval_languages is None else tuple(eval_languages)

  def cache_identity(self) -> tuple:
    return (self.name, self.train_languages, self.eval_languages)

  def split_files(self, data_dir: str, split: str) -> list[str]:
    # Every TSV file where _find may look, whichever split: the layouts differ by folder.
    import tensorflow as tf
    patterns = [os.path.join(data_dir, p) for p in
                ("*.tsv", "*/*.tsv", "*/multinli/*.tsv", "multinli/*.tsv",
                 "../XNLI-1.0/*.tsv", "../XNLI-MT-1.0/multinli/*.tsv")]
    return sorted({p for pattern in patterns for p in tf.io.gfile.glob(pattern)})

  @staticmethod
  def _find(data_dir: str, candidates: Sequence[str]) -> str:
    import tensorflow as tf
    paths = [os.path.normpath(os.path.join(data_dir, c)) for c in candidates]
    for path in paths:
      if tf.io.gfile.exists(path):
        return path
    raise FileNotFoundError("XNLI file not found; looked for " + ", ".join(paths))

  def examples(self, data_dir, split, skip_malformed=False, stats=None):
    stats = stats if stats is not None else ReadStats()
    if split == "train":
      examples = []
      for lang in self.train_languages:
        name = f"multinli/multinli.train.{lang}.tsv"
        path = self._find(data_dir, [name, f"XNLI-MT-1.0/{name}", f"../XNLI-MT-1.0/{name}"])
        spec = FileSpec(path, "premise", "hypo", "label", group=lang)
        examples += self._read_file("", spec, "train", stats, skip_malformed)
      return {"": examples}
    if split not in ("dev", "test"):
      raise ValueError(f"task xnli has no {split} split")
    name = f"xnli.{split}.tsv"
    path = self._find(data_dir, [name, f"XNLI-1.0/{name}", f"../XNLI-1.0/{name}"])
    wanted = self.eval_languages
    keep = None if wanted is None else \
        (lambda header, fields: fields[header.index("language")] in wanted)
    spec = FileSpec(path, "sentence1", "sentence2", "gold_label",
                    group=lambda header, fields: fields[header.index("language")])
    sets: dict[str, list[Example]] = {}
    for example in self._read_file("", spec, split, stats, skip_malformed, keep):
      sets.setdefault(example.group, []).append(example)
    missing = [lang for lang in (wanted or ()) if lang not in sets]
    if missing:
      raise ValueError(f"{path}: no rows for language(s) {missing} (present: {sorted(sets)})")
    unknown = sorted(set(sets) - set(XNLI_LANGUAGES))
    if unknown:
      raise MalformedRowError(f"{path}: unknown language(s) {unknown} in the language column")
    return {lang: sets[lang] for lang in sorted(sets)}


def parse_languages(value: str, flag: str) -> tuple[str, ...]:
  """``all`` or a comma list of XNLI languages -> the languages; ValueError naming ``flag``."""
  langs = XNLI_LANGUAGES if value == "all" else tuple(
      v.strip() for v in value.split(",") if v.strip())
  bad = [lang for lang in langs if lang not in XNLI_LANGUAGES]
  if bad or not langs:
    raise ValueError(f"{flag}={value!r}: unknown language(s) {bad}; expected 'all' or a comma "
                     f"list of {list(XNLI_LANGUAGES)}")
  return langs


def _glue(name, labels, columns, test_columns, metrics=(), header=True):
  """A GLUE task: train.tsv and dev.tsv with ``columns`` = (text_a, text_b, label), test.tsv
  with ``test_columns`` = (text_a, text_b) and no label."""
  spec = lambda path: FileSpec(path, *columns, header=header,  # noqa: E731
                               num_columns=None if header else 4)
  return Task(name, labels, {"train": [spec("train.tsv")], "dev": [spec("dev.tsv")],
                             "test": [FileSpec("test.tsv", *test_columns)]}, metrics)


def _mnli():
  cols = ("sentence1", "sentence2", "gold_label")
  sets = ("matched", "mismatched")
  return Task("mnli", NLI_LABELS, {
      "train": [FileSpec("train.tsv", *cols)],
      "dev": [FileSpec(f"dev_{s}.tsv", *cols, group=s) for s in sets],
      "test": [FileSpec(f"test_{s}.tsv", "sentence1", "sentence2", group=s) for s in sets]},
      primary_group="matched")


# Columns of google's run_classifier.py / download_glue_data.py files: (text_a, text_b, label)
# for train and dev, (text_a, text_b) for test.
GLUE_TASKS = {
    "cola": lambda: _glue("cola", ("0", "1"), (3, None, 1), ("sentence", None),
                          metrics=("mcc",), header=False),
    "sst2": lambda: _glue("sst2", ("0", "1"), ("sentence", None, "label"),
                          ("sentence", None)),
    "mrpc": lambda: _glue("mrpc", ("0", "1"), ("#1 String", "#2 String", "Quality"),
                          ("#1 String", "#2 String"), metrics=("f1",)),
    "qnli": lambda: _glue("qnli", ("entailment", "not_entailment"),
                          ("question", "sentence", "label"),
                          ("question", "sentence")),
    "qqp": lambda: _glue("qqp", ("0", "1"), ("question1", "question2", "is_duplicate"),
                         ("question1", "question2"), metrics=("f1",)),
    "rte": lambda: _glue("rte", ("entailment", "not_entailment"),
                         ("sentence1", "sentence2", "label"),
                         ("sentence1", "sentence2")),
    "wnli": lambda: _glue("wnli", ("0", "1"), ("sentence1", "sentence2", "label"),
                          ("sentence1", "sentence2")),
    "stsb": lambda: _glue("stsb", (), ("sentence1", "sentence2", "score"),
                          ("sentence1", "sentence2"), metrics=("pearson", "spearman")),
}
TASK_NAMES = ("xnli", "mnli", *GLUE_TASKS)


def make_task(name: str, xnli_language: str = "en", xnli_eval_languages: str = "all") -> Task:
  """The task for ``--task_name`` (case-insensitive; google's ``sts-b``/``sst-2`` spellings too).

  XNLI: ``xnli_language`` is one language, a comma list or ``all`` (the 15 of XNLI-MT);
  ``xnli_eval_languages`` the same, ``all`` meaning every language in the dev/test file.
  """
  key = name.lower().replace("-", "")
  if key == "xnli":
    train = parse_languages(xnli_language, "--xnli_language")
    evals = None if xnli_eval_languages == "all" else \
        parse_languages(xnli_eval_languages, "--xnli_eval_languages")
    return XnliTask(train, evals)
  if key == "mnli":
    return _mnli()
  if key not in GLUE_TASKS:
    raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASK_NAMES)}")
  return GLUE_TASKS[key]()
