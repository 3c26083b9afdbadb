"""Fault tolerance of run_pretraining.py on localhost, for MultiWorkerMirrored and Horovod:

* SIGKILL of one worker mid-run (MultiWorkerMirrored: the non-chief, during a collective
  save): the other exits non-zero within 90 s; relaunching the same command resumes from the
  last complete checkpoint and ends with the weights of an uninterrupted run.
* SIGSTOP (a frozen worker): the other side exits non-zero within 90 s, never hangs.
Every process has a hard time limit.
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import tensorflow as tf

from bert_tf.testing import launch
from bert_tf.testing.files import write_pretraining_records
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import dropout_config

pytestmark = pytest.mark.distributed

# Long enough that, at full speed on a quiet machine (~75 steps/s), the job is still running
# seconds after its first checkpoint, when the test signals a worker.
STEPS, SAVE_EVERY = 600, 20
EXIT_WITHIN = 90


def _flags(tmp_path, out):
  config = dropout_config(0.1)
  config.to_json_file(tmp_path / "bert_config.json")
  files = []
  for i in range(2):  # one file per worker: the reader shards by file
    path = tmp_path / f"train-{i}.tfrecord"
    if not path.exists():
      write_pretraining_records(path, pretraining_features(config, batch=64, seq=16,
                                                           predictions=3, seed=i))
    files.append(str(path))
  return [os.path.join(launch.ROOT, "run_pretraining.py"),
          f"--bert_config_file={tmp_path / 'bert_config.json'}",
          f"--input_file={','.join(files)}", f"--output_dir={out}", "--do_train",
          "--train_batch_size=8", "--max_seq_length=16", "--max_predictions_per_seq=3",
          f"--num_train_steps={STEPS}", "--num_warmup_steps=10", "--learning_rate=1e-3",
          f"--save_checkpoints_steps={SAVE_EVERY}", "--iterations_per_loop=1",
          "--deterministic", "--stall_timeout_secs=40", "--seed=7"]


class _Backend:
  """Starts the 2-process job and finds its worker processes."""

  def __init__(self, name, tmp_path):
    self.name = name
    self.tmp_path = tmp_path

  def start(self, out, tag):
    args = _flags(self.tmp_path, out)
    log_dir = self.tmp_path / f"logs-{tag}"
    log_dir.mkdir()
    if self.name == "multi_worker_mirrored":
      procs = launch.start_workers(
          [sys.executable, *args, "--distribution=multi_worker_mirrored", "--collective=ring"],
          log_dir=str(log_dir))
      return procs, procs, log_dir
    log = open(log_dir / "worker0.log", "w")
    env = {**os.environ, "HOROVOD_STALL_CHECK_TIME_SECONDS": "10",
           "HOROVOD_STALL_SHUTDOWN_TIME_SECONDS": "30"}
    launcher = subprocess.Popen(launch.horovodrun([sys.executable, *args, "--use_horovod"]),
                                cwd=launch.ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env=env)
    return [launcher], None, log_dir

  def ranks(self, procs):
    """The training processes, ordered by rank.

    For Horovod these are horovodrun's python grandchildren: horovodrun runs each rank as
    `sh -c "cd ...; env HOROVOD_RANK=r ... python run_pretraining.py ..."`, so the shell's
    command line names run_pretraining.py too. Signalling that shell instead of the rank would
    end the shell alone; the rank is the process that carries HOROVOD_RANK in its environment.
    """
    if self.name == "multi_worker_mirrored":
      return [psutil.Process(p.pid) for p in procs]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
      found = {}
      for child in psutil.Process(procs[0].pid).children(recursive=True):
        try:
          rank = child.environ().get("HOROVOD_RANK")
          argv = child.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
          continue
        if (rank is not None and argv and os.path.basename(argv[0]).startswith("python")
            and "run_pretraining.py" in " ".join(argv)):
          found[int(rank)] = child
      if sorted(found) == [0, 1]:
        return [found[0], found[1]]
      if procs[0].poll() is not None:
        raise AssertionError(f"horovodrun exited ({procs[0].returncode}) before the test "
                             "could signal a rank")
      time.sleep(0.2)
    raise AssertionError("horovod ranks did not start")


def _wait_for_path(path, procs, log_dir, what, timeout=240, poll=0.2):
  """Until ``path`` exists; fails if the job ends first or the time runs out."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if path.exists():
      return
    if any(p.poll() is not None for p in procs):
      logs = "\n".join(f.read_text()[-2000:] for f in log_dir.iterdir())
      raise AssertionError(f"job ended before {what}:\n{logs}")
    time.sleep(poll)
  launch.kill_all(procs)
  raise AssertionError(f"no {what} within {timeout}s")


def _wait_for_checkpoint(out, procs, log_dir):
  _wait_for_path(out / f"ckpt-{SAVE_EVERY}.index", procs, log_dir, "its first checkpoint")


def _wait_for_collective_save(out, procs, log_dir, worker=1):
  """Until a MultiWorkerMirrored save is in progress on ``worker`` (a non-chief): it takes
  part in every save, writing into its scratch directory and removing it at once."""
  _wait_for_path(out / f".worker_{worker}_tmp", procs, log_dir, f"a save of worker {worker}",
                 timeout=120, poll=0.0005)


def _model_weights(out):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out)))
  names = sorted(n for n in reader.get_variable_to_shape_map()
                 if n.startswith("model/") and "OPTIMIZER_SLOT" not in n)
  return {n: reader.get_tensor(n) for n in names}


def _assert_survivors_exit(procs, started, log_dir):
  codes = launch.wait_all(procs, timeout=EXIT_WITHIN + 60)
  took = time.monotonic() - started
  logs = "\n".join(f.read_text()[-1500:] for f in sorted(log_dir.iterdir()))
  assert all(c != 0 for c in codes), f"a process exited 0 after a peer failed:\n{logs}"
  assert took <= EXIT_WITHIN, f"took {took:.0f}s to exit after the failure:\n{logs}"
  return took


@pytest.mark.parametrize("backend", ["multi_worker_mirrored", "horovod"])
def test_kill_one_worker_then_relaunch_resumes_to_uninterrupted_result(tmp_path, backend):
  if backend == "horovod":
    pytest.importorskip("horovod.tensorflow", reason="Horovod not installed")
  job = _Backend(backend, tmp_path)
  # Uninterrupted reference.
  ref_out = tmp_path / "reference"
  procs, _, log_dir = job.start(ref_out, "reference")
  codes = launch.wait_all(procs, timeout=400)
  assert codes == [0] * len(procs), "\n".join(f.read_text()[-3000:] for f in log_dir.iterdir())

  out = tmp_path / "killed"
  procs, _, log_dir = job.start(out, "killed")
  _wait_for_checkpoint(out, procs, log_dir)
  victim = job.ranks(procs)[1]
  if backend == "multi_worker_mirrored":
    # The non-chief dies during a collective save: its scratch checkpoint half written, the
    # chief's save of that step complete or not. The relaunch must resume from a complete one.
    _wait_for_collective_save(out, procs, log_dir)
  victim.send_signal(signal.SIGKILL)
  killed_at = time.monotonic()
  survivors = [p for p in procs if p.pid != victim.pid]
  took = _assert_survivors_exit(survivors, killed_at, log_dir)
  resumed_from = int(os.path.basename(tf.train.latest_checkpoint(str(out))).split("-")[1])
  print(f"{backend}: survivors exited {took:.1f}s after SIGKILL; last checkpoint step "
        f"{resumed_from}")
  assert resumed_from < STEPS

  procs, _, log_dir = job.start(out, "relaunch")
  codes = launch.wait_all(procs, timeout=400)
  logs = "\n".join(f.read_text() for f in log_dir.iterdir())
  assert codes == [0] * len(procs), logs[-4000:]
  # The relaunch restored the last checkpoint of the killed run (the engine's log line).
  assert re.search(rf"restored \S*ckpt-{resumed_from} \(step {resumed_from}\)", logs), \
      logs[-4000:]
  ref, got = _model_weights(ref_out), _model_weights(out)
  assert ref.keys() == got.keys() and ref
  diff = max(float(np.max(np.abs(ref[n] - got[n]))) for n in ref)
  print(f"{backend}: resumed vs uninterrupted, max |weight diff| {diff:.2e}")
  assert diff <= 1e-6


@pytest.mark.parametrize("backend", ["multi_worker_mirrored", "horovod"])
def test_frozen_worker_makes_the_job_exit_instead_of_hanging(tmp_path, backend):
  if backend == "horovod":
    pytest.importorskip("horovod.tensorflow", reason="Horovod not installed")
  job = _Backend(backend, tmp_path)
  out = tmp_path / "stalled"
  procs, _, log_dir = job.start(out, "stalled")
  _wait_for_checkpoint(out, procs, log_dir)
  victim = job.ranks(procs)[1]
  victim.send_signal(signal.SIGSTOP)
  stopped_at = time.monotonic()
  try:
    survivors = [p for p in procs if p.pid != victim.pid]
    took = _assert_survivors_exit(survivors, stopped_at, log_dir)
    print(f"{backend}: job exited {took:.1f}s after a worker froze")
  finally:
    try:
      victim.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
      pass
    launch.kill_all(procs)


@pytest.mark.parametrize("backend", ["multi_worker_mirrored", "horovod"])
def test_sigterm_to_one_worker_checkpoints_and_stops_every_worker(tmp_path, backend):
  """An announced termination: all workers agree, save at the same step and exit 143
  (MultiWorkerMirrored through TensorFlow's PreemptionCheckpointHandler, Horovod through
  our SIGTERM flag and an allreduce)."""
  if backend == "horovod":
    pytest.importorskip("horovod.tensorflow", reason="Horovod not installed")
  job = _Backend(backend, tmp_path)
  out = tmp_path / "terminated"
  procs, _, log_dir = job.start(out, "terminated")
  _wait_for_checkpoint(out, procs, log_dir)
  ranks = job.ranks(procs)
  ranks[1].send_signal(signal.SIGTERM)
  codes = launch.wait_all(procs, timeout=EXIT_WITHIN)
  logs = "\n".join(f.read_text() for f in sorted(log_dir.iterdir()))
  if backend == "multi_worker_mirrored":
    assert all(code == 143 for code in codes), (codes, logs[-3000:])
    # TensorFlow's own PreemptionCheckpointHandler agreed the step and saved on each worker.
    for log in sorted(log_dir.iterdir()):
      assert "PreemptionCheckpointHandler: checkpoint saved" in log.read_text(), log
  else:  # horovodrun reports a rank's non-zero exit as its own failure
    assert codes != [0] and "Exit code: 143" in logs, (codes, logs[-3000:])
  assert logs.count("termination requested (SIGTERM)") == 2
  step = int(os.path.basename(tf.train.latest_checkpoint(str(out))).split("-")[1])
  print(f"{backend}: SIGTERM -> checkpoint at step {step}, exit codes {codes}")
  assert SAVE_EVERY <= step < STEPS
