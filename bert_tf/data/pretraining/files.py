"""Input files: google's ``--input_file`` patterns, and documents read from google's text
format (one sentence a line, blank lines between documents).

TensorFlow is imported inside the functions: spawned worker processes import this package
and must not pay for it.
"""
from __future__ import annotations

from typing import Iterator, Sequence


def expand_file_patterns(file_patterns) -> list[str]:
  """google's --input_file: globs and comma-separated lists (str or list of str) -> paths.

  Raises FileNotFoundError naming a pattern that matches nothing.
  """
  import tensorflow as tf
  if isinstance(file_patterns, str):
    file_patterns = [file_patterns]
  files = []
  for pattern in file_patterns:
    for p in str(pattern).split(","):
      if p.strip():
        matched = sorted(tf.io.gfile.glob(p.strip()))
        if not matched:
          raise FileNotFoundError(f"no files match input pattern {p.strip()!r}")
        files.extend(matched)
  if not files:
    raise FileNotFoundError(f"no input files in {file_patterns!r}")
  return files


def read_documents(input_files: Sequence[str], tokenizer, batch_lines: int = 4096
                   ) -> Iterator[list[list[int]]]:
  """Streams tokenized documents from google-format text files.

  Args:
    input_files: paths (local or gs://); read in order, each line decoded as UTF-8 with
      invalid bytes dropped (as google does).
    tokenizer: a ``bert_tf.tokenization.BertTokenizer``.
    batch_lines: lines tokenized per in-graph call.

  Yields:
    documents, each a non-empty list of sentences, each a non-empty list of int token ids.
    As in google's script, a document never spans two files only if the file ends with a
    blank line; lines that tokenize to nothing are dropped.
  """
  import tensorflow as tf
  doc: list[list[int]] = []
  pending: list[bytes] = []  # b"" marks a document break

  def flush():
    nonlocal doc
    texts = [line for line in pending if line]
    ids = iter(tokenizer.encode_batch(texts) if texts else [])
    out = []
    for line in pending:
      if not line:
        if doc:
          out.append(doc)
        doc = []
      else:
        tokens = next(ids)
        if tokens:
          doc.append(tokens)
    pending.clear()
    return out

  for path in input_files:
    try:
      f = tf.io.gfile.GFile(path, "rb")
      with f:
        for raw in f:
          pending.append(raw.decode("utf-8", "ignore").strip().encode("utf-8"))
          if len(pending) >= batch_lines:
            yield from flush()
    except tf.errors.OpError as e:
      raise OSError(f"{path}: cannot read input file: {e.message}") from None
  yield from flush()
  if doc:
    yield doc
