"""Scaling table (seed 002 style): examples/s of one device, Mirrored over 2 logical devices,
2 MultiWorkerMirrored processes and 2 Horovod ranks, at equal per-replica batch, fp32.

  .venv/bin/python benchmarks/bench_scaling.py [--preset mini --seq 128 --batch 8]

Each configuration runs ``python -m bert_tf.tools.scaling_worker`` (the real train loop,
``--loop`` steps per call, the first call excluded). Scaling efficiency = examples/s /
(replicas x examples/s of one process with the same per-process threads). On this 2-core CPU
each process gets 1 intra-op thread (Mirrored: one process with 2 threads); on GPUs, launch
the same configurations with one GPU per replica (README: "Scaling").
"""
import argparse
import os
import shutil
import tempfile

from bert_tf.tools import launch
from bert_tf.tools.machine import machine_line

WORKER = "bert_tf.tools.scaling_worker"
KINDS = ("one_device", "mirrored", "multi_worker_mirrored", "horovod")
TIMEOUT = 1800


def run(kind, args, tmp):
  """Runs one configuration; returns the chief's RESULT."""
  spec = {"preset": args.preset, "seq": args.seq, "per_replica_batch": args.batch,
          "steps": args.steps, "loop": args.loop, "output_dir": os.path.join(tmp, kind),
          "distribution": kind}
  if kind == "mirrored":
    spec["cpu_devices"] = 2
  command = launch.worker_command(WORKER, spec)
  one_thread = launch.thread_env(1)
  if kind == "one_device":
    runs = [command], [one_thread]
  elif kind == "mirrored":
    runs = [command], [launch.thread_env(2)]
  elif kind == "multi_worker_mirrored":
    envs = launch.multi_worker_envs(2, one_thread)
    runs = [command] * len(envs), envs
  elif kind == "horovod":
    runs = [launch.horovodrun(command)], [one_thread]
  else:
    raise ValueError(kind)
  outputs = launch.run_processes(*runs, timeout=TIMEOUT)
  return launch.require_result(outputs[0])  # the chief: worker 0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="mini")
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--batch", type=int, default=8, help="per-replica batch")
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--loop", type=int, default=10, help="steps per timed loop call")
  parser.add_argument("--kinds", default=",".join(KINDS), help="comma list of " + ", ".join(KINDS))
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="bench_scaling_")
  rows = []
  try:
    base = None
    for kind in args.kinds.split(","):
      try:
        result = run(kind, args, tmp)
      except Exception as e:  # a missing backend is reported, not fatal to the table
        rows.append((kind, None, None, f"failed: {str(e).splitlines()[0][:80]}"))
        continue
      rate, replicas = result["examples_per_sec"], result["replicas"]
      base = base or rate
      rows.append((kind, replicas, rate, f"{rate / (replicas * base):.0%}"))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  print(f"\nmachine: {machine_line()}")
  print(f"BERT-{args.preset}, seq {args.seq}, per-replica batch {args.batch}, fp32, CPU "
        f"(1 intra-op thread per process; Mirrored: 2 threads)\n")
  print("| configuration | replicas | examples/s | scaling efficiency |\n|---|---|---|---|")
  for kind, replicas, rate, eff in rows:
    print(f"| {kind} | {replicas or '-'} | {f'{rate:.1f}' if rate else '-'} | {eff} |")


if __name__ == "__main__":
  main()
