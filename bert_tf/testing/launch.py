"""Subprocesses for tests, always with hard time limits: the command-line tools, the workers of
a MultiWorkerMirrored job (TF_CONFIG on free localhost ports) and horovodrun."""
import os
import shutil
import subprocess
import sys
import time

from bert_tf.tools import launch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(script, args, timeout):
  """Runs ``ROOT/script args`` with this interpreter; a CompletedProcess with text output."""
  return subprocess.run([sys.executable, os.path.join(ROOT, script), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def start_workers(command, num_workers=2, env=None, log_dir=None):
  """Starts ``command`` once per MultiWorkerMirrored worker (TF_CONFIG set per process), its
  output to ``log_dir/worker<i>.log`` (or a pipe). Pair with ``wait_all``."""
  procs = []
  for i, worker_env in enumerate(launch.multi_worker_envs(num_workers, env)):
    log = open(os.path.join(log_dir, f"worker{i}.log"), "w") if log_dir else subprocess.PIPE
    procs.append(subprocess.Popen(command, env={**os.environ, **worker_env}, cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT, text=True))
  return procs


def horovodrun(args, num_ranks=2):
  """The horovodrun command line (gloo, localhost) that runs ``args`` as ``num_ranks`` ranks."""
  assert shutil.which("horovodrun", path=os.path.dirname(sys.executable)), \
      "horovod is importable but horovodrun is not next to the interpreter"
  return launch.horovodrun(args, num_ranks)


def wait_all(procs, timeout):
  """Waits for every process; kills all and fails on timeout. Returns exit codes."""
  deadline = time.monotonic() + timeout
  codes = []
  try:
    for p in procs:
      codes.append(p.wait(timeout=max(1, deadline - time.monotonic())))
  except subprocess.TimeoutExpired:
    kill_all(procs)
    raise AssertionError(f"workers still running after {timeout}s (a hang)")
  return codes


def kill_all(procs):
  for p in procs:
    if p.poll() is None:
      p.kill()
  for p in procs:
    try:
      p.wait(timeout=30)
    except subprocess.TimeoutExpired:
      pass


def read_log(log_dir, i):
  with open(os.path.join(log_dir, f"worker{i}.log")) as f:
    return f.read()
