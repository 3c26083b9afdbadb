"""Throughput grid: batch x sequence length x dtype x recompute x distribution -> Markdown table.

Each (batch, seq, dtype, distribution) cell runs the real pretraining loop
(``training.Pretrainer``, via ``python -m bert_tf.tools.memory_worker``) in a fresh process,
with the recompute modes of the cell built side by side and their calls interleaved round by
round, so that the modes' ratio is measured under the same machine load. The first call of each
contender (tracing and warm-up) is excluded; the table gives the median examples/s and
tokens/s over ``--repeats`` calls and their spread (min .. max), plus the peak memory of the
cell's process (all its contenders together).

    # CPU (a few minutes; fp16/bf16 on CPU are numerically real but slow, not a speed claim):
    python benchmarks/bench_throughput_grid.py --preset mini --batches 8,32 --seqs 128 \\
        --dtypes fp32 --recompute none,full --distributions one_device,mirrored
    # GPUs (seed 000/002 style: BERT-Large, fp16 vs fp32, 1 vs all GPUs):
    python benchmarks/bench_throughput_grid.py --preset large --batches 8,16 --seqs 128,512 \\
        --dtypes fp32,fp16 --recompute none,full --distributions one_device,mirrored
"""
from __future__ import annotations

import argparse
import itertools
import statistics

from bert_tf.tools import max_batch
from bert_tf.tools.memory_stats import GIB
from bert_tf.tools.machine import machine_line


def run_cell(args, batch, seq, dtype, dist):
  spec = {"preset": args.preset, "seq": seq, "batch": batch, "dtype": dtype,
          "modes": args.recompute, "calls": args.repeats, "steps_per_call": args.steps,
          "distribution": dist, "cpu_devices": args.cpu_devices}
  trial = max_batch.run_try(spec, None, timeout=args.timeout)
  if not trial.fits:
    return {mode: None for mode in args.recompute}, trial
  times = trial.result["call_seconds"]
  if not isinstance(times, dict):
    times = {args.recompute[0]: times}
  out = {}
  for mode in args.recompute:
    eps = [batch * args.steps / t for t in times[mode][1:]]  # first call: warm-up
    out[mode] = (statistics.median(eps), min(eps), max(eps))
  return out, trial


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="mini")
  parser.add_argument("--batches", default="8,32", help="global batch sizes")
  parser.add_argument("--seqs", default="128")
  parser.add_argument("--dtypes", default="fp32", help="comma list of fp32, fp16, bf16")
  parser.add_argument("--recompute", default="none,full")
  parser.add_argument("--distributions", default="one_device,mirrored",
                      help="one_device and/or mirrored (all GPUs, else --cpu_devices logical "
                      "CPUs)")
  parser.add_argument("--cpu_devices", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per contender")
  parser.add_argument("--steps", type=int, default=2, help="optimizer steps per timed call")
  parser.add_argument("--timeout", type=float, default=3600.0)
  args = parser.parse_args(argv)
  split = lambda s: [x.strip() for x in s.split(",") if x.strip()]
  args.recompute = split(args.recompute)
  rows = []
  for dist, dtype, seq, batch in itertools.product(
      split(args.distributions), split(args.dtypes), [int(s) for s in split(args.seqs)],
      [int(b) for b in split(args.batches)]):
    print(f"cell: {dist} {dtype} seq {seq} batch {batch} ({', '.join(args.recompute)})",
          flush=True)
    rates, trial = run_cell(args, batch, seq, dtype, dist)
    for mode in args.recompute:
      rows.append((dist, dtype, seq, batch, mode, rates[mode], trial))
  device = next((t.result["device"] for *_, t in rows if t.result), "?")
  print(f"\nmachine: {machine_line()}")
  print(f"BERT-{args.preset}, {device}; median of {args.repeats} timed calls x {args.steps} "
        "steps after one warm-up call; spread = min .. max; recompute modes interleaved in "
        "one process per cell\n")
  print("| distribution | dtype | seq | batch | recompute | examples/s (spread) | tokens/s | "
        "vs none | peak memory |")
  print("|---|---|---:|---:|---|---:|---:|---:|---:|")
  for dist, dtype, seq, batch, mode, rate, trial in rows:
    if rate is None:
      print(f"| {dist} | {dtype} | {seq} | {batch} | {mode} | failed: {trial.reason} | | | |")
      continue
    base = next((r[5] for r in rows if r[:4] == (dist, dtype, seq, batch) and r[4] == "none"),
                None)
    ratio = f"{rate[0] / base[0]:.2f}x" if base else "-"
    print(f"| {dist} | {dtype} | {seq} | {batch} | {mode} | {rate[0]:.1f} "
          f"({rate[1]:.1f} .. {rate[2]:.1f}) | {rate[0] * seq:.0f} | {ratio} | "
          f"{trial.peak_bytes / GIB:.2f} GiB |")


if __name__ == "__main__":
  main()
