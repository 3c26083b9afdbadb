"""The pretraining loop: one train step for every backend, precision and accumulation setting.

Reading order: ``TrainConfig`` (what a run is), ``Pretrainer.__init__`` (model, optimizer and
checkpoint built once inside the strategy scope), ``_replica_step`` (one optimizer step on one
replica, with K micro-batches), ``train`` (the outer loop: resume, run, log, save).

Normalisation is global, so a step is the same computation on one device, on N replicas and
with K accumulation micro-batches: the masked-LM loss is divided by the masked-token weight of
the whole global batch and the NSP loss by the global number of examples; replica gradients
are summed (all-reduce), unscaled, then clipped by global norm. Hence "2 replicas = 1 device
on the same global batch" and "K x B accumulated = one batch of K*B" hold to rounding.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from bert_tf import checkpoints, optimization, precision
from bert_tf.configs import BertConfig, TrainConfig, save_resolved_config  # noqa: F401
from bert_tf.distribution import Runtime
from bert_tf.fault_tolerance import CheckpointWriter, StallWatchdog, TerminationGuard
from bert_tf.modeling import BertEncoder, BertPretrainer, pretraining_losses

FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels")


class TrainingDivergedError(RuntimeError):
  """Loss stayed non-finite; the last good checkpoint is left as it was."""


class MetricsWriter:
  """One record per log line: console (absl), TensorBoard and ``metrics.jsonl``."""

  def __init__(self, output_dir: str, enabled: bool, name: str = "train"):
    self.enabled = enabled
    if enabled:
      tf.io.gfile.makedirs(output_dir)
      self._jsonl = tf.io.gfile.GFile(os.path.join(output_dir, f"{name}_metrics.jsonl"), "a")
      self._summary = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard", name))

  def write(self, step: int, values: dict) -> None:
    if not self.enabled:
      return
    text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in values.items())
    logging.info("step %d: %s", step, text)
    self._jsonl.write(json.dumps({"step": step, **values}) + "\n")
    self._jsonl.flush()
    with self._summary.as_default(step=step):
      for key, value in values.items():
        if isinstance(value, (int, float)):
          tf.summary.scalar(key, value)
    self._summary.flush()

  def close(self):
    if self.enabled:
      self._jsonl.close()
      self._summary.close()


def accumulate(micro_step, k_steps: int):
  """Sums ``micro_step(k) -> (grads, sums)`` over k in [0, K) inside the replica function."""
  grads, sums = micro_step(0)
  if k_steps > 1:
    # tf.range keeps one copy of the micro-step in the graph whatever K is.
    for k in tf.range(1, k_steps):
      more_grads, more_sums = micro_step(k)
      grads = [a + b for a, b in zip(grads, more_grads)]
      sums += more_sums
  return grads, sums


def reduce_and_apply(runtime, optimizer, loss_scaling: bool, clip_norm: float, grads, sums,
                     variables):
  """The end of every train step: all-reduce, unscale (fp16), clip, apply.

  Returns the reduced ``sums``, the global gradient norm and whether the step was finite.
  """
  grads, sums = runtime.all_reduce_sum((grads, sums))
  if loss_scaling:
    grads = optimizer.get_unscaled_gradients(grads)
  if clip_norm > 0:
    grads, grad_norm = tf.clip_by_global_norm(grads, clip_norm)
  else:
    grad_norm = tf.linalg.global_norm(grads)
  finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(sums[0])
  # fp16: LossScaleOptimizer skips a non-finite step (weights and slots untouched) and halves
  # the scale; every replica sees the same all-reduced gradients, so all skip.
  # After every gradient: the update's gradient-free parts (beta1 * m, beta2 * v, the weight
  # decay term, for every variable) would otherwise run as soon as the step starts and stay
  # alive through the forward and backward passes, 3x the parameters' size on top of the
  # activations (BERT-Base: 1.2 GiB).
  with tf.control_dependencies([grad_norm]):
    optimizer.apply_gradients(zip(grads, variables), experimental_aggregate_gradients=False)
  return sums, grad_norm, finite


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


class Pretrainer:
  """Builds the model, optimizer and checkpoint once, then trains and evaluates.

  Args:
    bert_config: the encoder's config.
    config: the run's ``TrainConfig``.
    optimizer_config: ``optimization.OptimizerConfig``.
    runtime: ``distribution.Runtime``.
    train_dataset_fn: ``(input_context, micro_batch_size) -> tf.data.Dataset`` of dicts with
      google's feature names, batched to ``micro_batch_size``, repeating, deterministic for a
      given seed (resume skips the consumed batches).
    eval_dataset_fn: same signature, finite, for ``evaluate``.
  """

  def __init__(self, bert_config: BertConfig, config: TrainConfig,
               optimizer_config: optimization.OptimizerConfig, runtime: Runtime,
               train_dataset_fn: Optional[Callable] = None,
               eval_dataset_fn: Optional[Callable] = None):
    config.check_divisible(runtime.num_replicas)
    self.bert_config = bert_config
    self.config = config
    self.runtime = runtime
    self.train_dataset_fn = train_dataset_fn
    self.eval_dataset_fn = eval_dataset_fn
    self.strategy = runtime.strategy
    self.micro_batch = config.micro_batch_size(runtime.num_replicas)
    precision.set_policy(config.dtype)
    # Same seed, same initial weights: seeds Python, NumPy and TensorFlow's global generators.
    tf_keras.utils.set_random_seed(config.seed)
    self.loss_scaling = config.dtype == "fp16"
    with self.strategy.scope():
      self.model = BertPretrainer(BertEncoder(bert_config, recompute=config.recompute,
                                              seed=config.seed))
      self.optimizer = precision.wrap_optimizer(
          optimization.create_optimizer(optimizer_config), config.dtype,
          initial_scale=config.initial_loss_scale)
      counter = lambda name: tf.Variable(
          0, dtype=tf.int64, trainable=False, name=name,
          synchronization=tf.VariableSynchronization.ON_WRITE,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.global_step = counter("global_step")
      self.skipped_steps = counter("skipped_steps")
      self.consecutive_skips = counter("consecutive_skips")
    self.optimizer_config = optimizer_config
    self.checkpoint = tf.train.Checkpoint(
        model=self.model, optimizer=self.optimizer, global_step=self.global_step,
        skipped_steps=self.skipped_steps, consecutive_skips=self.consecutive_skips)
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, config.output_dir, max_to_keep=config.keep_checkpoint_max,
        checkpoint_name="ckpt", step_counter=self.global_step)
    self._train_loop = None
    self.checkpoints = CheckpointWriter(runtime, self.manager, config.output_dir)
    self.termination = TerminationGuard(self.checkpoints, lambda: int(self.global_step.numpy()))

  # --- state -------------------------------------------------------------------------------

  @property
  def inner_optimizer(self):
    return self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer

  def learning_rate(self) -> float:
    opt = self.inner_optimizer
    return float(opt.learning_rate(opt.iterations))

  def loss_scale(self) -> float:
    return float(self.optimizer.loss_scale) if self.loss_scaling else 1.0

  def restore_or_initialize(self, init_checkpoint: Optional[str] = None) -> int:
    """Resumes from the latest checkpoint in output_dir (everything: weights, slots, loss scale,
    step); otherwise loads ``init_checkpoint`` weights (google TF1 or ours). Returns the step."""
    latest = self.manager.latest_checkpoint
    if latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
      logging.info("resumed from %s at step %d", latest, int(self.global_step.numpy()))
    elif init_checkpoint:
      checkpoints.restore_weights(init_checkpoint, self.model)
      logging.info("initialised weights from %s", init_checkpoint)
    self.runtime.broadcast_initial_state(self.model.variables + self.optimizer.variables())
    return int(self.global_step.numpy())

  # --- one step ----------------------------------------------------------------------------

  def _replica_step(self, batch):
    """One optimizer step on this replica. ``batch``: dict of [K, micro_batch, ...] tensors."""
    cfg = self.config
    k_steps = cfg.gradient_accumulation_steps
    global_examples = float(cfg.train_batch_size)
    variables = self.model.trainable_variables
    replica_id = self.runtime.replica_index()
    # Global normalisers, known before any forward pass: every micro-batch and replica divides
    # by the same numbers, so the summed gradients are those of the global-batch loss.
    mlm_weight_total = self.runtime.all_reduce_sum(
        tf.reduce_sum(tf.cast(batch["masked_lm_weights"], tf.float32))) + 1e-5
    step = self.global_step.read_value()

    def micro_step(k):
      features = {name: batch[name][k] for name in FEATURES}
      seed = tf.stack([tf.constant(cfg.seed, tf.int64), step * k_steps + tf.cast(k, tf.int64)])
      seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
      with tf.GradientTape() as tape:
        out = self.model(features, training=True, dropout_seed=seed)
        losses = pretraining_losses(out["mlm_logits"], out["nsp_logits"],
                                    features["masked_lm_ids"], features["masked_lm_weights"],
                                    features["next_sentence_labels"])
        nsp_sum = losses["next_sentence_loss"] * tf.cast(
            tf.shape(features["input_ids"])[0], tf.float32)
        loss = losses["masked_lm_numerator"] / mlm_weight_total + nsp_sum / global_examples
        scaled = self.optimizer.get_scaled_loss(loss) if self.loss_scaling else loss
      grads = tape.gradient(scaled, variables)
      # Embedding gathers give IndexedSlices; accumulation and all-reduce want dense tensors.
      grads = [tf.convert_to_tensor(g) for g in grads]
      sums = tf.stack([loss, losses["masked_lm_numerator"], nsp_sum])
      return grads, sums

    grads, sums = accumulate(micro_step, k_steps)
    sums, grad_norm, finite = reduce_and_apply(self.runtime, self.optimizer, self.loss_scaling,
                                               self.optimizer_config.clip_norm, grads, sums,
                                               variables)
    skipped = tf.cast(tf.logical_not(finite), tf.int64)
    self.global_step.assign_add(1)
    self.skipped_steps.assign_add(skipped)
    self.consecutive_skips.assign(skipped * (self.consecutive_skips + skipped))
    mlm_loss = sums[1] / mlm_weight_total
    nsp_loss = sums[2] / global_examples
    return tf.stack([sums[0], mlm_loss, nsp_loss, grad_norm, tf.cast(skipped, tf.float32)])

  def _make_train_loop(self):
    strategy = self.strategy
    # XLA compiles the step, not the loop: the loop reads the input iterator, which XLA cannot.
    step = tf.function(self._replica_step, jit_compile=True) if self.config.use_xla else \
        self._replica_step

    def loop(iterator, num_steps):
      totals = tf.zeros([5])
      for _ in tf.range(num_steps):
        metrics = strategy.run(step, args=(next(iterator),))
        # The metrics are all-reduced inside the step: every replica holds the same values.
        totals += strategy.experimental_local_results(metrics)[0]
      return totals / tf.cast(num_steps, tf.float32)

    return tf.function(loop)

  def compiled_train_loop(self):
    """(iterator, num_steps tensor) -> float32 totals; for tools that time the real loop."""
    return self._make_train_loop()

  def distributed_train_dataset(self, start_step: int = 0):
    return self._distributed_train_dataset(start_step)

  # --- data --------------------------------------------------------------------------------

  def _distributed_train_dataset(self, start_step: int):
    k = self.config.gradient_accumulation_steps
    num_pipelines, index = self.runtime.input_shard

    def dataset_fn(context: tf.distribute.InputContext):
      if num_pipelines > 1:  # one process per worker outside tf.distribute (e.g. Horovod)
        context = tf.distribute.InputContext(num_pipelines, index, context.num_replicas_in_sync)
      ds = self.train_dataset_fn(context, self.micro_batch)
      # [K, micro_batch, ...] per step; skipping consumed steps restores the data position.
      ds = ds.batch(k, drop_remainder=True)
      if start_step:
        ds = ds.skip(start_step)
      return ds.prefetch(tf.data.AUTOTUNE)

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  # --- the loop ----------------------------------------------------------------------------

  def train(self, init_checkpoint: Optional[str] = None, stop_after_steps: Optional[int] = None):
    """Trains to ``num_train_steps`` (or ``stop_after_steps`` more steps, for tests of resume).

    Returns the last metrics dict.
    """
    cfg = self.config
    start = self.restore_or_initialize(init_checkpoint)
    target = cfg.num_train_steps if stop_after_steps is None else \
        min(cfg.num_train_steps, start + stop_after_steps)
    if start >= target:
      logging.info("nothing to do: step %d >= %d", start, target)
      return {}
    iterator = iter(self._distributed_train_dataset(start))
    if self._train_loop is None:
      self._train_loop = self._make_train_loop()
    writer = MetricsWriter(cfg.output_dir, self.runtime.is_chief)
    watchdog = StallWatchdog(cfg.stall_timeout_secs)
    examples_per_step = cfg.train_batch_size
    tokens_per_step = cfg.train_batch_size * cfg.max_seq_length
    step, metrics = start, {}
    timed_steps, timed_seconds = 0, 0.0
    warmup_done = False
    logging.info("training %s: steps %d -> %d, global batch %d = %d replica(s) x %d "
                 "micro-batch x %d accumulation, %s, recompute=%s", self.runtime.description,
                 start, target, cfg.train_batch_size, self.runtime.num_replicas,
                 self.micro_batch, cfg.gradient_accumulation_steps, cfg.dtype, cfg.recompute)
    with self.termination.watching(target) as guard:
      try:
        while step < target:
          # Loop boundaries fall on checkpoint steps, so saves happen exactly every N steps.
          n = min(cfg.iterations_per_loop, target - step,
                  cfg.save_checkpoints_steps - step % cfg.save_checkpoints_steps)
          began = time.perf_counter()
          values = self._train_loop(iterator, tf.constant(n)).numpy()
          elapsed = time.perf_counter() - began
          watchdog.ping()
          step = int(self.global_step.numpy())
          if warmup_done:  # the first call includes tracing: excluded from the speed figures
            timed_steps += n
            timed_seconds += elapsed
          warmup_done = True
          rate = timed_steps / timed_seconds if timed_seconds else float("nan")
          metrics = {
              "loss": float(values[0]), "masked_lm_loss": float(values[1]),
              "next_sentence_loss": float(values[2]), "grad_norm": float(values[3]),
              "learning_rate": self.learning_rate(), "loss_scale": self.loss_scale(),
              "skipped_steps": int(self.skipped_steps.numpy()),
              "steps_per_sec": rate, "examples_per_sec": rate * examples_per_step,
              "tokens_per_sec": rate * tokens_per_step,
              "eta": _format_eta((target - step) / rate) if timed_seconds else "n/a"}
          writer.write(step, metrics)
          self._check_health(values, metrics)
          if step % cfg.save_checkpoints_steps == 0 or step >= target:
            self.checkpoints.save(step)
          if (cfg.eval_every_steps and self.eval_dataset_fn is not None
              and step % cfg.eval_every_steps == 0):
            results = self.evaluate()
            logging.info("eval at step %d: masked_lm_accuracy %.4f, next_sentence_accuracy %.4f",
                         step, results["masked_lm_accuracy"], results["next_sentence_accuracy"])
            watchdog.ping()
          guard.check()
      finally:
        watchdog.stop()
        writer.close()
    if step >= cfg.num_train_steps:
      self.export_encoder()
    return metrics

  def _check_health(self, values, metrics):
    cfg = self.config
    consecutive = int(self.consecutive_skips.numpy())
    last = self.manager.latest_checkpoint or "none yet"
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
    if not self.loss_scaling and not np.isfinite(values[0]):
      raise TrainingDivergedError(
          f"non-finite loss {values[0]} (dtype {cfg.dtype}); stopping. The last good checkpoint "
          f"is kept: {last}")

  def export_encoder(self) -> Optional[str]:
    """Writes the encoder alone (TF2 checkpoint + bert_config.json) for fine-tuning."""
    out = os.path.join(self.config.output_dir, "encoder")
    if not self.runtime.is_chief:
      if self.runtime.all_workers_save:  # takes part in the save, as CheckpointWriter does
        scratch = self.checkpoints.scratch_dir
        tf.train.Checkpoint(encoder=self.model.encoder).write(os.path.join(scratch, "encoder"))
        shutil.rmtree(scratch, ignore_errors=True)
      return None
    tf.io.gfile.makedirs(out)
    path = tf.train.Checkpoint(encoder=self.model.encoder).write(os.path.join(out, "encoder"))
    self.bert_config.to_json_file(os.path.join(out, "bert_config.json"))
    logging.info("exported encoder checkpoint %s", path)
    return path

  # --- evaluation --------------------------------------------------------------------------

  def evaluate(self, max_steps: Optional[int] = None) -> dict:
    """google's eval metrics on held-out records; writes ``eval_results.txt`` like google."""
    max_steps = self.config.max_eval_steps if max_steps is None else max_steps
    strategy = self.strategy
    batch_size = self.config.eval_batch_size

    def dataset_fn(context):
      per_replica = context.get_per_replica_batch_size(batch_size)
      return self.eval_dataset_fn(context, per_replica).take(max_steps)

    def replica_eval(features):
      out = self.model(features, training=False)
      losses = pretraining_losses(out["mlm_logits"], out["nsp_logits"], features["masked_lm_ids"],
                                  features["masked_lm_weights"],
                                  features["next_sentence_labels"])
      weights = tf.cast(features["masked_lm_weights"], tf.float32)
      predicted = tf.argmax(out["mlm_logits"], axis=-1, output_type=tf.int32)
      correct = tf.cast(tf.equal(predicted, tf.cast(features["masked_lm_ids"], tf.int32)),
                        tf.float32)
      labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
      nsp_correct = tf.cast(tf.equal(tf.argmax(out["nsp_logits"], -1, output_type=tf.int32),
                                     labels), tf.float32)
      n = tf.cast(tf.shape(labels)[0], tf.float32)
      return tf.stack([tf.reduce_sum(correct * weights), tf.reduce_sum(weights),
                       losses["masked_lm_numerator"], tf.reduce_sum(nsp_correct),
                       losses["next_sentence_loss"] * n, n])

    @tf.function
    def eval_step(features):
      return strategy.reduce(tf.distribute.ReduceOp.SUM,
                             strategy.run(replica_eval, args=(features,)), axis=None)

    totals = np.zeros(6)
    for features in strategy.distribute_datasets_from_function(dataset_fn):
      totals += eval_step(features).numpy()
    weight, n = max(totals[1], 1e-5), max(totals[5], 1.0)
    results = {
        "global_step": int(self.global_step.numpy()),
        "masked_lm_accuracy": totals[0] / weight, "masked_lm_loss": totals[2] / weight,
        "next_sentence_accuracy": totals[3] / n, "next_sentence_loss": totals[4] / n,
    }
    results["loss"] = results["masked_lm_loss"] + results["next_sentence_loss"]
    if self.runtime.is_chief:
      path = os.path.join(self.config.output_dir, "eval_results.txt")
      with tf.io.gfile.GFile(path, "w") as f:
        for key in sorted(results):
          f.write(f"{key} = {results[key]}\n")
      writer = MetricsWriter(self.config.output_dir, True, name="eval")
      writer.write(results["global_step"], {k: float(v) for k, v in results.items()
                                            if k != "global_step"})
      writer.close()
    return results
