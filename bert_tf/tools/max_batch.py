"""The largest training batch that fits a memory budget, each try in a fresh process.

``find_max_batch`` is the search (doubling, then bisection) over any monotone ``fits(batch)``;
``run_try`` is one real try: ``memory_worker`` in a subprocess, held to the budget;
``search_mode`` joins them for one recompute mode and ``search_modes`` for several, the
baseline (none) first; ``format_table`` prints the seed's table.

How the budget is enforced on CPU: the parent polls the child's resident set (every 20 ms)
and kills it as soon as it exceeds the budget; after a try completes, the child's own
high-water mark (``VmHWM``, reported by the worker) decides, so a spike shorter than the
polling interval still counts as a failure. This peak exists on every CPU, whether or not
TensorFlow keeps allocator statistics there (it does not with oneDNN off). Not used:
``os.wait4``'s ``ru_maxrss`` (it also counts the forking parent's size, which a large parent
such as pytest inflates); ``getrusage(RUSAGE_CHILDREN)`` (the maximum over all children, so
it could only grow from try to try); RLIMIT_AS (TensorFlow reserves far more address space
than it touches, so the limit fails on unrelated reservations, and an out-of-memory inside
TensorFlow aborts instead of failing cleanly). On GPUs the child sees the device (capped by
``gpu_memory_limit_mb`` as a logical device if given); a ResourceExhaustedError is the
failure and the peak is TensorFlow's allocator peak.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

from bert_tf.tools import launch, memory_stats
from bert_tf.tools.memory_stats import GIB

WORKER = "bert_tf.tools.memory_worker"
OOM_MARKERS = ("ResourceExhausted", "OOM when allocating", "out of memory", "std::bad_alloc",
               "MemoryError")


@dataclasses.dataclass
class Trial:
  batch: int
  fits: bool
  peak_bytes: Optional[int] = None   # the worker's peak; else the largest resident set polled
  seconds: float = 0.0
  reason: str = ""                   # "ok", "over budget (killed ...)", "OOM", ...
  result: Optional[dict] = None      # the worker's RESULT when it finished


def find_max_batch(fits: Callable[[int], bool], start: int = 1, max_batch: int = 1 << 16,
                   tolerance: float = 0.0):
  """Largest ``b`` with ``fits(b)``, assuming ``fits`` is monotone (True up to some b).

  Doubles from ``start`` until a failure (or ``max_batch``), then bisects between the last
  fit and the first failure. ``tolerance``: stop once ``hi - lo <= max(1, tolerance * lo)``
  (0: exact). If ``start`` fails, bisects between 0 and ``start``.

  Returns ``(lo, hi, tried)``: lo the largest batch that fitted (0 if none), hi the smallest
  that failed (None if none up to ``max_batch``), ``tried`` the batches in order.
  """
  if start < 1:
    raise ValueError(f"start must be >= 1, got {start}")
  tried = []

  def check(b):
    tried.append(b)
    return fits(b)

  lo, hi = 0, None
  b = min(start, max_batch)
  while hi is None:
    if check(b):
      lo = b
      if b >= max_batch:
        return lo, None, tried
      b = min(2 * b, max_batch)
    else:
      hi = b
  while hi - lo > max(1, int(tolerance * lo)):
    mid = (lo + hi) // 2
    if check(mid):
      lo = mid
    else:
      hi = mid
  return lo, hi, tried


def _watch(proc: subprocess.Popen, budget_bytes: Optional[int], timeout: float,
           poll_seconds: float) -> tuple:
  """Polls ``proc`` until it exits, killing it over budget or past the timeout.
  Returns (why it was killed or None, the largest resident set seen)."""
  began = time.perf_counter()
  killed, largest = None, 0
  while proc.poll() is None:
    try:
      rss = memory_stats.rss_bytes(proc.pid)
    except (FileNotFoundError, ProcessLookupError):
      rss = 0
    largest = max(largest, rss)
    if killed is None and budget_bytes is not None and rss > budget_bytes:
      killed = f"over budget (killed at {rss / GIB:.2f} GiB)"
      proc.kill()
    elif killed is None and time.perf_counter() - began > timeout:
      killed = f"timeout after {timeout:.0f}s"
      proc.kill()
    time.sleep(poll_seconds)
  return killed, largest


def run_try(spec: dict, budget_bytes: Optional[int], timeout: float = 3600.0,
            env: Optional[dict] = None, poll_seconds: float = 0.02) -> Trial:
  """One try of ``spec`` (see ``memory_worker``) in a fresh process, held to ``budget_bytes``
  of resident memory on CPU (None: unbounded, e.g. on a GPU where the device is the limit).
  ``env``: variables set for the child on top of this process's environment."""
  began = time.perf_counter()
  with tempfile.TemporaryFile("w+") as out:
    proc = subprocess.Popen(launch.worker_command(WORKER, spec), stdout=out,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            text=True)
    killed, largest = _watch(proc, budget_bytes, timeout, poll_seconds)
    seconds = time.perf_counter() - began
    out.seek(0)
    text = out.read()
  batch = spec["batch"]
  if killed:
    return Trial(batch, False, largest or None, seconds, killed)
  result = launch.parse_result(text)
  if result is None:
    if any(marker in text for marker in OOM_MARKERS):
      return Trial(batch, False, largest or None, seconds, "OOM")
    raise RuntimeError(f"memory worker failed (exit {proc.returncode}) for {spec}:\n"
                       + text[-4000:])
  peak = result["peak_bytes"]
  if budget_bytes is not None and peak > budget_bytes:
    return Trial(batch, False, peak, seconds, f"over budget (peak {peak / GIB:.2f} GiB)", result)
  return Trial(batch, True, peak, seconds, "ok", result)


def search_mode(spec: dict, budget_bytes: Optional[int], start: int = 1,
                max_batch: int = 1 << 16, tolerance: float = 0.0, timeout: float = 3600.0,
                log=print, env: Optional[dict] = None):
  """Runs ``find_max_batch`` with subprocess tries of ``spec`` (without ``batch``).

  Returns ``(lo, hi, trials)``."""
  trials = []

  def fits(batch):
    trial = run_try({**spec, "batch": batch}, budget_bytes, timeout=timeout, env=env)
    trials.append(trial)
    peak = f"{trial.peak_bytes / GIB:.2f} GiB" if trial.peak_bytes else "-"
    log(f"  recompute={spec.get('recompute', 'none')} seq={spec['seq']} batch={batch}: "
        f"{'fits' if trial.fits else 'does not fit'} (peak {peak}, {trial.reason}, "
        f"{trial.seconds:.0f}s)")
    return trial.fits

  lo, hi, _ = find_max_batch(fits, start=start, max_batch=max_batch, tolerance=tolerance)
  return lo, hi, trials


def search_modes(spec: dict, modes, budget_bytes: Optional[int], start_for: Callable,
                 baseline_batch: int = 0, log=print, **search_args):
  """``search_mode`` for each recompute mode, the baseline ("none") first unless
  ``baseline_batch`` gives it. ``start_for(mode)``: the doubling's first batch.

  Returns ({mode: (lo, hi)}, {mode: [Trial]})."""
  found, trials = {}, {}
  modes = [m for m in modes if m != "none"]
  if baseline_batch:
    found["none"] = (baseline_batch, None)
  else:
    modes = ["none"] + modes
  for mode in modes:
    log(f"searching recompute={mode} ...")
    lo, hi, trials[mode] = search_mode({**spec, "recompute": mode}, budget_bytes,
                                       start=start_for(mode), log=log, **search_args)
    found[mode] = (lo, hi)
  return found, trials


def format_table(rows, budget_label: str) -> str:
  """rows: dicts with model, seq, dtype, mode, lo, hi and the baseline's lo as ``base``."""
  lines = [f"Maximum batch size ({budget_label})", "",
           "| model | seq | dtype | Baseline | Recompute | mode | +x% |",
           "|---|---:|---|---:|---:|---|---:|"]
  for r in rows:
    bound = lambda lo, hi: f"{lo}" if hi is None or hi == lo + 1 else f"{lo} (<{hi})"
    gain = f"+{100 * (r['lo'] / r['base'] - 1):.0f}%" if r["base"] else "n/a"
    lines.append(f"| {r['model']} | {r['seq']} | {r['dtype']} | "
                 f"{bound(r['base'], r.get('base_hi'))} | {bound(r['lo'], r['hi'])} | "
                 f"{r['mode']} | {gain} |")
  return "\n".join(lines)


def has_gpu() -> bool:
  """Whether TensorFlow sees a GPU, asked in a child: importing TensorFlow here would hold
  memory (and a GPU context) in the parent for the whole search."""
  code = ("import bert_tf, tensorflow as tf; "
          "print(len(tf.config.list_physical_devices('GPU')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=False)
  try:
    return int(out.stdout.strip().splitlines()[-1]) > 0
  except (ValueError, IndexError):
    return False
