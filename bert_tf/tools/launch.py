"""Running a tool's worker module in fresh processes and reading the ``RESULT`` line it prints.

No TensorFlow here: the launching process stays small and uninitialised.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional, Sequence

RESULT = "RESULT "


def worker_command(module: str, spec: dict) -> list:
  """``python -m <module> '<spec as JSON>'`` with this interpreter."""
  return [sys.executable, "-m", module, json.dumps(spec)]


def spec_from_argv(argv: Optional[Sequence[str]], usage: str) -> dict:
  """A worker's one argument, its JSON spec (``usage`` printed when it is missing)."""
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    raise SystemExit(usage)
  return json.loads(argv[0])


def print_result(result: dict) -> None:
  print(RESULT + json.dumps(result), flush=True)


def parse_result(text: str) -> Optional[dict]:
  """The last ``RESULT {json}`` of a worker's output (horovodrun may prefix lines), or None."""
  found = None
  for line in text.splitlines():
    if RESULT in line:
      found = json.loads(line.split(RESULT, 1)[1])
  return found


def require_result(text: str) -> dict:
  result = parse_result(text)
  if result is None:
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    raise RuntimeError(f"no RESULT line; the output ends {last[-200:]!r}\n" + text[-3000:])
  return result


def thread_env(intra_op: int) -> dict:
  """Environment giving a process ``intra_op`` compute threads and one inter-op thread."""
  return {"TF_NUM_INTRAOP_THREADS": str(intra_op), "TF_NUM_INTEROP_THREADS": "1",
          "OMP_NUM_THREADS": str(intra_op)}


def multi_worker_envs(num_workers: int, env: Optional[dict] = None) -> list:
  """One environment per MultiWorkerMirrored worker on localhost (``TF_CONFIG`` on free ports)."""
  sockets = [socket.socket() for _ in range(num_workers)]
  for s in sockets:
    s.bind(("localhost", 0))
  cluster = {"worker": [f"localhost:{s.getsockname()[1]}" for s in sockets]}
  for s in sockets:
    s.close()
  return [{**(env or {}), "TF_CONFIG": json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": i}})} for i in range(num_workers)]


def horovodrun(command: Sequence[str], num_ranks: int = 2) -> list:
  """``command`` under ``horovodrun --gloo`` on localhost (the venv's horovodrun)."""
  run = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or "horovodrun"
  return [run, "-np", str(num_ranks), "-H", f"localhost:{num_ranks}", "--gloo", *command]


def run_processes(commands: Sequence[Sequence[str]], envs: Sequence[dict],
                  timeout: float) -> list:
  """Starts every command at once (each with os.environ updated by its env), waits for all
  within ``timeout`` seconds and returns each one's output (stdout and stderr). A process
  still running at the deadline is a hang: all are killed and TimeoutError is raised."""
  with contextlib.ExitStack() as stack:
    logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in commands]
    procs = []
    try:
      for command, env, log in zip(commands, envs, logs):
        procs.append(subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                      text=True, env={**os.environ, **env}))
      deadline = time.monotonic() + timeout
      for proc in procs:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      raise TimeoutError(f"{len(procs)} process(es) still running after {timeout:.0f}s: "
                         f"{' '.join(commands[0][:4])} ...") from None
    finally:
      for proc in procs:
        if proc.poll() is None:
          proc.kill()
          proc.wait()
    outputs = []
    for log in logs:
      log.seek(0)
      outputs.append(log.read())
  return outputs
