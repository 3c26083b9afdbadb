"""What a run reports: one record per log line to the console, TensorBoard and a JSON-lines
file; throughput and ETA; google's ``eval_results.txt``."""
from __future__ import annotations

import json
import math
import os

from absl import logging
import numpy as np
import tensorflow as tf


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def _json_value(value):
  # NaN / Infinity are not JSON (jq and JavaScript reject them): a missing figure is null.
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


# Inputs skipped and counted while reading (``--skip_corrupt_records``: files whose damaged
# rest was skipped), per process. The names are fixed: a multi-worker total sums one vector of
# them over the workers, which every worker must send with the same shape.
INPUT_COUNT_NAMES = ("corrupt_files_skipped",)
_INPUT_COUNTS: dict[str, int] = {}
# Elastic training: every rank reads the whole input stream (and keeps its slice), so each
# process's counts are already the job's; summing them over the ranks would multiply them.
_EVERY_WORKER_READS_ALL = [False]


def count_input(name: str, n: int = 1) -> None:
  """Adds ``n`` to a reader's skip count (called from the input pipeline, any thread)."""
  if name not in INPUT_COUNT_NAMES:
    raise ValueError(f"unknown input count {name!r}; add it to INPUT_COUNT_NAMES "
                     f"{INPUT_COUNT_NAMES}")
  _INPUT_COUNTS[name] = _INPUT_COUNTS.get(name, 0) + n


def input_counts_state() -> dict[str, int]:
  """This process's counts, to put back with ``set_input_counts`` (elastic commits)."""
  return dict(_INPUT_COUNTS)


def set_input_counts(counts: dict[str, int]) -> None:
  """Replaces this process's counts: an elastic roll-back re-reads the input since the commit,
  which would count its damaged files again; a new rank takes the job's counts."""
  _INPUT_COUNTS.clear()
  _INPUT_COUNTS.update(counts)


def every_worker_reads_all_input(flag: bool = True) -> None:
  """Each process counts the job's skips itself (elastic: every rank reads the whole stream)."""
  _EVERY_WORKER_READS_ALL[0] = flag


def input_counts(sum_over_workers=None) -> dict[str, int]:
  """The skip counts of the whole job, the names that are not zero: this process's, or with
  ``sum_over_workers`` (``Runtime.sum_over_workers``, a collective: every worker calls it at
  the same point) the total over the workers, each of which reads its own shard."""
  local = np.array([_INPUT_COUNTS.get(name, 0) for name in INPUT_COUNT_NAMES], np.int32)
  if sum_over_workers is not None and not _EVERY_WORKER_READS_ALL[0]:
    local = np.asarray(sum_over_workers(local))
  return {name: int(n) for name, n in zip(INPUT_COUNT_NAMES, local) if n}


class _Held:
  """Elastic training (``hold_records``): the records of steps that a lost rank could still roll
  back wait in memory for the commit that makes them final, so the files show every step
  once. Console lines are not held."""
  active = False
  writers: list = []


def hold_records(flag: bool = True) -> None:
  """From now on, new ``MetricsWriter`` records wait for ``commit_records``."""
  _Held.active = flag


def commit_records() -> int:
  """Writes every held record (their steps are committed); returns how many."""
  return _release(write=True)


def discard_records() -> int:
  """Drops every held record (their steps were rolled back and will run again); returns how
  many."""
  return _release(write=False)


def _release(write: bool) -> int:
  count = 0
  for writer in list(_Held.writers):
    count += len(writer._pending)  # pylint: disable=protected-access
    writer._release(write)  # pylint: disable=protected-access
  return count


class MetricsWriter:
  """One record per log line: console (absl), TensorBoard and ``<name>_metrics.jsonl``."""

  def __init__(self, output_dir: str, enabled: bool, name: str = "train"):
    self.enabled = enabled
    self._pending, self._held, self._close_wanted = [], False, False
    if enabled:
      tf.io.gfile.makedirs(output_dir)
      self._jsonl = tf.io.gfile.GFile(os.path.join(output_dir, f"{name}_metrics.jsonl"), "a")
      self._summary = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard", name))
      if _Held.active:
        self._held = True
        _Held.writers.append(self)

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in values.items())
    logging.info("step %d: %s", step, text)
    if self._held:
      self._pending.append((step, dict(values)))
    else:
      self._emit(step, values)

  def _emit(self, step: int, values: dict) -> None:
    record = {"step": step, **{k: _json_value(v) for k, v in values.items()}}
    self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
    self._jsonl.flush()
    with self._summary.as_default(step=step):
      for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
          tf.summary.scalar(key, value)
    self._summary.flush()

  def _release(self, write: bool) -> None:
    pending, self._pending = self._pending, []
    if write:
      for step, values in pending:
        self._emit(step, values)
    if self._close_wanted:
      _Held.writers.remove(self)
      self._close()

  def close(self):
    if self.enabled and self._held:
      self._close_wanted = True  # closed once its held records are committed or dropped
    elif self.enabled:
      self._close()

  def _close(self):
    self._jsonl.close()
    self._summary.close()


class Throughput:
  """steps/s, examples/s, tokens/s and ETA over the timed loop calls. The first call traces
  the graph, so it is left out of the figures (they are None until a second call)."""

  def __init__(self):
    self.steps, self.examples, self.tokens, self.seconds = 0, 0.0, 0.0, 0.0
    self._first = True

  def update(self, steps: int, examples: float, tokens: float, seconds: float,
             remaining_steps: int) -> dict:
    if not self._first:
      self.steps += steps
      self.examples += examples
      self.tokens += tokens
      self.seconds += seconds
    self._first = False
    if not self.seconds:
      return {"steps_per_sec": None, "examples_per_sec": None, "tokens_per_sec": None,
              "eta": "n/a"}
    return {"steps_per_sec": self.steps / self.seconds,
            "examples_per_sec": self.examples / self.seconds,
            "tokens_per_sec": self.tokens / self.seconds,
            "eta": format_eta(remaining_steps * self.seconds / self.steps)}


def write_eval_results(output_dir: str, results: dict, name: str = "eval_results.txt") -> str:
  """google's ``eval_results.txt`` (``key = value`` lines, keys sorted) and an ``eval``
  metrics record (JSON lines and TensorBoard) at the results' ``global_step``."""
  path = os.path.join(output_dir, name)
  with tf.io.gfile.GFile(path, "w") as f:
    for key in sorted(results):
      f.write(f"{key} = {results[key]}\n")
  writer = MetricsWriter(output_dir, True, name="eval")
  writer.write(int(results["global_step"]), {k: float(v) for k, v in results.items()
                                             if k != "global_step"})
  writer.close()
  return path
