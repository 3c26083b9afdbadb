"""Horovod elastic training (--elastic) on localhost with a discovery script the test controls:
2 ranks -> SIGKILL one -> training goes on with 1 -> discovery offers 2 again -> back to 2 ->
finishes. Against an uninterrupted elastic run on 2 ranks: the same example ids at every step
(none repeated or skipped), the same step-by-step loss (each step once in the metrics file,
the roll-back logged once), the same evaluations every --eval_every_steps, the same final
weights (tolerance measured and stated in the README). Every process has a hard time limit."""
import collections
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import tensorflow as tf

from bert_tf.testing import elastic_job, launch
from bert_tf.testing.files import read_metrics, write_pretraining_records
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import dropout_config


STEPS, COMMIT = 64, 4  # 2 files x 64 examples, global batch 8
EVAL = 32              # --eval_every_steps (and --save_checkpoints_steps)
PACE = 0.15          # seconds per step at least: room to act mid-run
JOB_TIMEOUT = 150    # seconds for one horovodrun job
TOLERANCE = 1e-5     # max |final weight difference| against the uninterrupted run


def _command(tmp_path, out):
  config = dropout_config(0.1)
  config.to_json_file(tmp_path / "bert_config.json")
  files = []
  for i in range(2):
    path = tmp_path / f"train-{i}.tfrecord"
    if not path.exists():
      write_pretraining_records(path, pretraining_features(config, batch=64, seq=16,
                                                           predictions=3, seed=i))
    files.append(str(path))
  return [sys.executable, os.path.join(launch.ROOT, "run_pretraining.py"),
          f"--bert_config_file={tmp_path / 'bert_config.json'}",
          f"--input_file={','.join(files)}", f"--output_dir={out}", "--do_train",
          "--use_horovod", "--elastic", f"--elastic_commit_steps={COMMIT}",
          "--train_batch_size=8", "--gradient_accumulation_steps=2", "--max_seq_length=16",
          "--max_predictions_per_seq=3", f"--num_train_steps={STEPS}", "--num_warmup_steps=4",
          "--learning_rate=1e-3", f"--save_checkpoints_steps={EVAL}",
          f"--eval_every_steps={EVAL}", "--max_eval_steps=4", "--iterations_per_loop=1",
          "--deterministic", "--stall_timeout_secs=0", "--seed=7"]


def _start(tmp_path, name):
  work = tmp_path / name
  work.mkdir()
  script, hosts = elastic_job.discovery_script(str(work))
  env = {**os.environ, elastic_job.TRACE_ENV: str(work / "trace"),
         elastic_job.PACE_ENV: str(PACE)}
  log = open(work / "horovodrun.log", "w")
  proc = subprocess.Popen(
      elastic_job.horovodrun_elastic(_command(tmp_path, work / "out"), script),
      cwd=launch.ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
  return proc, work, hosts


def _log(work):
  return (work / "horovodrun.log").read_text()[-6000:]


def _wait(proc, work, what, condition, timeout):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    records = elastic_job.read_traces(str(work / "trace"))
    if condition(records):
      return records
    if proc.poll() is not None:
      raise AssertionError(f"job ended ({proc.returncode}) before {what}:\n{_log(work)}")
    time.sleep(0.1)
  raise AssertionError(f"no {what} within {timeout}s:\n{_log(work)}")


def _steps_at(records, size):
  return [r for r in records if r["event"] == "step" and r["rank"] == 0 and r["size"] == size]


def _finish(proc, work):
  try:
    code = proc.wait(timeout=JOB_TIMEOUT)
  except subprocess.TimeoutExpired:
    raise AssertionError(f"job still running after {JOB_TIMEOUT}s:\n{_log(work)}")
  assert code == 0, _log(work)
  return elastic_job.read_traces(str(work / "trace"))


def _weights(out):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out)))
  names = sorted(n for n in reader.get_variable_to_shape_map()
                 if n.startswith("model/") and "OPTIMIZER_SLOT" not in n)
  return {n: reader.get_tensor(n) for n in names}


def _pause(records, after):
  """Rank 0's longest stop at the first reset after time ``after``: from its last step before
  the reset to its first step after it (for a lost rank this includes noticing the loss)."""
  reset = min(r["t"] for r in records if r["event"] == "reset" and r["t"] > after)
  times = [r["t"] for r in records if r["event"] == "step" and r["rank"] == 0]
  return min(t for t in times if t > reset) - max(t for t in times if t < reset)


def _kill_tree(procs):
  """horovodrun, its shells and ranks (they may be in process groups of their own)."""
  for p in procs:
    if p.poll() is None:
      for child in psutil.Process(p.pid).children(recursive=True):
        _kill(child.pid)
      p.kill()
      p.wait(timeout=30)


def _kill(pid):
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass


def _check_examples(reference, got):
  """Every step read the examples of the uninterrupted run's step; returns the id counts."""
  assert sorted(got) == sorted(reference) == list(range(1, STEPS + 1))
  sizes = [len(got[s]) for s in sorted(got)]
  assert 1 in sizes and sizes[0] == sizes[-1] == 2, sizes
  for step in reference:  # the same examples at every step
    ids = sorted(i for r in got[step].values() for i in r["ids"])
    assert ids == sorted(i for r in reference[step].values() for i in r["ids"]), step
  # Example ids (hashes of input_ids) over the run: the uninterrupted run's multiset. The
  # reader repeats and shuffles across epoch ends (google's), so "the epoch" is the stream.
  seen = collections.Counter(i for s in got for r in got[s].values() for i in r["ids"])
  assert seen == collections.Counter(i for s in reference for r in reference[s].values()
                                     for i in r["ids"])
  assert sum(seen.values()) == STEPS * 8
  return seen


def _check_loss_log(ref_losses, losses):
  """Returns (the steps run twice, max |loss difference|)."""
  # The loss log: every step once, in order, although the steps after the last commit before
  # the kill were rolled back and run again (their records wait for the commit); the loss of
  # every step equals the uninterrupted run's.
  assert [s for s, _ in ref_losses] == list(range(1, STEPS + 1))
  assert [s for s, _ in losses] == list(range(1, STEPS + 1)), losses
  loss_diff = max(abs(a - b) for (_, a), (_, b) in zip(ref_losses, losses))
  assert loss_diff <= 1e-5, loss_diff
  return loss_diff


def _check_rollback(records):
  """The steps run twice (a roll-back after the kill), from the traces: rank 0 stepped them
  before and after the roll-back, which the chief logged once."""
  runs = collections.Counter(r["step"] for r in records
                             if r["event"] == "step" and r["rank"] == 0)
  repeated = sorted(s for s, n in runs.items() if n > 1)
  assert repeated == list(range(repeated[0], repeated[0] + len(repeated))) if repeated else True
  assert not repeated or (repeated[0] % COMMIT == 1 and len(repeated) < COMMIT), repeated
  rollbacks = [r for r in records if r["event"] == "rollback"]
  assert len(rollbacks) <= 1 and (not repeated or rollbacks), rollbacks
  return repeated


@pytest.mark.unit
def test_world_size_that_cannot_share_the_global_batch_is_refused_naming_the_sizes_that_can():
  from bert_tf.training import elastic
  assert elastic.accumulation_for(2, 24, 6) == 3
  with pytest.raises(ValueError, match=r"4 ranks .* world sizes that can: \[1, 2, 3, 6\]"):
    elastic.accumulation_for(4, 24, 6)


@pytest.mark.unit
def test_committed_state_holds_optimizer_slots_counters_and_fp16_loss_scale(tmp_path):
  from bert_tf import precision
  from bert_tf.testing import builders
  from bert_tf.training import elastic
  try:
    # The slots exist from the start (Engine.build_optimizer), before any step: what every
    # rank, a late one too, broadcasts.
    trainer = builders.pretrainer(str(tmp_path), dtype="fp16")
    names = {v.name for v in elastic.committed_variables(trainer)}
  finally:
    precision.set_policy("fp32")
  assert {"current_loss_scale:0", "good_steps:0", "global_step:0"} <= names, names
  slots = [n for n in names if n.endswith("/m:0") or n.endswith("/v:0")]
  assert len(slots) == 2 * len(trainer.model.trainable_variables)


@pytest.mark.unit
def test_loop_calls_end_on_every_commit_step_whatever_iterations_per_loop(tmp_path):
  """The elastic loop commits at loop ends: with --iterations_per_loop=100 the engine must still
  end its loop calls on every multiple of --elastic_commit_steps (4 here) and of
  --save_checkpoints_steps (6), not only at the end of training (10)."""
  import dataclasses
  from bert_tf.testing import kill_harness
  engine = kill_harness.kill_trainer(tmp_path, 10)
  engine.config = dataclasses.replace(engine.config, iterations_per_loop=100,
                                      save_checkpoints_steps=6)
  x = np.ones([kill_harness.BATCH, kill_harness.FEATURES], np.float32)
  data = {"x": x, "y": np.zeros([kill_harness.BATCH], np.float32)}
  iterator = iter(engine.runtime.distribute_dataset(
      lambda context: tf.data.Dataset.from_tensors(data).repeat().batch(1)))
  ends = []
  engine.fit(iterator, engine.restore(), 10, on_loop_end=ends.append, loop_end_every=4)
  assert ends == [4, 6, 8, 10]


@pytest.mark.unit
def test_metrics_records_wait_for_their_commit_and_a_roll_back_drops_them(tmp_path):
  """What the elastic loop does with its writers: steps 1-4 committed, 5-6 rolled back and run
  again, 7 after the writer closed (the end): the file holds every step once, in order."""
  import json
  from bert_tf.training import reporting
  reporting.hold_records()
  try:
    writer = reporting.MetricsWriter(str(tmp_path), True)
    path = tmp_path / "train_metrics.jsonl"
    for step in range(1, 5):
      writer.write(step, {"loss": float(step)})
    assert not path.exists() or path.read_text() == ""  # not final yet
    assert reporting.commit_records() == 4
    for step in (5, 6):
      writer.write(step, {"loss": -1.0})
    writer.close()  # fit's finally, on the way out of a lost rank's error
    assert reporting.discard_records() == 2
    writer = reporting.MetricsWriter(str(tmp_path), True)
    for step in (5, 6, 7):
      writer.write(step, {"loss": float(step)})
    writer.close()
  finally:
    reporting.commit_records()
    reporting.hold_records(False)
  records = [json.loads(line) for line in path.read_text().splitlines()]
  assert [(r["step"], r["loss"]) for r in records] == [(s, float(s)) for s in range(1, 8)]
  assert not reporting._Held.writers  # pylint: disable=protected-access  (all closed)
  # Not holding: written at once, as before.
  writer = reporting.MetricsWriter(str(tmp_path), True, name="plain")
  writer.write(1, {"loss": 1.0})
  assert (tmp_path / "plain_metrics.jsonl").read_text().startswith('{"step": 1')
  writer.close()


@pytest.mark.distributed
@pytest.mark.timeout(480)  # backstop over the per-phase limits; the finally kills every child
def test_elastic_shrink_and_grow_equals_uninterrupted(tmp_path):
  pytest.importorskip("horovod.tensorflow", reason="Horovod not installed")
  began = time.monotonic()
  procs = []
  try:
    proc, ref_work, _ = _start(tmp_path, "reference")
    procs.append(proc)
    reference = elastic_job.final_steps(_finish(proc, ref_work))
    ref_losses = elastic_job.loss_log(ref_work / "out")

    proc, work, hosts = _start(tmp_path, "elastic")
    procs.append(proc)
    records = _wait(proc, work, "step 14 on 2 ranks",
                    lambda rs: len(_steps_at(rs, 2)) >= 14 and
                    any(r["event"] == "step" and r["rank"] == 1 for r in rs), 90)
    victim = [r for r in records if r["event"] == "start" and r["host"] == "127.0.0.1"][-1]
    elastic_job.set_hosts(hosts, elastic_job.HOSTS_ONE)
    _kill(victim["pid"])
    killed = time.time()
    _wait(proc, work, "8 steps on 1 rank", lambda rs: len(_steps_at(rs, 1)) >= 8, 60)
    elastic_job.set_hosts(hosts, elastic_job.HOSTS_TWO)
    offered = time.time()
    _wait(proc, work, "2 ranks again",
          lambda rs: any(r["t"] > offered for r in _steps_at(rs, 2)), 90)
    records = _finish(proc, work)
    losses = elastic_job.loss_log(work / "out")
  finally:
    _kill_tree(procs)

  got = elastic_job.final_steps(records)
  seen = _check_examples(reference, got)
  loss_diff = _check_loss_log(ref_losses, losses)
  repeated = _check_rollback(records)
  # --eval_every_steps under --elastic: the same evaluations as the uninterrupted run.
  evals = [read_metrics(w / "out" / "eval_metrics.jsonl") for w in (ref_work, work)]
  assert [r["step"] for r in evals[1]] == [r["step"] for r in evals[0]] == [EVAL, 2 * EVAL]
  eval_diff = max(abs(a[k] - b[k]) for a, b in zip(*evals) for k in ("loss", "masked_lm_loss"))
  assert eval_diff <= 1e-4, evals
  ref_w, got_w = _weights(ref_work / "out"), _weights(work / "out")
  diff = max(float(np.max(np.abs(ref_w[n] - got_w[n]))) for n in ref_w)
  print(f"elastic: shrink pause {_pause(records, killed):.1f}s, grow pause "
        f"{_pause(records, offered):.1f}s, steps re-run after "
        f"the roll-back {repeated} (the roll-back logged once), {len(seen)} distinct example "
        f"ids, max "
        f"loss diff {loss_diff:.1e}, max eval loss diff {eval_diff:.1e}, final max |weight "
        f"diff| {diff:.2e}, "
        f"test {time.monotonic() - began:.0f}s")
  assert diff <= TOLERANCE
