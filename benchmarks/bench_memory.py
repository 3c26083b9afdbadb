"""Recompute: maximum batch per mode, slowdown per example, and the estimator against peaks.

Three tables (Markdown) and a chart, for one model (default BERT-Base, fp32):

  1. max batch: ``max_batch_size.py``'s search (``bert_tf.tools.max_batch``) per recompute
     mode (none, selective, full) and sequence length, under ``--memory_limit_gb`` (CPU:
     peak RSS of the child; GPU: device memory), with +x% over the baseline (none);
  2. slowdown: examples/s of the three modes at the SAME batch, measured in one process with
     the contenders' calls interleaved (warm-up excluded), median over rounds; slowdown =
     1 - (mode examples/s) / (none examples/s), computed round by round;
  3. estimator: ``bert_tf.memory.estimate`` against every try of the search that finished
     (measured peak RSS, and TensorFlow's allocator peak where the device keeps one: "-"
     on a CPU with oneDNN off), with the % error;

and writes ``memory_estimate.png`` (estimated components per mode, measured peaks marked).

    # CPU, ~60 minutes on 2 cores (BERT-Base; searches stop within --tolerance):
    python benchmarks/bench_memory.py --memory_limit_gb 8 --seqs 128,512
    # only the slowdown, or only the tables from searches already run by max_batch_size.py
    python benchmarks/bench_memory.py --skip_search --speed_batches 128:8,512:2
    python benchmarks/bench_memory.py --load 'results/*.json' --skip_speed
    # GPU: device memory is the budget, fp16 as in the seed's tables
    python benchmarks/bench_memory.py --preset large --dtype fp16 --seqs 128,512

``--runtime_gb`` is the framework's own resident memory added to the estimate (CPU: TF
libraries, graphs and allocator slack, measured here as peak RSS minus TensorFlow's allocator
peak; use 0 on a GPU, whose peak is the allocator's).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics

from bert_tf.tools import max_batch
from bert_tf.tools.memory_stats import GIB
from bert_tf.tools.machine import machine_line
from bert_tf.tools.synthetic import default_predictions

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("none", "selective", "full")
# Starting points of the doubling for BERT-Base at 8 GiB (any start works; these save tries).
DEFAULT_STARTS = {("none", 128): 16, ("selective", 128): 32, ("full", 128): 64,
                  ("none", 512): 2, ("selective", 512): 8, ("full", 512): 16}


def run_searches(args):
  """-> {(mode, seq): {"lo", "hi", "trials": [Trial dicts]}}"""
  found = {}
  budget = int(args.memory_limit_gb * GIB) if args.memory_limit_gb else None
  for seq in args.seqs:
    for mode in args.modes:
      spec = {"preset": args.preset, "seq": seq, "dtype": args.dtype, "recompute": mode}
      print(f"search: recompute={mode} seq={seq}", flush=True)
      lo, hi, trials = max_batch.search_mode(
          spec, budget, start=DEFAULT_STARTS.get((mode, seq), 1), tolerance=args.tolerance)
      found[(mode, seq)] = {"lo": lo, "hi": hi, "trials": [t.__dict__ for t in trials]}
  return found


def run_points(args):
  """Single tries at ``mode:seq:batch`` points (for the estimator table), as searches would
  record them."""
  found = {}
  budget = int(args.memory_limit_gb * GIB) if args.memory_limit_gb else None
  for point in args.points:
    mode, seq, batch = point.split(":")
    spec = {"preset": args.preset, "seq": int(seq), "dtype": args.dtype, "recompute": mode,
            "batch": int(batch)}
    trial = max_batch.run_try(spec, budget)
    print(f"point {point}: {'fits' if trial.fits else 'does not fit'} "
          f"({(trial.peak_bytes or 0) / GIB:.2f} GiB, {trial.reason}, {trial.seconds:.0f}s)",
          flush=True)
    entry = found.setdefault((mode, int(seq)), {"lo": 0, "hi": None, "trials": []})
    entry["trials"].append(trial.__dict__)
    if trial.fits:
      entry["lo"] = max(entry["lo"], int(batch))
  return found


def load_searches(pattern):
  """Reads ``max_batch_size.py --json_out`` files."""
  found = {}
  for path in sorted(glob.glob(pattern)):
    with open(path) as f:
      data = json.load(f)
    seq = data["args"]["max_seq_length"]
    for mode, (lo, hi) in data["found"].items():
      trials = data["trials"].get(mode, [])
      if mode in data["trials"] or (mode, seq) not in found:
        found[(mode, seq)] = {"lo": lo, "hi": hi, "trials": trials}
  return found


def max_batch_table(found, seqs, budget_label):
  lines = [f"Maximum batch, {budget_label}", "",
           "| seq | none (baseline) | selective | +x% | full | +x% |",
           "|---:|---:|---:|---:|---:|---:|"]
  fmt = lambda r: "-" if r is None else (
      f"{r['lo']}" if r["hi"] in (None, r["lo"] + 1) else f"{r['lo']} (< {r['hi']})")
  for seq in seqs:
    base = found.get(("none", seq))
    cells = [fmt(base)]
    for mode in ("selective", "full"):
      r = found.get((mode, seq))
      cells.append(fmt(r))
      cells.append(f"+{100 * (r['lo'] / base['lo'] - 1):.0f}%" if r and base and base["lo"]
                   else "-")
    lines.append(f"| {seq} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def estimator_table(found, args):
  from bert_tf import configs, memory  # pylint: disable=import-outside-toplevel
  config = configs.preset(args.preset)
  runtime = int(args.runtime_gb * GIB)
  lines = ["| mode | seq | batch | measured peak RSS | estimate | error | TF allocator peak | "
           "estimate w/o runtime | error |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
  points, errors = [], []
  for (mode, seq), r in sorted(found.items(), key=lambda kv: (kv[0][1], MODES.index(kv[0][0]))):
    for t in r["trials"]:
      if not t.get("result"):
        continue
      res = t["result"]
      est = memory.estimate(config, t["batch"], seq, res.get("predictions"), args.dtype, mode,
                            runtime_bytes=runtime, update_ordered=not args.unordered_update)
      err = est.total / res["peak_bytes"] - 1
      tensor = res.get("tensor_peak_bytes")  # None where TensorFlow keeps no statistics
      tensor_cells = ("-", "-") if not tensor else (
          f"{tensor / GIB:.2f} GiB", f"{100 * ((est.total - runtime) / tensor - 1):+.0f}%")
      errors.append(err)
      points.append((mode, seq, t["batch"], res["peak_bytes"]))
      lines.append(f"| {mode} | {seq} | {t['batch']} | {res['peak_bytes'] / GIB:.2f} GiB | "
                   f"{est.total / GIB:.2f} GiB | {100 * err:+.0f}% | {tensor_cells[0]} | "
                   f"{(est.total - runtime) / GIB:.2f} GiB | {tensor_cells[1]} |")
  if errors:
    lines.append("")
    lines.append(f"largest |error| vs peak RSS: {100 * max(abs(e) for e in errors):.0f}% "
                 f"over {len(errors)} measured tries (runtime term {args.runtime_gb:g} GiB)")
  return "\n".join(lines), points


def chart(found, points, args, path):
  from bert_tf import configs, memory  # pylint: disable=import-outside-toplevel
  config = configs.preset(args.preset)
  estimates, measured = [], []
  for seq in args.seqs:
    for mode in args.modes:
      mine = [p for p in points if p[0] == mode and p[1] == seq]
      if mine:  # the largest measured batch of this mode
        _, _, batch, peak = max(mine, key=lambda p: p[2])
      else:
        batch, peak = (found.get((mode, seq)) or {}).get("lo") or 1, None
      estimates.append(memory.estimate(config, batch, seq, default_predictions(seq),
                                       args.dtype, mode, runtime_bytes=int(args.runtime_gb * GIB),
                                       update_ordered=not args.unordered_update))
      measured.append(None if peak is None else peak / GIB)
  return memory.plot(estimates, path, measured=measured, title=(
      f"BERT-{args.preset} {args.dtype}, {budget_note(args)}: estimate by component at each "
      f"mode's largest measured batch (bars), measured peak RSS (marks)"))


def budget_note(args):
  return ("update unordered (before 2dc9483)" if args.unordered_update
          else "update after the gradients")


def speed(args):
  """Slowdown per example at equal batch: per seq, one process per recompute mode holding that
  mode and the baseline side by side (two models, not three: less memory on a shared machine),
  their calls interleaved; the first call of each is warm-up."""
  rows = []
  for item in args.speed_batches:
    seq, batch = (int(x) for x in item.split(":"))
    row = {"seq": seq, "batch": batch, "eps": {}}
    for mode in args.speed_modes:
      spec = {"preset": args.preset, "seq": seq, "batch": batch, "dtype": args.dtype,
              "modes": ["none", mode], "calls": args.rounds}
      print(f"speed: seq {seq} batch {batch}, none vs {mode}, {args.rounds} interleaved rounds",
            flush=True)
      trial = max_batch.run_try(spec, None, timeout=7200)
      if not trial.result:
        raise RuntimeError(f"speed run failed: {trial.reason}")
      times = trial.result["call_seconds"]
      eps = {m: [batch / t for t in times[m][1:]] for m in ("none", mode)}
      ratios = [1 - a / b for a, b in zip(eps[mode], eps["none"])]
      row[mode] = (statistics.median(ratios), min(ratios), max(ratios))
      row["eps"][mode] = statistics.median(eps[mode])
      row["eps"].setdefault("none", []).append(statistics.median(eps["none"]))
      print(f"  {mode}: slowdown {row[mode]}, ex/s none {eps['none']} {mode} {eps[mode]}",
            flush=True)
    row["eps"]["none"] = statistics.median(row["eps"]["none"])
    rows.append(row)
  lines = ["| seq | batch | none ex/s | selective ex/s | selective slowdown | full ex/s | "
           "full slowdown |", "|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    cell = lambda m: (f"{100 * r[m][0]:.1f}% ({100 * r[m][1]:.1f} .. {100 * r[m][2]:.1f})"
                      if m in r else "-")
    eps = lambda m: f"{r['eps'][m]:.2f}" if m in r["eps"] else "-"
    lines.append(f"| {r['seq']} | {r['batch']} | {eps('none')} | {eps('selective')} | "
                 f"{cell('selective')} | {eps('full')} | {cell('full')} |")
  return "\n".join(lines) + (f"\n\nslowdown per example = 1 - mode ex/s / none ex/s, per "
                             f"round; median (min .. max) over {args.rounds} interleaved rounds")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="base")
  parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
  parser.add_argument("--seqs", default="128,512")
  parser.add_argument("--modes", default=",".join(MODES))
  parser.add_argument("--memory_limit_gb", type=float, default=8.0,
                      help="CPU budget (peak RSS); 0 on a GPU (device memory is the budget)")
  parser.add_argument("--tolerance", type=float, default=0.3,
                      help="bisection stops within this fraction (CPU steps are slow)")
  parser.add_argument("--load", default=None,
                      help="glob of max_batch_size.py --json_out files instead of searching")
  parser.add_argument("--skip_search", action="store_true")
  parser.add_argument("--points", default="",
                      help="mode:seq:batch tries for the estimator table instead of searches")
  parser.add_argument("--skip_speed", action="store_true")
  parser.add_argument("--speed_batches", default="128:8,512:2",
                      help="seq:batch pairs for the equal-batch slowdown")
  parser.add_argument("--speed_modes", default="selective,full",
                      help="modes timed against none (one process each)")
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--unordered_update", action="store_true",
                      help="estimate as for code before the update was ordered after the "
                      "gradients (measurements taken before commit 2dc9483)")
  parser.add_argument("--runtime_gb", type=float, default=1.3)
  parser.add_argument("--chart", default=os.path.join(HERE, "memory_estimate.png"))
  args = parser.parse_args(argv)
  args.seqs = [int(s) for s in args.seqs.split(",")]
  args.modes = [m.strip() for m in args.modes.split(",")]
  args.speed_batches = [s for s in args.speed_batches.split(",") if s]
  args.speed_modes = [m for m in args.speed_modes.split(",") if m]
  budget_label = (f"CPU peak RSS <= {args.memory_limit_gb:g} GiB" if args.memory_limit_gb
                  else "GPU memory")
  out = ["", f"machine: {machine_line()}"]
  args.points = [p for p in args.points.split(",") if p]
  if args.load:
    found = load_searches(args.load)
  elif args.points:
    found = run_points(args)
  elif not args.skip_search:
    found = run_searches(args)
  else:
    found = {}
  if found:
    out += ["", max_batch_table(found, args.seqs, budget_label)]
    table, points = estimator_table(found, args)
    out += ["", f"Estimator vs measured (BERT-{args.preset}, {args.dtype})", "", table]
    out += ["", f"chart: {chart(found, points, args, args.chart)}"]
  if not args.skip_speed:
    out += ["", f"Slowdown per example at equal batch (BERT-{args.preset}, {args.dtype})", "",
            speed(args)]
  print("\n".join(out))


if __name__ == "__main__":
  main()
