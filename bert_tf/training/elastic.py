"""Elastic data parallelism on Horovod (``--elastic``): training continues when ranks are lost
and takes new ranks back, inside ``horovod.common.elastic.run_fn``.

Committed state (host memory, every ``--elastic_commit_steps`` and at the start): every model
variable, every optimizer variable (slots, iterations, loss scale), the step counters and the
``--skip_*`` input counts (rank 0's, so a new rank reports the job's). The data position and
the dropout seeds are functions of the global step, so they roll back with it. A lost rank
makes the others restore the last commit, re-form the ring with the ranks left and carry on;
a new host is taken in at the next commit (state broadcast from rank 0).

What stays fixed when the world size N changes: ``--train_batch_size`` G (the global batch) and
the micro-batch ``m = G / --gradient_accumulation_steps`` (K0). Each rank accumulates
``K = K0 / N`` micro-batches, so N must divide K0. Step s reads global micro-batches
``[s*K0, (s+1)*K0)`` of one deterministic stream (the whole input, shuffled by --seed); rank r
takes micro-batches ``[r*K, (r+1)*K)`` of them: no example of the epoch is repeated or skipped
whatever N is. A micro-batch's dropout seed depends on (step, its index in the global batch),
not on the rank, so a run that shrank and grew equals an uninterrupted one to rounding.

Metrics: a step's record reaches ``train_metrics.jsonl`` / TensorBoard at the commit that makes
it final (the console line at once), so a roll-back, logged once by the chief, leaves every
step once in the files. ``--eval_every_steps`` evaluates on every rank (whole held-out set, no
collective); the chief writes the results.

First version: every rank reads the whole stream and keeps its slice (N x the input I/O).
Set ``BERT_TF_ELASTIC_TRACE=<dir>`` to log, per process, the example hashes each rank reads
for each step, with the world size and wall time (the tests count example ids with it); the
step-by-step loss is the chief's ``train_metrics.jsonl`` (with --iterations_per_loop=1).
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import zlib

from absl import logging
import tensorflow as tf

from bert_tf.fault_tolerance import CheckpointWriter, TerminationGuard
from bert_tf.training import reporting
from bert_tf.training import step as step_lib

TRACE_ENV = "BERT_TF_ELASTIC_TRACE"
PACE_ENV = "BERT_TF_ELASTIC_MIN_STEP_SECS"  # tests: a floor on step time, to act mid-run


def valid_sizes(accumulation: int) -> list[int]:
  return [n for n in range(1, accumulation + 1) if accumulation % n == 0]


def accumulation_for(size: int, train_batch_size: int, accumulation: int) -> int:
  """Micro-batches per rank at world size ``size``; refuses a size that cannot divide them."""
  if accumulation % size:
    raise ValueError(
        f"elastic: {size} ranks cannot share --train_batch_size={train_batch_size} in "
        f"--gradient_accumulation_steps={accumulation} micro-batches of "
        f"{train_batch_size // accumulation}; world sizes that can: "
        f"{valid_sizes(accumulation)} (set --max-np / the discovery script accordingly)")
  return accumulation // size


def as_one_rank(runtime):
  """The runtime the trainer is built with: one rank, so it checks --train_batch_size against
  --gradient_accumulation_steps alone and its micro-batch is G / K0 (the elastic loop splits
  the K0 micro-batches over the ranks of the moment)."""
  return dataclasses.replace(runtime, num_replicas=1)


def _seed_fn(total_micro_batches: int):
  """Dropout seed of a micro-batch from (step, its index in the global batch): rank-free."""

  def seed_fn(seed, step, k_steps, k, replica_id):
    index = tf.cast(replica_id, tf.int64) * k_steps + tf.cast(k, tf.int64)
    return step_lib.dropout_seed(seed, step, total_micro_batches, index, 0)

  return seed_fn


def _make_state(variables, step_variable, on_restore=None):
  """A Horovod elastic ``State`` holding ``variables`` in host memory (lazy Horovod import).
  A commit also writes the metrics records held since the last one (their steps are final);
  a restore drops them (those steps run again) and calls ``on_restore(from_step, to_step)``."""
  import horovod.tensorflow as hvd
  from horovod.common.elastic import State

  class VariablesState(State):

    def __init__(self):
      super().__init__(bcast_object=hvd.broadcast_object, get_rank=hvd.rank)
      self.commits = 0
      self.save()

    def save(self):
      self.values = [v.numpy() for v in variables]
      self.counts = reporting.input_counts_state()  # --skip_* counts at the committed step
      self.commits += 1
      reporting.commit_records()

    def restore(self):
      before = int(step_variable.numpy())
      for var, value in zip(variables, self.values):
        var.assign(value)
      reporting.set_input_counts(self.counts)
      dropped = reporting.discard_records()
      if on_restore is not None:
        on_restore(before, int(step_variable.numpy()), dropped)

    def sync(self):
      hvd.broadcast_variables(variables, root_rank=0)
      reporting.set_input_counts(hvd.broadcast_object(reporting.input_counts_state(), 0))
      self.save()

  return VariablesState()


class _Trace:
  """Per-process JSON lines when ``BERT_TF_ELASTIC_TRACE`` names a directory: the examples
  (hashes of their input_ids) each rank reads for each step, as the step reads them."""

  def __init__(self):
    directory = os.environ.get(TRACE_ENV)
    self.pace, self.last = float(os.environ.get(PACE_ENV, 0)), time.monotonic()
    self.file = None
    if directory:
      os.makedirs(directory, exist_ok=True)
      self.file = open(os.path.join(directory, f"trace-{os.getpid()}.jsonl"), "a")
      self.write(event="start", pid=os.getpid(),
                 host=os.environ.get("HOROVOD_HOSTNAME", socket.gethostname()))

  def write(self, **record):
    if self.file:
      self.file.write(json.dumps(dict(record, t=time.time())) + "\n")
      self.file.flush()

  def attach(self, dataset, start, rank, size):
    """``dataset`` with each element logged when the train loop reads it (no read-ahead)."""
    if not (self.file or self.pace):
      return dataset.prefetch(2)

    def log(index, input_ids):
      if self.pace:
        time.sleep(max(0.0, self.last + self.pace - time.monotonic()))
        self.last = time.monotonic()
      ids = [zlib.crc32(row.tobytes()) for row in
             input_ids.numpy().reshape([-1, input_ids.shape[-1]])]
      self.write(event="step", step=start + int(index) + 1, rank=rank, size=size, ids=ids)
      return index

    def element(index, batch):
      done = tf.py_function(log, [index, batch["input_ids"]], tf.int64)
      with tf.control_dependencies([done]):
        return {name: tf.identity(x) for name, x in batch.items()}

    return dataset.enumerate().map(element)


class ElasticTrainer:
  """Runs a ``Pretrainer``'s ``fit`` under Horovod elastic, re-derived at every reset."""

  def __init__(self, trainer, commit_steps: int):
    import horovod.tensorflow as hvd
    self.hvd, self.trainer, self.commit_steps = hvd, trainer, commit_steps
    self.config = trainer.config
    self.accumulation = self.config.gradient_accumulation_steps
    self.micro_batch = self.config.train_batch_size // self.accumulation
    self.trace = _Trace()
    self._loops = {}  # (size, rank) -> compiled train loop
    self.rollback = None  # (from step, to step, records dropped) until the next run logs it

  def on_restore(self, before: int, after: int, dropped: int) -> None:
    self.rollback = (before, after, dropped)

  def _runtime(self):
    hvd, base = self.hvd, self.trainer.runtime
    size, rank = hvd.size(), hvd.rank()
    return dataclasses.replace(
        base, num_replicas=size, is_chief=rank == 0, input_shard=(size, rank),
        replica_index=lambda: tf.constant(rank, tf.int32), worker_index=rank,
        broadcast_initial_state=lambda variables: None,
        description=f"horovod elastic: rank {rank} of {size}")

  def _dataset(self, start, rank, size, k):
    t = self.trainer
    context = tf.distribute.InputContext(1, 0, 1)  # one stream, sliced by position below
    ds = t.train_dataset_fn(context, self.micro_batch).batch(self.accumulation,
                                                             drop_remainder=True)
    ds = ds.skip(start).map(lambda batch: {name: x[rank * k:(rank + 1) * k]
                                           for name, x in batch.items()})
    return self.trace.attach(ds, start, rank, size)

  def _configure(self, runtime, k):
    """The trainer for this world size: runtime, accumulation, loop, checkpoint writer."""
    t = self.trainer
    t.runtime = runtime
    t.config = dataclasses.replace(self.config, gradient_accumulation_steps=k)
    t.dropout_seed_fn = _seed_fn(self.accumulation)
    # pylint: disable=protected-access
    t._loop = self._loops.get((runtime.num_replicas, runtime.worker_index))
    t.checkpoints = CheckpointWriter(runtime, t.checkpoints.manager, self.config.output_dir)
    t.termination = TerminationGuard(t.checkpoints, t.current_step)

  def run(self, state, target: int):
    """The body run (and re-run after every reset) by Horovod's elastic loop."""
    t = self.trainer
    runtime = self._runtime()
    size, rank = runtime.num_replicas, runtime.worker_index
    k = accumulation_for(size, self.config.train_batch_size, self.accumulation)
    self._configure(runtime, k)
    start = t.current_step()
    t.describe("elastic training", start, target,
               f"global batch {self.config.train_batch_size} = {size} rank(s) x {k} "
               f"micro-batches of {self.micro_batch}")
    self.trace.write(event="begin", step=start, rank=rank, size=size)
    if self.rollback is not None:
      before, after, dropped = self.rollback
      self.rollback = None
      if runtime.is_chief and before > after:  # once per roll-back, by the new world's chief
        logging.warning(
            "elastic: a rank was lost; rolled back from step %d to the commit at step %d, now "
            "on %d rank(s): steps %d-%d run again (logged on the console before; their %d "
            "metrics record(s) were never written, so the metrics files hold each step once)",
            before, after, size, after + 1, before, dropped)
        self.trace.write(event="rollback", step=after, rolled_back_from=before, size=size)
    committed = [start // self.commit_steps]

    def commit(step):
      if step < target and step // self.commit_steps > committed[0]:
        committed[0] = step // self.commit_steps
        state.commit()  # raises HostsUpdatedInterrupt when hosts were added or removed

    iterator = iter(self._dataset(start, rank, size, k))
    # Evaluation reads the whole held-out set on every rank, with no collective (as under
    # Horovod without --elastic): a rank lost meanwhile cannot hang it; the chief writes.
    evaluate = t.evaluate if getattr(t, "eval_dataset_fn", None) is not None else None
    try:
      t.fit(iterator, start, target, on_loop_end=commit, loop_end_every=self.commit_steps,
            evaluate=evaluate, eval_every_steps=self.config.eval_every_steps)
    except tf.errors.OpError as e:  # a peer died inside a collective
      if isinstance(e, tf.errors.OutOfRangeError) or "Horovod" not in str(e):
        raise
      from horovod.common.exceptions import HorovodInternalError
      raise HorovodInternalError(e) from e
    finally:
      self._loops[(size, rank)] = t._loop  # pylint: disable=protected-access
    return t.current_step()


def committed_variables(trainer) -> list:
  """Model, optimizer (slots, iterations), step counters and, for fp16, the loss scale and
  its good-steps counter (not in ``optimizer.variables()``)."""
  variables = (trainer.model.variables + list(trainer.optimizer.variables())
               + list(trainer.state.checkpoint_objects().values()))
  if trainer.loss_scaling:
    scale = trainer.optimizer._loss_scale  # pylint: disable=protected-access
    variables += [scale._current_loss_scale, scale._counter]  # pylint: disable=protected-access
  return variables


def train(trainer, commit_steps: int, init_checkpoint=None) -> int:
  """Elastic training of a ``Pretrainer`` to ``num_train_steps``; returns the final step."""
  from horovod.common import elastic as hvd_elastic
  import horovod.tensorflow as hvd
  cfg = trainer.config
  accumulation_for(hvd.size(), cfg.train_batch_size, cfg.gradient_accumulation_steps)
  elastic = ElasticTrainer(trainer, commit_steps)
  # No collective outside the elastic loop (a late rank would deadlock the others): the
  # restore reads files only, the state's sync broadcasts.
  trainer.runtime = elastic._runtime()  # pylint: disable=protected-access
  # Metrics records wait for the commit of their step (a roll-back drops them); every rank
  # reads the whole stream, so its --skip_* counts are the job's (not summed over ranks).
  reporting.hold_records()
  reporting.every_worker_reads_all_input()
  # The optimizer's slots exist already (Engine.build_optimizer): every rank, a late one
  # too, holds the same variables to broadcast.
  trainer.restore(init_checkpoint)
  state = _make_state(committed_variables(trainer), trainer.global_step, elastic.on_restore)

  def reset():
    began = time.time()
    hvd.shutdown()
    hvd.init()
    logging.info("elastic: reset to %d rank(s) in %.2f s", hvd.size(), time.time() - began)
    elastic.trace.write(event="reset", size=hvd.size(), rank=hvd.rank())

  try:
    step = hvd_elastic.run_fn(elastic.run, reset)(state, cfg.num_train_steps)
  finally:  # the end, or an error no roll-back handles: the steps run so far are final
    reporting.commit_records()
    reporting.hold_records(False)
    reporting.every_worker_reads_all_input(False)
  if step >= cfg.num_train_steps:
    trainer.export_encoder()
  return step
