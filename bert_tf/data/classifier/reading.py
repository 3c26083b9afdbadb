"""Reading task files: tab-separated rows with file:line errors, where a split's fields are
(``FileSpec``), and the examples and counts that come out."""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional


class MalformedRowError(ValueError):
  """A row of an input file cannot be read; the message starts with ``file:line:``."""


class EmptyInputError(ValueError):
  """A file holds no rows to read (no header, only a header, or every row skipped): no
  ``--skip_*`` flag can help, so the message suggests none."""


def shorten(text: str, limit: int = 120) -> str:
  """``text`` for an error message: at most ``limit`` characters (a file read as one line
  must not print itself whole)."""
  text = repr(text) if not isinstance(text, str) else text
  return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
  mark (MRPC's files have one) and a final newline are ignored. Line ends may be ``\n``,
  ``\r\n`` or, in a file with no ``\n`` at all (old Mac editors), ``\r``.
  """
  import tensorflow as tf  # gfile: local paths and gs:// alike
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  if data.startswith(b"\xef\xbb\xbf"):
    data = data[3:]
  lines = data.split(b"\n" if b"\n" in data or b"\r" not in data else b"\r")
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
  group: object = ""          # str, or (header, fields) -> str for a column-valued group

  def columns(self, header: Optional[list[str]], path: str) -> tuple:
    """(text_a, text_b, label) as column indexes (None where absent) in ``path``."""
    def index(column):
      if column is None or isinstance(column, int):
        return column
      if column not in header:
        raise MalformedRowError(f"{path}:1: header has no column {column!r} (header: {shorten(str(header))})")
      return header.index(column)
    return index(self.text_a), index(self.text_b), index(self.label)
