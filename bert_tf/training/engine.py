"""The one training engine: model, optimizer and checkpoints built once, then the outer loop.

Reading order: ``Task`` (what a task supplies), ``Engine.__init__`` (precision, seed, model
and step counters inside the strategy scope), ``restore`` (resume or initial weights),
``compiled_train_loop`` (K steps per ``tf.function`` call; the one XLA rule), ``fit`` (the
loop: run, log, check health, save, evaluate on schedule, honour termination, watchdog).

The engine knows nothing of BERT heads: a task (``pretraining.PretrainingTask``,
``classification.ClassificationTask``) builds the model and defines the loss, its global
normalisers and the metrics. The engine does not branch on the backend either: the
``distribution.Runtime`` hides one device, Mirrored, MultiWorkerMirrored and Horovod.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Protocol

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from bert_tf import checkpoint_checks, optimization, precision
from bert_tf.checkpoints import CheckpointMismatchError
from bert_tf.configs import BertConfig, OptimizerConfig, RunConfig
from bert_tf.distribution import Runtime
from bert_tf.fault_tolerance import CheckpointWriter, StallWatchdog, TerminationGuard
from bert_tf.training import step as step_lib
from bert_tf.training.reporting import MetricsWriter, Throughput, input_counts


class TrainingDivergedError(RuntimeError):
  """Loss stayed non-finite; the last good checkpoint is left as it was."""


class Task(Protocol):
  """What a task supplies to the engine (all tensors float32 unless said otherwise)."""

  num_metrics: int  # length of the step's metric vector

  def build_model(self, bert_config: BertConfig, config: RunConfig) -> tf_keras.Model:
    """The model, built inside the strategy scope."""

  def init_from(self, path: str, model: tf_keras.Model) -> str:
    """Initial weights from a checkpoint of any kind the task accepts; returns its kind."""

  def normalisers(self, batch: dict, all_reduce_sum: Callable) -> tuple:
    """Global loss normalisers of the step, known before any forward pass."""

  def micro_batch_loss(self, model, batch: dict, k, normalisers, seed) -> tuple:
    """(loss of micro-batch k already divided by the global normalisers, sums vector)."""

  def step_metrics(self, sums, normalisers, grad_norm, skipped) -> tf.Tensor:
    """The step's metric vector (entry 0: the loss), all-reduced: equal on every replica."""

  def log_values(self, totals: np.ndarray, num_steps: int,
                 step: int) -> tuple[dict, float, float]:
    """Summed metric vectors of a loop call ending at ``step`` -> (log metrics, examples,
    tokens)."""


class Engine:
  """Builds a task's model once inside the strategy scope, then restores and trains it.

  Args:
    task: a ``Task``.
    bert_config: the encoder's config.
    config: a ``RunConfig`` (or a task's subclass of it).
    runtime: ``distribution.Runtime``.
  """

  def __init__(self, task: Task, bert_config: BertConfig, config: RunConfig, runtime: Runtime):
    self.task, self.bert_config, self.config, self.runtime = task, bert_config, config, runtime
    self.strategy = runtime.strategy
    precision.set_policy(config.dtype)
    # Same seed, same initial weights: seeds Python, NumPy and TensorFlow's global generators.
    tf_keras.utils.set_random_seed(config.seed)
    self.loss_scaling = config.dtype == "fp16"
    with self.strategy.scope():
      self.model = task.build_model(bert_config, config)
      self.state = step_lib.TrainState()
    self.global_step = self.state.global_step
    self.skipped_steps = self.state.skipped_steps
    self.consecutive_skips = self.state.consecutive_skips
    self.optimizer, self.optimizer_config = None, None
    self._loop, self._restored = None, False
    self.dropout_seed_fn = step_lib.dropout_seed  # elastic training keys it on the global batch
    self.checkpoints, self.termination = None, None

  # --- state -------------------------------------------------------------------------------

  def build_optimizer(self, optimizer_config: OptimizerConfig) -> None:
    """The optimizer (fp16: in a LossScaleOptimizer) and the training checkpoint; once."""
    if self.optimizer is not None:
      raise RuntimeError("the optimizer is built once per trainer; make a new trainer")
    cfg = self.config
    self.optimizer_config = optimizer_config
    with self.strategy.scope():
      self.optimizer = precision.wrap_optimizer(
          optimization.create_optimizer(optimizer_config), cfg.dtype,
          initial_scale=cfg.initial_loss_scale)
      # Slots now, not in the first step: a tf.function whose first call creates variables is
      # traced twice (once creating them, once without), doubling the first step's start-up.
      # Also gives every rank the same variables before any broadcast (elastic, Horovod).
      self.inner_optimizer._create_all_weights(  # pylint: disable=protected-access
          self.model.trainable_variables)
    self.checkpoints = CheckpointWriter(self.runtime, self.checkpoint_manager(), cfg.output_dir)
    # One guard per trainer: under MultiWorkerMirrored it holds TensorFlow's handler.
    self.termination = TerminationGuard(self.checkpoints, self.current_step)

  def checkpoint_manager(self) -> tf.train.CheckpointManager:
    """Model, step counters and (once built) optimizer, in ``output_dir``."""
    objects = dict(model=self.model, **self.state.checkpoint_objects())
    if self.optimizer is not None:
      objects["optimizer"] = self.optimizer
    return tf.train.CheckpointManager(
        tf.train.Checkpoint(**objects), self.config.output_dir,
        max_to_keep=self.config.keep_checkpoint_max, checkpoint_name="ckpt",
        step_counter=self.global_step)

  @property
  def inner_optimizer(self):
    return self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer

  def current_step(self) -> int:
    return int(self.global_step.numpy())

  def learning_rate(self) -> float:
    opt = self.inner_optimizer
    return float(opt.learning_rate(opt.iterations))

  def loss_scale(self) -> float:
    return float(self.optimizer.loss_scale) if self.loss_scaling else 1.0

  def restore(self, init_checkpoint: Optional[str] = None) -> int:
    """Resumes from the latest checkpoint in output_dir (weights, counters and, once built,
    optimizer slots and loss scale); otherwise, the first time, loads ``init_checkpoint``
    weights through the task. Broadcasts the state (Horovod). Returns the step."""
    # The training manager once the optimizer exists; a weights-only one for eval / predict.
    manager = self.checkpoints.manager if self.checkpoints else self.checkpoint_manager()

    def restore_one(prefix):
      # Both ways (every model weight of the file used, shapes named with both configs).
      status = checkpoint_checks.read_all_used(manager.checkpoint, prefix, self.model,
                                               within=("model/",), restore=True)
      if self.optimizer is None:  # evaluation or prediction only: no optimizer slots wanted
        status.expect_partial()
        return
      try:
        status.assert_existing_objects_matched()
      except AssertionError as e:
        raise CheckpointMismatchError(f"{prefix}: does not hold all of this run's state: "
                                      f"{str(e)[:2000]}") from None

    # The newest checkpoint that reads correctly (damaged ones named, and moved aside by the
    # chief); never from scratch over checkpoints that exist.
    latest = checkpoint_checks.restore_newest_readable(manager, restore_one,
                                                       move_damaged=self.runtime.is_chief)
    if latest:
      logging.info("restored %s (step %d)", latest, self.current_step())
    elif init_checkpoint and not self._restored:
      kind = self.task.init_from(init_checkpoint, self.model)
      logging.info("initialised weights from %s (%s checkpoint)", init_checkpoint, kind)
    self._restored = True
    variables = self.model.variables + (self.optimizer.variables() if self.optimizer else [])
    self.runtime.broadcast_initial_state(variables)
    return self.current_step()

  # --- the compiled loop -------------------------------------------------------------------

  def compiled_train_loop(self) -> Callable:
    """``(iterator, num_steps tensor) -> float32 sums`` of the task's step metrics over
    ``num_steps`` steps, in one ``tf.function`` call (built once per trainer)."""
    if self._loop is None:
      self._loop = self.build_train_loop()
    return self._loop

  def build_train_loop(self) -> Callable:
    """The loop ``compiled_train_loop`` caches: the data-parallel step under the strategy.
    Engine variants with another step (the pipeline) override this, not the outer loop."""
    cfg = self.config
    replica_step = step_lib.make_replica_step(
        self.task, self.model, self.optimizer, self.runtime, self.state, seed=cfg.seed,
        k_steps=cfg.gradient_accumulation_steps, clip_norm=self.optimizer_config.clip_norm,
        loss_scaling=self.loss_scaling, seed_fn=self.dropout_seed_fn)
    if cfg.use_xla:
      # The one XLA rule, for every task: compile the step, not the loop. The loop reads the
      # input iterator, which XLA cannot compile.
      replica_step = tf.function(replica_step, jit_compile=True)
    strategy = self.strategy

    def loop(iterator, num_steps):
      totals = tf.zeros([self.task.num_metrics])
      for _ in tf.range(num_steps):
        values = strategy.run(replica_step, args=(next(iterator),))
        # All-reduced inside the step: every replica holds the same values.
        totals += strategy.experimental_local_results(values)[0]
      return totals

    return tf.function(loop)

  # --- the outer loop ----------------------------------------------------------------------

  def fit(self, iterator, start: int, target: int, *, evaluate: Optional[Callable] = None,
          eval_every_steps: int = 0, on_loop_end: Optional[Callable] = None,
          loop_end_every: int = 0) -> dict:
    """Runs steps ``start`` -> ``target`` from ``iterator`` (a distributed iterator of
    [K, micro_batch, ...] batches). Logs every loop call, saves every
    ``save_checkpoints_steps`` and at the end, calls ``evaluate()`` every
    ``eval_every_steps``, stops cleanly on an announced termination, then calls
    ``on_loop_end(step)`` (elastic commits). Loop calls end on multiples of
    ``save_checkpoints_steps`` and, if given, of ``loop_end_every`` (so elastic commits fall
    exactly every ``--elastic_commit_steps``). Returns the last logged metrics."""
    cfg = self.config
    train_loop = self.compiled_train_loop()
    writer = MetricsWriter(cfg.output_dir, self.runtime.is_chief)
    watchdog = StallWatchdog(cfg.stall_timeout_secs)
    throughput = Throughput()
    step, metrics = start, {}
    with self.termination.watching(target) as guard:
      try:
        while step < target:
          # Loop boundaries fall on checkpoint steps (and on loop_end_every steps), so saves
          # (and elastic commits) happen exactly every N steps.
          n = min(cfg.iterations_per_loop, target - step,
                  *(every - step % every
                    for every in (cfg.save_checkpoints_steps, loop_end_every) if every))
          began = time.perf_counter()
          totals = train_loop(iterator, tf.constant(n)).numpy()
          elapsed = time.perf_counter() - began
          watchdog.ping()
          step = self.current_step()
          metrics, examples, tokens = self.task.log_values(totals, n, step)
          metrics.update(learning_rate=self.learning_rate(), loss_scale=self.loss_scale(),
                         skipped_steps=int(self.skipped_steps.numpy()))
          # Inputs skipped and counted (--skip_* flags), summed over the workers.
          metrics.update(input_counts(self.runtime.sum_over_workers))
          metrics.update(throughput.update(n, examples, tokens, elapsed, target - step))
          writer.write(step, metrics)
          self._check_health(metrics)
          if step % cfg.save_checkpoints_steps == 0 or step >= target:
            self.checkpoints.save(step)
          if evaluate is not None and eval_every_steps and step % eval_every_steps == 0:
            evaluate()
            watchdog.ping()
          guard.check()
          if on_loop_end is not None:
            on_loop_end(step)
      finally:
        watchdog.stop()
        writer.close()
    return metrics

  def _check_health(self, metrics: dict) -> None:
    cfg = self.config
    consecutive = int(self.consecutive_skips.numpy())
    last = self.checkpoints.manager.latest_checkpoint or "none yet"
    if consecutive >= cfg.max_consecutive_skips:
      raise TrainingDivergedError(
          f"{consecutive} consecutive steps had a non-finite loss or gradient "
          f"(--max_consecutive_skips={cfg.max_consecutive_skips}); stopping. The last good "
          f"checkpoint is kept: {last}")
    if self.loss_scaling and metrics["loss_scale"] < cfg.min_loss_scale:
      raise TrainingDivergedError(
          f"dynamic loss scale fell to {metrics['loss_scale']:g}, below --min_loss_scale="
          f"{cfg.min_loss_scale:g}: fp16 gradients keep overflowing; stopping. The last good "
          f"checkpoint is kept: {last}")
    if not self.loss_scaling and not np.isfinite(metrics["loss"]):
      raise TrainingDivergedError(
          f"non-finite loss {metrics['loss']} (dtype {cfg.dtype}); stopping. The last good "
          f"checkpoint is kept: {last}")

  def describe(self, what: str, start: int, target: int, batch: str) -> None:
    cfg = self.config
    logging.info("%s %s: steps %d -> %d, %s, %s, recompute=%s", what, self.runtime.description,
                 start, target, batch, cfg.dtype, cfg.recompute)
