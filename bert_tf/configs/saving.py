"""A run's resolved configuration in its output directory: ``run_config.json`` (every section,
for reading) and ``run.flags`` (every flag, for ``--flagfile`` to reproduce the run).

An existing file with different content is kept as ``<name>.<n><ext>`` (a resumed run may
change flags; the history stays readable); identical content is not rewritten.
"""
from __future__ import annotations

import dataclasses
import json
import os


def _write_keeping_history(path: str, text: str) -> str:
  import tensorflow as tf  # gfile: local paths and gs:// alike
  tf.io.gfile.makedirs(os.path.dirname(path) or ".")
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      if f.read() == text:
        return path
    n = 1
    stem, ext = os.path.splitext(path)
    while tf.io.gfile.exists(f"{stem}.{n}{ext}"):
      n += 1
    tf.io.gfile.rename(path, f"{stem}.{n}{ext}")
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)
  return path


def save_resolved_config(output_dir: str, name: str = "run_config.json", **sections) -> str:
  """Writes ``sections`` (dataclasses or plain values) as one JSON object; returns the path."""
  text = json.dumps({key: dataclasses.asdict(value) if dataclasses.is_dataclass(value)
                     else value for key, value in sections.items()}, indent=2, sort_keys=True)
  return _write_keeping_history(os.path.join(output_dir, name), text + "\n")


def write_flags_file(output_dir: str, lines: list[str], name: str = "run.flags") -> str:
  """Writes ``--flag=value`` lines that ``--flagfile`` reads back; returns the path."""
  return _write_keeping_history(os.path.join(output_dir, name), "".join(
      line + "\n" for line in lines))
