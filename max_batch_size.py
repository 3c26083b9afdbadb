"""The largest training batch that fits a memory budget, per recompute mode (seed-style table).

For a model (preset or bert_config.json), sequence length, dtype and recompute mode(s), finds
the largest global batch whose real pretraining step (``training.Pretrainer``'s train loop:
forward, backward, clipping, AdamW update) fits the budget: doubling from ``--start_batch``
until a try fails, then binary search between the last fit and the first failure. Every try
runs in a fresh subprocess (``benchmarks/memory_worker.py``), so an out-of-memory failure
cannot poison the next try and each peak is measured from a clean process.

    # CPU, 8 GiB budget (peak resident set of the child), BERT-Base:
    python max_batch_size.py --preset base --max_seq_length 128 --memory_limit_gb 8
    python max_batch_size.py --preset base --max_seq_length 512 --memory_limit_gb 8 \\
        --recompute none,selective,full
    # GPU: the budget is the device's memory (or --memory_limit_gb caps it); OOM = failure.
    python max_batch_size.py --preset large --max_seq_length 512 --dtype fp16

Prints the seed's table: Baseline (recompute none), Recompute (each mode), +x%.

How the budget is enforced on CPU: the parent polls the child's resident set (psutil, every
20 ms) and kills it as soon as it exceeds the budget; after a try completes, the child's own
high-water mark (``VmHWM``, reported by the worker) decides, so a spike shorter than the
polling interval still counts as a failure. (``os.wait4``'s ``ru_maxrss`` is not used for
that: it also counts the forking parent's size, which a large parent such as pytest inflates.) RLIMIT_AS is not used: TensorFlow reserves far more
virtual address space than it touches (thread stacks, arenas, oneDNN), so an address-space
limit fails on unrelated reservations long before resident memory reaches the budget, and an
out-of-memory inside TensorFlow then aborts the process instead of failing cleanly.
``getrusage(RUSAGE_CHILDREN)`` is not used either: it is the maximum over *all* waited-for
children, so it could only grow from try to try.
On GPUs the child sees the device (capped by ``--memory_limit_gb`` as a logical device if
given) and a ResourceExhaustedError is the failure; its peak is TensorFlow's allocator peak.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional

ROOT = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(ROOT, "benchmarks", "memory_worker.py")
GIB = 2 ** 30


@dataclasses.dataclass
class Trial:
  batch: int
  fits: bool
  peak_bytes: Optional[int] = None   # None when killed before the kernel could report
  seconds: float = 0.0
  reason: str = ""                   # "ok", "over budget (killed)", "OOM", ...
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


def _rss(pid: int) -> int:
  with open(f"/proc/{pid}/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_try(spec: dict, budget_bytes: Optional[int], timeout: float = 3600.0,
            env: Optional[dict] = None, poll_seconds: float = 0.02) -> Trial:
  """One try of ``spec`` (see memory_worker.py) in a fresh process, held to ``budget_bytes``
  of resident memory on CPU (None: unbounded, e.g. on a GPU where the device is the limit)."""
  began = time.perf_counter()
  with tempfile.TemporaryFile("w+") as out:
    proc = subprocess.Popen([sys.executable, WORKER, json.dumps(spec)], stdout=out,
                            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            text=True)
    killed = None
    status, usage = None, None
    while True:
      pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        break
      elapsed = time.perf_counter() - began
      try:
        rss = _rss(proc.pid)
      except (FileNotFoundError, ProcessLookupError):
        rss = 0
      if budget_bytes is not None and rss > budget_bytes and killed is None:
        killed = f"over budget (killed at {rss / GIB:.2f} GiB)"
        proc.kill()
      elif elapsed > timeout and killed is None:
        killed = f"timeout after {timeout:.0f}s"
        proc.kill()
      time.sleep(poll_seconds)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
    seconds = time.perf_counter() - began
    out.seek(0)
    text = out.read()
  peak = usage.ru_maxrss * 1024  # Linux: KiB
  result = None
  for line in text.splitlines():
    if line.startswith("RESULT "):
      result = json.loads(line[len("RESULT "):])
  if killed:
    return Trial(spec["batch"], False, peak, seconds, killed)
  if result is None:
    oom = any(s in text for s in ("ResourceExhausted", "OOM when allocating", "out of memory",
                                  "std::bad_alloc", "MemoryError"))
    if oom:
      return Trial(spec["batch"], False, peak, seconds, "OOM")
    raise RuntimeError(f"memory worker failed (exit {proc.returncode}) for {spec}:\n"
                       + text[-4000:])
  if result.get("device") == "GPU" or result.get("peak_bytes"):
    # The worker's own high-water mark (VmHWM on CPU): wait4's ru_maxrss also counts the
    # pre-exec image, i.e. this (parent) process's size when it forked the child.
    peak = result["peak_bytes"]
  if budget_bytes is not None and peak > budget_bytes:
    return Trial(spec["batch"], False, peak, seconds,
                 f"over budget (peak {peak / GIB:.2f} GiB)", result)
  return Trial(spec["batch"], True, peak, seconds, "ok", result)


def search_mode(spec: dict, budget_bytes: Optional[int], start: int = 1,
                max_batch: int = 1 << 16, tolerance: float = 0.0, timeout: float = 3600.0,
                log=print):
  """Runs ``find_max_batch`` with subprocess tries of ``spec`` (without ``batch``).

  Returns ``(lo, hi, trials)``."""
  trials = []

  def fits(batch):
    trial = run_try({**spec, "batch": batch}, budget_bytes, timeout=timeout)
    trials.append(trial)
    peak = f"{trial.peak_bytes / GIB:.2f} GiB" if trial.peak_bytes else "-"
    log(f"  recompute={spec.get('recompute', 'none')} seq={spec['seq']} batch={batch}: "
        f"{'fits' if trial.fits else 'does not fit'} (peak {peak}, {trial.reason}, "
        f"{trial.seconds:.0f}s)")
    return trial.fits

  lo, hi, _ = find_max_batch(fits, start=start, max_batch=max_batch, tolerance=tolerance)
  return lo, hi, trials


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


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="base", help="model size: tiny, mini, small, base, "
                      "large, L-4_H-256_A-4, ... (ignored with --bert_config_file)")
  parser.add_argument("--bert_config_file", default=None,
                      help="a google bert_config.json instead of --preset")
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--max_predictions_per_seq", type=int, default=0,
                      help="0: google's 20 at seq 128, 80 at seq 512 (about 15%%)")
  parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
  parser.add_argument("--recompute", default="none,selective,full",
                      help="comma list of modes; 'none' is the baseline of the +x%% column")
  parser.add_argument("--memory_limit_gb", type=float, default=None,
                      help="CPU: peak resident-set budget of the child in GiB (required on "
                      "CPU); GPU: caps GPU:0 at this many GiB (default: the whole device)")
  parser.add_argument("--start_batch", type=int, default=1,
                      help="first batch of the doubling; 0: the estimator's prediction "
                      "(bert_tf.memory, needs --memory_limit_gb), which saves most tries")
  parser.add_argument("--runtime_gb", type=float, default=1.3,
                      help="with --start_batch 0: the framework's resident share on CPU")
  parser.add_argument("--max_batch", type=int, default=1 << 14)
  parser.add_argument("--tolerance", type=float, default=0.0,
                      help="stop bisecting when hi - lo <= tolerance * lo (0: exact)")
  parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per try")
  parser.add_argument("--baseline_batch", type=int, default=0,
                      help="known baseline (recompute none) maximum: skips its search")
  parser.add_argument("--json_out", default=None, help="also write every try here (JSON)")
  args = parser.parse_args(argv)

  on_gpu = _has_gpu()
  if not on_gpu and args.memory_limit_gb is None:
    parser.error("--memory_limit_gb is required on CPU (the budget of the child's peak RSS)")
  spec = {"seq": args.max_seq_length, "dtype": args.dtype,
          "predictions": args.max_predictions_per_seq or None}
  if args.bert_config_file:
    with open(args.bert_config_file) as f:
      spec["config"] = json.load(f)
    model = os.path.basename(os.path.dirname(os.path.abspath(args.bert_config_file)))
  else:
    spec["preset"] = args.preset
    model = f"BERT-{args.preset}"
  budget = None
  if on_gpu:
    if args.memory_limit_gb:
      spec["gpu_memory_limit_mb"] = int(args.memory_limit_gb * 1024)
    budget_label = (f"GPU:0 capped at {args.memory_limit_gb:g} GiB" if args.memory_limit_gb
                    else "GPU:0 memory")
  else:
    budget = int(args.memory_limit_gb * GIB)
    budget_label = f"CPU, peak RSS <= {args.memory_limit_gb:g} GiB"

  modes = [m.strip() for m in args.recompute.split(",") if m.strip()]

  def start_for(mode):
    if args.start_batch > 0:
      return args.start_batch
    if not args.memory_limit_gb:
      parser.error("--start_batch 0 needs --memory_limit_gb")
    from bert_tf import configs, memory  # no TensorFlow: plain arithmetic
    config = (configs.BertConfig.from_dict(spec["config"]) if "config" in spec
              else configs.preset(args.preset))
    return max(1, memory.max_batch(
        config, args.max_seq_length, int(args.memory_limit_gb * GIB),
        predictions=spec["predictions"] or {128: 20, 512: 80}.get(
            args.max_seq_length, max(1, round(0.15 * args.max_seq_length))),
        dtype=args.dtype, recompute=mode,
        runtime_bytes=0 if on_gpu else int(args.runtime_gb * GIB)))

  found, all_trials = {}, {}
  if args.baseline_batch:
    found["none"] = (args.baseline_batch, None)
    modes = [m for m in modes if m != "none"]
  elif "none" not in modes:
    modes = ["none"] + modes
  for mode in modes:
    print(f"searching recompute={mode} ...", flush=True)
    lo, hi, trials = search_mode({**spec, "recompute": mode}, budget, start=start_for(mode),
                                 max_batch=args.max_batch, tolerance=args.tolerance,
                                 timeout=args.timeout)
    found[mode] = (lo, hi)
    all_trials[mode] = [dataclasses.asdict(t) for t in trials]
  base, base_hi = found["none"]
  rows = [dict(model=model, seq=args.max_seq_length, dtype=args.dtype, mode=mode, lo=lo, hi=hi,
               base=base, base_hi=base_hi) for mode, (lo, hi) in found.items() if mode != "none"]
  print()
  print(format_table(rows, budget_label))
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump({"args": vars(args), "found": found, "trials": all_trials}, f, indent=1)


def _has_gpu() -> bool:
  # Asked in a child: importing TensorFlow here would hold memory (and a GPU context) in the
  # parent for the whole search.
  code = ("import bert_tf, tensorflow as tf; "
          "print(len(tf.config.list_physical_devices('GPU')))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
  try:
    return int(out.stdout.strip().splitlines()[-1]) > 0
  except (ValueError, IndexError):
    return False


if __name__ == "__main__":
  main()
