"""Per-op-type profile of the BERT pretraining step: ours against Model Garden's.

Builds the two contenders of ``bench_pretraining.py`` (our ``Pretrainer`` loop and Model
Garden's ``BertPretrainerV2`` step, same config, seq 128, 20 predictions), warms both up, then
records ``--steps`` steps of each under ``tf.profiler.experimental`` and sums the self time of
every TensorFlow op in the trace (the xplane's host threads; an op's self time excludes the
events nested inside it) by op type. Times are thread time per step: with 2 threads running
ops side by side they can add up to more than the step's wall time, so the table also gives
each type's share of all op time.

    python benchmarks/profile_step.py                     # Mini, batch 32
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/profile_step.py --top 25
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import tempfile
import time

import bench_pretraining as bench  # this script's folder is on the path when run as a script
import tensorflow as tf
from absl import logging
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from bert_tf.tools.machine import machine_line

# What an op belongs to, from its name scope (first match wins; ours and Model Garden's names).
# Our cross-entropy (bert_tf.modeling.losses) runs unscoped: its vocabulary-wide softmax, argmax
# and scatter are matched by op type.
ROLES = (("optimizer", r"AdamWeightDecay|LAMB"), ("clip / global norm", r"global_norm"),
         ("dropout", r"dropout"), ("GELU", r"Gelu|gelu"), ("LayerNorm", r"layer_norm|LayerNorm"),
         ("attention softmax", r"attention.*[Ss]oftmax"),
         ("MLM cross-entropy", r"SparseSoftmaxCrossEntropy|cross_entropy|:_?(Mkl)?Softmax$|"
                               r":ArgMax$|:TensorScatterSub$"),
         ("embedding lookup", r"embedding"))


def role(op_name: str) -> str:
  """The ROLES entry of an op (forward, or "... (grad)" under the gradient tape), else the
  remaining ops by their place: the rest of the forward pass, of its gradient, or the step."""
  grad = " (grad)" if "gradient_tape/" in op_name else ""
  for name, pattern in ROLES:
    if re.search(pattern, op_name):
      return name + grad
  if re.search(r"AddN|UnsortedSegmentSum", op_name):
    return "gradient aggregation"
  return ("other model ops" + grad) if re.search(r"bert|encoder|pretrainer", op_name) \
      else "other step ops"


def op_self_times(logdir: str) -> collections.Counter:
  """Seconds of self time per (op type, ``role`` of the op) over every host thread of the
  trace in ``logdir``."""
  (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
  space = xplane_pb2.XSpace()
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  totals = collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {k: m.name for k, m in plane.event_metadata.items()}
    for line in plane.lines:
      events = sorted(((e.offset_ps, e.duration_ps, names.get(e.metadata_id, ""))
                       for e in line.events), key=lambda e: (e[0], -e[1]))
      # TraceMe events on one thread nest; an op's self time is its span minus its children's.
      stack = []  # [end_ps, op_type or None, start_ps, children_ps]
      def close(item):
        if item[1] is not None:
          totals[item[1]] += (item[0] - item[2] - item[3]) * 1e-12
      for start, duration, name in events:
        while stack and stack[-1][0] <= start:
          close(stack.pop())
        if stack:
          stack[-1][3] += duration
        # Op events are named "op_name:OpType" (types start upper-case, "_Mkl..." included).
        # (Runtime events such as "ExecutorState::Process" are not ops.)
        op, _, kind = name.rpartition(":") if "::" not in name else ("", "", "")
        if op and (kind[:1].isupper() or kind.startswith("_")):
          kind = (kind, role(name))
        else:
          kind = None
        stack.append([start + duration, kind, start, 0])
      while stack:
        close(stack.pop())
  return totals


def profile(contender, steps_per_run: int, runs: int) -> tuple:
  """(seconds per step by (op type, role), wall seconds per step) over ``runs`` calls."""
  logdir = tempfile.mkdtemp(prefix="profile_step_")
  tf.profiler.experimental.start(logdir)
  began = time.perf_counter()
  for _ in range(runs):
    contender.run()
  wall = time.perf_counter() - began
  tf.profiler.experimental.stop()
  totals = op_self_times(logdir)
  steps = steps_per_run * runs
  return {k: v / steps for k, v in totals.items()}, wall / steps


def table(results: dict, top: int, by: str) -> str:
  """Markdown table of ours against Model Garden, op time grouped by op ``type`` or ``role``."""
  grouped = []
  for times, _ in (results["ours"], results["mg"]):
    grouped.append(collections.Counter())
    for (kind, where), seconds in times.items():
      grouped[-1][kind if by == "type" else where] += seconds
  ours, mg = grouped
  ours_total, mg_total = sum(ours.values()), sum(mg.values())
  kinds = sorted(set(ours) | set(mg), key=lambda k: -(ours.get(k, 0) + mg.get(k, 0)))
  rows = [f"| op {by} | ours ms/step | ours % | MG ms/step | MG % | ours - MG ms |",
          "|---|---:|---:|---:|---:|---:|"]
  rest = [0.0, 0.0]
  for i, k in enumerate(kinds):
    a, b = ours.get(k, 0.0), mg.get(k, 0.0)
    if i >= top:
      rest[0] += a
      rest[1] += b
      continue
    rows.append(f"| {k} | {1e3 * a:.1f} | {100 * a / ours_total:.1f} | {1e3 * b:.1f} | "
                f"{100 * b / mg_total:.1f} | {1e3 * (a - b):+.1f} |")
  rows.append(f"| (other {max(0, len(kinds) - top)} types) | {1e3 * rest[0]:.1f} | "
              f"{100 * rest[0] / ours_total:.1f} | {1e3 * rest[1]:.1f} | "
              f"{100 * rest[1] / mg_total:.1f} | {1e3 * (rest[0] - rest[1]):+.1f} |")
  rows.append(f"| **all ops (thread time)** | {1e3 * ours_total:.1f} | 100 | "
              f"{1e3 * mg_total:.1f} | 100 | {1e3 * (ours_total - mg_total):+.1f} |")
  rows.append(f"| **wall time per step (traced)** | {1e3 * results['ours'][1]:.1f} | | "
              f"{1e3 * results['mg'][1]:.1f} | | |")
  return "\n".join(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", default="mini", choices=sorted(bench.MODELS))
  parser.add_argument("--steps", type=int, default=5, help="steps per call (both contenders)")
  parser.add_argument("--runs", type=int, default=2, help="traced calls per contender")
  parser.add_argument("--top", type=int, default=20, help="op types listed (rest summed)")
  parser.add_argument("--dropout", type=float, default=0.1)
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  config = bench.bert_config(args.model, args.dropout)
  batch = bench.MODELS[args.model][3]
  examples = bench.random_examples(max(4 * batch, 64))
  with tempfile.TemporaryDirectory() as tmp:
    contenders = {
        "ours": bench.Ours(config, batch, examples, args.steps, False, tmp),
        "mg": bench.ModelGarden(config, batch, examples, args.steps, args.steps)}
    for contender in (*contenders.values(), *contenders.values()):  # tracing, warm-up
      contender.run()
    results = {k: profile(c, args.steps, args.runs) for k, c in contenders.items()}
  print(f"machine: {machine_line()}")
  print(f"BERT-{args.model.capitalize()}, batch {batch}, seq {bench.SEQ}, "
        f"{args.steps} steps per call, {args.runs} traced calls each; load {os.getloadavg()}")
  print(table(results, args.top, "type"))
  print()
  print(table(results, args.top, "role"))


if __name__ == "__main__":
  main()
