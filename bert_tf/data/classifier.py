"""Sentence(-pair) classification data: XNLI and GLUE readers, features, token-budget batches.

Reading order: ``read_tsv`` (rows with file:line errors), the task table ``TASKS`` (which file,
which columns, which labels), ``Task.examples`` (one split as named example sets),
``featurize`` (google's [CLS] a [SEP] b [SEP] ids), ``plan_steps`` (examples -> micro-batches
-> optimizer steps, by count or by token budget) and ``make_dataset`` (the plan as tf.data).

Why not Model Garden's ``official.nlp.data.classifier_data_lib`` processors (checked, 2.20):
its GLUE processors (CoLA, MNLI, MRPC, QNLI, QQP, RTE, SST-2, STS-B, WNLI) read TFDS, not the
official GLUE files; its ``XnliProcessor`` expects XNLI-1.0 and XNLI-MT-1.0 in one folder,
ignores the language for dev (every language mixed, no per-language result), and like its base
``_read_tsv`` reports neither the file nor the line of a bad row. Only its language list is
reused. What it gets right and is kept: TSV without quote handling (``quotechar=None``), the
column choices of google's run_classifier.py, XNLI-MT's ``contradictory`` label read as
``contradiction``.

File layouts (as distributed):
  XNLI:  XNLI-1.0/xnli.{dev,test}.tsv (columns by header: language, gold_label, sentence1,
         sentence2) and XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv (premise, hypo, label).
         ``data_dir`` may be either folder or their parent.
  GLUE:  the folder of one task as download_glue_data.py writes it (e.g. glue_data/MRPC).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur",
                  "vi", "zh")  # Model Garden's XnliProcessor.supported_languages
try:  # keep in step with Model Garden when it is installed
  from official.nlp.data.classifier_data_lib import XnliProcessor as _MG_XNLI
  assert tuple(_MG_XNLI.supported_languages) == XNLI_LANGUAGES
except ImportError:  # pragma: no cover
  pass

NLI_LABELS = ("contradiction", "entailment", "neutral")  # google's order


class MalformedRowError(ValueError):
  """A row of an input file cannot be read; the message starts with ``file:line:``."""


@dataclasses.dataclass
class ReadStats:
  """Rows read and rows skipped (with ``skip_malformed``), per reason."""
  rows: int = 0
  skipped: int = 0
  reasons: dict = dataclasses.field(default_factory=dict)
  first_skipped: list = dataclasses.field(default_factory=list)  # a few "file:line: reason"

  def skip(self, where: str, reason: str):
    self.skipped += 1
    key = reason.split(" (")[0]
    self.reasons[key] = self.reasons.get(key, 0) + 1
    if len(self.first_skipped) < 5:
      self.first_skipped.append(f"{where}: {reason}")


@dataclasses.dataclass(frozen=True)
class Example:
  guid: str
  text_a: str
  text_b: Optional[str]
  label: object            # str for classification, float for regression, None if unlabelled
  group: str = ""          # evaluation subset: XNLI language, MNLI matched/mismatched


def read_tsv(path: str, stats: Optional[ReadStats] = None, skip_malformed: bool = False,
             ) -> Iterator[tuple[int, list[str]]]:
  """Yields (line_number, fields) of a tab-separated file, 1-based line numbers.

  No quote handling: a '"' is text (GLUE and XNLI files contain unbalanced quotes, and csv's
  default quoting merges rows). Bytes that are not UTF-8 are a malformed row: an error naming
  file:line, or skipped and counted in ``stats`` when ``skip_malformed``. A UTF-8 byte-order
  mark (MRPC's files have one) and a final newline are ignored.
  """
  import tensorflow as tf  # gfile: local paths and gs:// alike
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]
  lines = data.split(b"\n")
  if lines and lines[-1] == b"":
    lines.pop()
  for number, raw in enumerate(lines, start=1):
    if raw.endswith(b"\r"):
      raw = raw[:-1]
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      reason = f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})"
      if not skip_malformed:
        raise MalformedRowError(f"{path}:{number}: {reason}") from None
      if stats is not None:
        stats.rows += 1
        stats.skip(f"{path}:{number}", reason)
      continue
    yield number, text.split("\t")


@dataclasses.dataclass(frozen=True)
class FileSpec:
  """Where the fields of one split's file are: column names (from its header) or indexes."""
  path: str
  text_a: object
  text_b: object = None
  label: object = None        # None: unlabelled (GLUE test files)
  header: bool = True
  num_columns: Optional[int] = None   # for files without a header
  group: str = ""


def _resolve(spec: FileSpec, header: Optional[list[str]], path: str) -> tuple:
  def index(column):
    if column is None or isinstance(column, int):
      return column
    if column not in header:
      raise MalformedRowError(f"{path}:1: header has no column {column!r} (header: {header})")
    return header.index(column)
  return index(spec.text_a), index(spec.text_b), index(spec.label)


class Task:
  """One task: labels and, per split, the files to read.

  Args:
    name: task name as given to --task_name.
    labels: label strings in google's order; empty for regression (STS-B).
    splits: {"train"|"dev"|"test": [FileSpec, ...]}; several files of one split are named
      example sets (MNLI matched/mismatched).
    metrics: names of the metrics reported besides accuracy / loss.
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

  def _parse_label(self, value: str):
    if self.is_regression:
      try:
        result = float(value)
      except ValueError:
        raise ValueError(f"label {value!r} is not a number") from None
      if not math.isfinite(result):
        raise ValueError(f"label {value!r} is not a finite number")
      return result
    value = self.label_aliases.get(value, value)
    if value not in self.labels:
      raise ValueError(f"unknown label {value!r} (expected one of {list(self.labels)})")
    return value

  def _read_file(self, data_dir: str, spec: FileSpec, split: str, stats: ReadStats,
                 skip_malformed: bool, row_filter: Optional[Callable] = None) -> list[Example]:
    path = self._path(data_dir, spec.path)
    rows = read_tsv(path, stats, skip_malformed)
    header = None
    if spec.header:
      first = next(rows, None)
      if first is None:
        raise MalformedRowError(f"{path}:1: empty file (expected a header line)")
      header = first[1]
    a, b, label = _resolve(spec, header, path)
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
    return examples

  def _path(self, data_dir: str, relative: str) -> str:
    return os.path.join(data_dir, relative)

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


def parse_languages(value: str, flag: str) -> tuple[str, ...]:
  langs = XNLI_LANGUAGES if value == "all" else tuple(
      v.strip() for v in value.split(",") if v.strip())
  bad = [lang for lang in langs if lang not in XNLI_LANGUAGES]
  if bad or not langs:
    raise ValueError(f"{flag}={value!r}: unknown language(s) {bad}; expected 'all' or a comma "
                     f"list of {list(XNLI_LANGUAGES)}")
  return langs


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


# --- features ------------------------------------------------------------------------------

@dataclasses.dataclass
class Features:
  """Tokenised examples, ragged: example i is ``ids[offsets[i]:offsets[i+1]]``.

  ``first_lengths[i]``: tokens with segment id 0 ([CLS] a [SEP]); the rest have segment 1.
  ``labels``: int32 label ids, or float32 scores for regression.
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

  def save(self, path: str):
    import tensorflow as tf
    buffer = io.BytesIO()  # np.savez seeks; gfile writers cannot
    np.savez(buffer, **dataclasses.asdict(self))
    with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
      f.write(buffer.getvalue())
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)

  @classmethod
  def load(cls, path: str) -> "Features":
    import tensorflow as tf
    with tf.io.gfile.GFile(path, "rb") as f:
      data = np.load(io.BytesIO(f.read()))
      return cls(**{k: data[k] for k in data.files})


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
  import tensorflow as tf
  stat = tf.io.gfile.stat(path)
  return [path, stat.length, stat.mtime_nsec]


# --- batching ------------------------------------------------------------------------------

PAD_MULTIPLE = 8  # padded lengths are multiples of 8 (tensor-core friendly, fewer shapes)


def _round_up(n, multiple=PAD_MULTIPLE):
  return -(-n // multiple) * multiple


def micro_batches(lengths: np.ndarray, batch_size: Optional[int] = None,
                  token_budget: Optional[int] = None, rng: Optional[np.random.Generator] = None,
                  pool_batches: int = 100) -> list[np.ndarray]:
  """Splits example indexes into micro-batches.

  By count (``batch_size``): consecutive runs of the (shuffled if ``rng``) order, as google.
  By tokens (``token_budget``): examples are bucketed by length (sorted within pools of about
  ``pool_batches`` batches of the shuffled order, or all of them when not shuffling) and a
  batch grows while rows x padded length stays within the budget, so short examples are not
  padded to max_seq_length. With ``rng`` the batch order is shuffled too.
  """
  n = len(lengths)
  order = rng.permutation(n) if rng is not None else np.arange(n)
  if token_budget is None:
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]
  padded = np.array([_round_up(int(x)) for x in lengths]) if n else np.zeros(0, int)
  if rng is not None:
    pool = max(1, pool_batches * token_budget // max(1, int(padded.mean()) if n else 1))
  else:
    pool = max(n, 1)
  batches = []
  for start in range(0, n, pool):
    chunk = order[start:start + pool]
    chunk = chunk[np.argsort(padded[chunk], kind="stable")]
    current, width = [], 0
    for i in chunk:
      w = max(width, padded[i])
      if current and (len(current) + 1) * w > token_budget:
        batches.append(np.array(current))
        current, w = [], padded[i]
      current.append(i)
      width = w
    if current:
      batches.append(np.array(current))
  if rng is not None:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


def plan_steps(lengths: np.ndarray, parts: int, *, batch_size: Optional[int] = None,
               token_budget: Optional[int] = None, seed: Optional[int] = None,
               epochs: float = 1.0) -> list[list[np.ndarray]]:
  """Optimizer steps, each a list of ``parts`` (= replicas x accumulation) micro-batches.

  ``batch_size``/``token_budget`` are per optimizer step (global); each micro-batch gets a
  1/parts share. With ``seed``, epoch e is shuffled with seed (seed, e): deterministic, so a
  resumed run rebuilds the same plan and skips the steps already done. ``epochs`` may be
  fractional (google's num_train_epochs=3.0): the last epoch is cut to its share of steps.
  The last step of an epoch may hold empty micro-batches (they weigh nothing).
  """
  micro_size = None if batch_size is None else max(1, batch_size // parts)
  micro_budget = None if token_budget is None else token_budget // parts
  steps = []
  for epoch in range(max(1, math.ceil(epochs))):
    rng = None if seed is None else np.random.default_rng([seed, epoch])
    batches = micro_batches(lengths, micro_size, micro_budget, rng)
    empty = np.zeros(0, np.int64)
    epoch_steps = [batches[i:i + parts] + [empty] * (parts - len(batches[i:i + parts]))
                   for i in range(0, len(batches), parts)]
    if epoch + 1 > epochs:  # fractional last epoch
      epoch_steps = epoch_steps[:int(round(len(epoch_steps) * (epochs - epoch)))]
    steps.extend(epoch_steps)
  return steps


def assemble(features: Features, groups: Sequence[np.ndarray], pad_to: Optional[int] = None
             ) -> dict[str, np.ndarray]:
  """Stacks micro-batches (index arrays) into [K, rows, length] arrays, zero-padded.

  Rows that are padding have ``label_weights`` 0 and ``example_index`` -1. ``pad_to``: pad
  every sequence to this length (google's fixed-length padding); else to the longest in the
  group, rounded up to a multiple of 8.
  """
  k = len(groups)
  rows = max(1, max(len(g) for g in groups))
  lengths = features.lengths
  longest = max((int(lengths[g].max()) for g in groups if len(g)), default=1)
  width = pad_to or _round_up(longest)
  ids = np.zeros((k, rows, width), np.int32)
  mask = np.zeros_like(ids)
  segments = np.zeros_like(ids)
  labels = np.zeros((k, rows), features.labels.dtype)
  weights = np.zeros((k, rows), np.float32)
  index = np.full((k, rows), -1, np.int64)
  for j, group in enumerate(groups):
    for r, i in enumerate(group):
      start, end = features.offsets[i], features.offsets[i + 1]
      n = end - start
      ids[j, r, :n] = features.ids[start:end]
      mask[j, r, :n] = 1
      segments[j, r, features.first_lengths[i]:n] = 1
    labels[j, :len(group)] = features.labels[group]
    weights[j, :len(group)] = 1.0
    index[j, :len(group)] = group
  if features.labels.dtype == np.float32:
    labels = np.nan_to_num(labels)
  else:
    labels = np.maximum(labels, 0)  # unlabelled (-1) rows: any valid id, their loss is unused
  return {"input_ids": ids, "input_mask": mask, "segment_ids": segments, "label_ids": labels,
          "label_weights": weights, "example_index": index}


def make_dataset(features: Features, steps: list[list[np.ndarray]], replicas: Sequence[int],
                 accumulation: int, start_step: int = 0, pad_to: Optional[int] = None):
  """tf.data of the plan for some replicas: per step, one element per replica in ``replicas``,
  each holding that replica's ``accumulation`` micro-batches as [K, rows, length] arrays.

  Shapes vary from element to element (the spec has None dimensions), so one traced step
  serves every batch shape.
  """
  import tensorflow as tf
  label_dtype = tf.float32 if features.labels.dtype == np.float32 else tf.int32
  spec = {name: tf.TensorSpec([accumulation, None, None], tf.int32)
          for name in ("input_ids", "input_mask", "segment_ids")}
  spec.update(label_ids=tf.TensorSpec([accumulation, None], label_dtype),
              label_weights=tf.TensorSpec([accumulation, None], tf.float32),
              example_index=tf.TensorSpec([accumulation, None], tf.int64))

  def generate():
    for step in steps[start_step:]:
      for r in replicas:
        yield assemble(features, step[r * accumulation:(r + 1) * accumulation], pad_to)

  return tf.data.Dataset.from_generator(generate, output_signature=spec)


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
    with tf.io.gfile.GFile(tokenizer.vocab_file, "rb") as f:
      vocab_hash = hashlib.sha256(f.read()).hexdigest()
    key = cache_key(task.name, getattr(task, "train_languages", None),
                    getattr(task, "eval_languages", None), split, os.path.abspath(data_dir),
                    _split_files(task, data_dir, split), vocab_hash, tokenizer.do_lower_case,
                    max_seq_length, skip_malformed)
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


def _split_files(task: Task, data_dir: str, split: str) -> list:
  """Identities of the files a split reads (for the cache key); missing files are skipped
  here and reported by the reader."""
  import tensorflow as tf
  if isinstance(task, XnliTask):
    patterns = [os.path.join(data_dir, p) for p in
                ("*.tsv", "*/*.tsv", "*/multinli/*.tsv", "multinli/*.tsv",
                 "../XNLI-1.0/*.tsv", "../XNLI-MT-1.0/multinli/*.tsv")]
    paths = sorted({p for pattern in patterns for p in tf.io.gfile.glob(pattern)})
  else:
    paths = [os.path.join(data_dir, spec.path) for spec in task.splits.get(split, [])]
  return [file_identity(p) for p in paths if tf.io.gfile.exists(p)]
