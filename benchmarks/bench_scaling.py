"""Scaling table (seed 002 style): examples/s of one device, Mirrored over 2 logical devices,
2 MultiWorkerMirrored processes and 2 Horovod ranks, at equal per-replica batch, fp32.

  .venv/bin/python benchmarks/bench_scaling.py [--preset mini --seq 128 --batch 8]

Scaling efficiency = examples/s / (replicas x examples/s of one process with the same
per-process threads). On this 2-core CPU each process gets 1 intra-op thread (Mirrored: one
process with 2 threads); on GPUs, launch the same configurations with one GPU per replica
(README: "Scaling").
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import multiprocess  # noqa: E402

WORKER = os.path.join(ROOT, "benchmarks", "scaling_worker.py")


def _threads(n):
  return {"TF_NUM_INTRAOP_THREADS": str(n), "TF_NUM_INTEROP_THREADS": "1",
          "OMP_NUM_THREADS": str(n)}


def _result(text):
  for line in text.splitlines():
    if "RESULT " in line:
      return json.loads(line.split("RESULT ", 1)[1])
  raise RuntimeError("no RESULT line:\n" + text[-3000:])


def run(kind, args, tmp):
  spec = {"preset": args.preset, "seq": args.seq, "per_replica_batch": args.batch,
          "steps": args.steps, "loop": args.loop, "output_dir": os.path.join(tmp, kind)}
  if kind == "one_device":
    spec.update(distribution="one_device")
    out = subprocess.run([sys.executable, WORKER, json.dumps(spec)], capture_output=True,
                         text=True, timeout=1800, env={**os.environ, **_threads(1)})
    return _result(out.stdout + out.stderr)
  if kind == "mirrored":
    spec.update(distribution="mirrored", cpu_devices=2)
    out = subprocess.run([sys.executable, WORKER, json.dumps(spec)], capture_output=True,
                         text=True, timeout=1800, env={**os.environ, **_threads(2)})
    return _result(out.stdout + out.stderr)
  if kind == "multi_worker_mirrored":
    spec.update(distribution="multi_worker_mirrored")
    procs = multiprocess.start_workers([sys.executable, WORKER, json.dumps(spec)],
                                       env=_threads(1), log_dir=tmp)
    multiprocess.wait_all(procs, timeout=1800)
    return _result(multiprocess.read_log(tmp, 0))
  if kind == "horovod":
    spec.update(distribution="horovod")
    out = subprocess.run(multiprocess.horovodrun([sys.executable, WORKER, json.dumps(spec)]),
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, **_threads(1)})
    return _result(out.stdout + out.stderr)
  raise ValueError(kind)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--preset", default="mini")
  parser.add_argument("--seq", type=int, default=128)
  parser.add_argument("--batch", type=int, default=8, help="per-replica batch")
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--loop", type=int, default=10, help="steps per timed loop call")
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="bench_scaling_")
  rows = []
  try:
    base = None
    for kind in ("one_device", "mirrored", "multi_worker_mirrored", "horovod"):
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
  print(f"\nBERT-{args.preset}, seq {args.seq}, per-replica batch {args.batch}, fp32, CPU "
        f"(1 intra-op thread per process; Mirrored: 2 threads)\n")
  print("| configuration | replicas | examples/s | scaling efficiency |\n|---|---|---|---|")
  for kind, replicas, rate, eff in rows:
    print(f"| {kind} | {replicas or '-'} | {f'{rate:.1f}' if rate else '-'} | {eff} |")


if __name__ == "__main__":
  main()
