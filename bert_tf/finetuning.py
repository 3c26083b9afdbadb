"""Fine-tuning a classifier (XNLI, GLUE): train, evaluate, predict, with google's outputs.

Reading order: ``FinetuneConfig`` (what a run is), ``ClassifierTrainer.__init__`` (model built
once in the strategy scope), ``_replica_step`` (one optimizer step on one replica over K
micro-batches), ``train`` (plan the steps, resume, run, log, save), ``evaluate`` and
``predict`` (logits in example order -> metrics, ``eval_results.txt``, ``test_results.tsv``).

Batches come from ``bert_tf.data.classifier.plan_steps``: a step is replicas x K micro-batches
of example indexes, either a fixed number of examples padded to max_seq_length (google) or a
token budget with per-batch padding. Micro-batches differ in size, so every example carries a
weight (0 for padding rows) and the loss is normalised by the summed weights of the whole
global step: one device, N replicas and K accumulation steps compute the same update.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from bert_tf import checkpoints, optimization, precision
from bert_tf.configs import BertConfig, FinetuneConfig  # noqa: F401
from bert_tf.data import classifier as data
from bert_tf.distribution import Runtime
from bert_tf.modeling import BertClassifier, BertEncoder
from bert_tf.fault_tolerance import CheckpointWriter, StallWatchdog, TerminationGuard
from bert_tf.training import (MetricsWriter, TrainingDivergedError, _format_eta, accumulate,
                              reduce_and_apply)


# --- metrics -------------------------------------------------------------------------------

def _softmax(logits):
  z = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def f1_score(labels, predictions, positive=1) -> float:
  tp = np.sum((predictions == positive) & (labels == positive))
  fp = np.sum((predictions == positive) & (labels != positive))
  fn = np.sum((predictions != positive) & (labels == positive))
  return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def matthews_corrcoef(labels, predictions) -> float:
  """Binary Matthews correlation (CoLA's metric); 0 when a margin is empty."""
  tp = float(np.sum((predictions == 1) & (labels == 1)))
  tn = float(np.sum((predictions == 0) & (labels == 0)))
  fp = float(np.sum((predictions == 1) & (labels == 0)))
  fn = float(np.sum((predictions == 0) & (labels == 1)))
  denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return (tp * tn - fp * fn) / denominator if denominator else 0.0


def compute_metrics(task: data.Task, logits: np.ndarray, labels: np.ndarray) -> dict:
  """google's eval keys (eval_accuracy, eval_loss) plus the task's own metrics."""
  if task.is_regression:
    from scipy import stats
    scores = logits[:, 0]
    pearson = float(stats.pearsonr(scores, labels)[0]) if len(labels) > 1 else 0.0
    spearman = float(stats.spearmanr(scores, labels)[0]) if len(labels) > 1 else 0.0
    return {"eval_loss": float(np.mean((scores - labels) ** 2)), "eval_pearson": pearson,
            "eval_spearman": spearman, "eval_corr": (pearson + spearman) / 2}
  probabilities = _softmax(logits.astype(np.float64))
  predictions = probabilities.argmax(-1)
  picked = probabilities[np.arange(len(labels)), labels]
  results = {"eval_accuracy": float(np.mean(predictions == labels)),
             "eval_loss": float(-np.mean(np.log(np.maximum(picked, 1e-30))))}
  if "f1" in task.metrics:
    results["eval_f1"] = f1_score(labels, predictions)
  if "mcc" in task.metrics:
    results["eval_mcc"] = matthews_corrcoef(labels, predictions)
  return results


def write_results(path: str, results: dict) -> None:
  """google's ``eval_results.txt``: ``key = value`` lines, keys sorted."""
  with tf.io.gfile.GFile(path, "w") as f:
    for key in sorted(results):
      f.write(f"{key} = {results[key]}\n")


# --- the trainer ---------------------------------------------------------------------------

class ClassifierTrainer:
  """Builds the classifier once, then trains, evaluates and predicts.

  Args:
    bert_config: the encoder's config.
    config: ``FinetuneConfig``.
    optimizer_config: ``optimization.OptimizerConfig``; its num_train_steps and
      num_warmup_steps are filled in from the plan (epochs x examples / batch).
    runtime: ``distribution.Runtime``.
    task: ``bert_tf.data.classifier.Task`` (labels, regression or not, metrics).
  """

  def __init__(self, bert_config: BertConfig, config: FinetuneConfig,
               optimizer_config: optimization.OptimizerConfig, runtime: Runtime,
               task: data.Task):
    self.bert_config = bert_config
    self.config = config
    self.optimizer_config = optimizer_config
    self.runtime = runtime
    self.task = task
    self.strategy = runtime.strategy
    self.parts = runtime.num_replicas * config.gradient_accumulation_steps
    precision.set_policy(config.dtype)
    tf_keras.utils.set_random_seed(config.seed)  # same seed, same initial weights
    self.loss_scaling = config.dtype == "fp16"
    with self.strategy.scope():
      self.model = BertClassifier(
          BertEncoder(bert_config, recompute=config.recompute, seed=config.seed),
          task.num_labels, dropout_rate=config.classifier_dropout)
      counter = lambda name: tf.Variable(  # noqa: E731
          0, dtype=tf.int64, trainable=False, name=name,
          synchronization=tf.VariableSynchronization.ON_WRITE,
          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
      self.global_step = counter("global_step")
      self.consecutive_skips = counter("consecutive_skips")
    self.optimizer = None
    self._restored = False
    self._forward = None
    # Made with the training checkpoint manager, once per trainer (see TerminationGuard).
    self._checkpoints, self._termination = None, None

  # --- state -------------------------------------------------------------------------------

  def _manager(self, with_optimizer: bool) -> tf.train.CheckpointManager:
    objects = dict(model=self.model, global_step=self.global_step,
                   consecutive_skips=self.consecutive_skips)
    if with_optimizer:
      objects["optimizer"] = self.optimizer
    return tf.train.CheckpointManager(
        tf.train.Checkpoint(**objects), self.config.output_dir,
        max_to_keep=self.config.keep_checkpoint_max, checkpoint_name="ckpt",
        step_counter=self.global_step)

  def _init_from(self, init_checkpoint: str) -> str:
    """google TF1 (pretrained or fine-tuned), our pretraining output or an encoder export."""
    try:  # the encoder alone: a pretraining checkpoint's cls/ heads are not wanted
      return checkpoints.restore_weights(init_checkpoint, self.model.encoder)
    except checkpoints.CheckpointMismatchError as first:
      try:  # a classifier checkpoint (google's output_weights/output_bias)
        return checkpoints.restore_weights(init_checkpoint, self.model)
      except checkpoints.CheckpointMismatchError:
        raise first from None

  def restore(self, init_checkpoint: Optional[str] = None, with_optimizer: bool = False) -> int:
    """Latest checkpoint in output_dir (weights, and optimizer state when training), else
    ``init_checkpoint`` weights; returns the step."""
    manager = self._manager(with_optimizer)
    latest = manager.latest_checkpoint
    if latest:
      status = manager.checkpoint.restore(latest)
      if with_optimizer:
        status.assert_existing_objects_matched()
      else:
        status.expect_partial()
      logging.info("restored %s (step %d)", latest, int(self.global_step.numpy()))
    elif init_checkpoint and not self._restored:
      kind = self._init_from(init_checkpoint)
      logging.info("initialised the encoder from %s (%s checkpoint)", init_checkpoint, kind)
    self._restored = True
    variables = self.model.variables + (self.optimizer.variables() if with_optimizer else [])
    self.runtime.broadcast_initial_state(variables)
    return int(self.global_step.numpy())

  # --- data --------------------------------------------------------------------------------

  def _distribute(self, features: data.Features, steps, k: int, start: int, pad_to=None):
    num_pipelines, index = self.runtime.input_shard

    def dataset_fn(context: tf.distribute.InputContext):
      pipelines, pipeline = ((num_pipelines, index) if num_pipelines > 1 else
                             (context.num_input_pipelines, context.input_pipeline_id))
      local = self.runtime.num_replicas // pipelines
      replicas = range(pipeline * local, (pipeline + 1) * local)
      ds = data.make_dataset(features, steps, replicas, k, start, pad_to)
      return ds.prefetch(tf.data.AUTOTUNE)

    return self.strategy.distribute_datasets_from_function(dataset_fn)

  def plan(self, features: data.Features):
    cfg = self.config
    return data.plan_steps(features.lengths, self.parts, seed=cfg.seed,
                           epochs=cfg.num_train_epochs, **cfg.batching(cfg.train_batch_size))

  # --- one step ----------------------------------------------------------------------------

  def _per_example_loss(self, logits, labels):
    if self.task.is_regression:
      return tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)

  def _replica_step(self, batch):
    """One optimizer step on this replica. ``batch``: dict of [K, rows, ...] tensors."""
    cfg = self.config
    k_steps = cfg.gradient_accumulation_steps
    variables = self.model.trainable_variables
    replica_id = self.runtime.replica_index()  # Horovod: the rank
    # Known before any forward pass: the number of real examples in the whole global step.
    weight_total = tf.maximum(self.runtime.all_reduce_sum(tf.reduce_sum(batch["label_weights"])),
                              1.0)
    step = self.global_step.read_value()

    def micro_step(k):
      features = {name: batch[name][k] for name in ("input_ids", "input_mask", "segment_ids")}
      weights = batch["label_weights"][k]
      seed = tf.stack([tf.constant(cfg.seed, tf.int64), step * k_steps + tf.cast(k, tf.int64)])
      seed = tf.random.experimental.stateless_fold_in(seed, replica_id)
      with tf.GradientTape() as tape:
        logits = self.model(features, training=True, dropout_seed=seed)["logits"]
        loss_sum = tf.reduce_sum(self._per_example_loss(logits, batch["label_ids"][k]) * weights)
        loss = loss_sum / weight_total
        scaled = self.optimizer.get_scaled_loss(loss) if self.loss_scaling else loss
      grads = [tf.convert_to_tensor(g) for g in tape.gradient(scaled, variables)]
      mask = tf.cast(features["input_mask"], tf.float32)
      sums = tf.stack([loss, tf.reduce_sum(weights), tf.reduce_sum(mask),
                       tf.cast(tf.size(mask), tf.float32) * tf.cast(
                           tf.reduce_sum(weights) > 0, tf.float32)])
      return grads, sums

    grads, sums = accumulate(micro_step, k_steps)
    sums, grad_norm, finite = reduce_and_apply(self.runtime, self.optimizer, self.loss_scaling,
                                               self.optimizer_config.clip_norm, grads, sums,
                                               variables)
    skipped = tf.cast(tf.logical_not(finite), tf.int64)
    self.global_step.assign_add(1)
    self.consecutive_skips.assign(skipped * (self.consecutive_skips + skipped))
    # loss, examples, real tokens, padded tokens, gradient norm
    return tf.concat([sums, [grad_norm]], axis=0)

  def _make_train_loop(self):
    strategy = self.strategy

    def loop(iterator, num_steps):
      totals = tf.zeros([5])
      for _ in tf.range(num_steps):
        values = strategy.run(self._replica_step, args=(next(iterator),))
        totals += strategy.experimental_local_results(values)[0]  # all-reduced already
      return totals

    return tf.function(loop, jit_compile=self.config.use_xla or None)

  # --- the loop ----------------------------------------------------------------------------

  def train(self, features: data.Features, init_checkpoint: Optional[str] = None,
            stop_after_steps: Optional[int] = None) -> dict:
    """Fine-tunes for num_train_epochs over ``features``; resumes from output_dir.

    Returns the last logged metrics.
    """
    cfg = self.config
    steps = self.plan(features)
    num_steps = len(steps)
    if num_steps < 1:
      raise ValueError("no training steps: the training set is empty")
    self.optimizer_config = dataclasses.replace(
        self.optimizer_config, num_train_steps=num_steps,
        num_warmup_steps=int(num_steps * cfg.warmup_proportion))
    with self.strategy.scope():
      self.optimizer = precision.wrap_optimizer(
          optimization.create_optimizer(self.optimizer_config), cfg.dtype,
          initial_scale=cfg.initial_loss_scale)
    start = self.restore(init_checkpoint, with_optimizer=True)
    if self._checkpoints is None:
      self._checkpoints = CheckpointWriter(self.runtime, self._manager(with_optimizer=True),
                                           cfg.output_dir)
      self._termination = TerminationGuard(self._checkpoints,
                                           lambda: int(self.global_step.numpy()))
    target = num_steps if stop_after_steps is None else min(num_steps, start + stop_after_steps)
    if start >= target:
      logging.info("training already done: step %d of %d", start, num_steps)
      return {}
    pad_to = None if cfg.batch_size_in_tokens else cfg.max_seq_length
    iterator = iter(self._distribute(features, steps, cfg.gradient_accumulation_steps, start,
                                     pad_to))
    train_loop = self._make_train_loop()
    writer = MetricsWriter(cfg.output_dir, self.runtime.is_chief)
    watchdog = StallWatchdog(cfg.stall_timeout_secs)
    logging.info("fine-tuning %s on %d examples: steps %d -> %d (%.3g epochs), %s per step = "
                 "%d replica(s) x %d accumulation, %s, recompute=%s", self.task.name,
                 len(features), start, num_steps, cfg.num_train_epochs,
                 f"{cfg.train_batch_size} {'tokens' if cfg.batch_size_in_tokens else 'examples'}",
                 self.runtime.num_replicas, cfg.gradient_accumulation_steps, cfg.dtype,
                 cfg.recompute)
    step, metrics = start, {}
    timed, timed_steps, timed_seconds, first = np.zeros(5), 0, 0.0, True
    with self._termination.watching(target) as guard:
      try:
        while step < target:
          n = min(cfg.iterations_per_loop, target - step,
                  cfg.save_checkpoints_steps - step % cfg.save_checkpoints_steps)
          began = time.perf_counter()
          totals = train_loop(iterator, tf.constant(n)).numpy()
          elapsed = time.perf_counter() - began
          watchdog.ping()
          step = int(self.global_step.numpy())
          if not first:  # the first call traces: left out of the speed figures
            timed, timed_steps, timed_seconds = timed + totals, timed_steps + n, \
                timed_seconds + elapsed
          first = False
          rate = timed / timed_seconds if timed_seconds else np.full(5, float("nan"))
          metrics = {
              "loss": float(totals[0] / n), "grad_norm": float(totals[4] / n),
              "learning_rate": self._learning_rate(), "loss_scale": self._loss_scale(),
              "epoch": round(step / num_steps * cfg.num_train_epochs, 4),
              "examples_per_sec": float(rate[1]), "tokens_per_sec": float(rate[2]),
              # real tokens / padded tokens: what token-budget batching improves
              "padding_efficiency": float(totals[2] / max(totals[3], 1.0)),
              "eta": _format_eta((target - step) * timed_seconds / timed_steps)
                     if timed_steps else "n/a"}
          writer.write(step, metrics)
          self._check_health(metrics)
          if step % cfg.save_checkpoints_steps == 0 or step >= target:
            self._checkpoints.save(step)
          guard.check()
      finally:
        watchdog.stop()
        writer.close()
    return metrics

  def _learning_rate(self) -> float:
    opt = self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer
    return float(opt.learning_rate(opt.iterations))

  def _loss_scale(self) -> float:
    return float(self.optimizer.loss_scale) if self.loss_scaling else 1.0

  def _check_health(self, metrics):
    cfg = self.config
    consecutive = int(self.consecutive_skips.numpy())
    if consecutive >= cfg.max_consecutive_skips or (
        not self.loss_scaling and not math.isfinite(metrics["loss"])):
      raise TrainingDivergedError(
          f"{consecutive} consecutive steps with a non-finite loss or gradient (loss "
          f"{metrics['loss']}, dtype {cfg.dtype}); stopping. Checkpoints in "
          f"{cfg.output_dir} are kept.")

  # --- inference ---------------------------------------------------------------------------

  def logits(self, features: data.Features, batch_size: int) -> np.ndarray:
    """float32 [num_examples, num_labels] in example order (length-sorted batches inside)."""
    steps = data.plan_steps(features.lengths, self.runtime.num_replicas, seed=None,
                            **self.config.batching(batch_size))
    dataset = self._distribute(features, steps, 1, 0)
    strategy = self.strategy

    def replica_forward(batch):
      inputs = {name: batch[name][0] for name in ("input_ids", "input_mask", "segment_ids")}
      return self.model(inputs, training=False)["logits"], batch["example_index"][0]

    if self._forward is None:  # one trace for every set and batch shape
      self._forward = tf.function(lambda batch: strategy.run(replica_forward, args=(batch,)),
                                  input_signature=[dataset.element_spec])
    forward = self._forward
    out = np.zeros((len(features), self.task.num_labels), np.float32)
    seen = np.zeros(len(features), np.int32)
    for batch in dataset:
      logits, index = forward(batch)
      for lg, ix in zip(strategy.experimental_local_results(logits),
                        strategy.experimental_local_results(index)):
        ix = ix.numpy()
        keep = ix >= 0
        out[ix[keep]] = lg.numpy()[keep]
        np.add.at(seen, ix[keep], 1)
    # This worker filled only its own replicas' examples (zeros elsewhere); with several
    # workers (MultiWorkerMirrored, Horovod) the sum over workers is the whole set.
    out = self.runtime.sum_over_workers(out)
    seen = self.runtime.sum_over_workers(seen)
    if not np.all(seen == 1):
      raise RuntimeError(f"inference covered {int(np.sum(seen > 0))} of {len(features)} examples "
                         f"({int(np.sum(seen > 1))} more than once): the batches were not split "
                         "across workers as planned")
    return out

  def evaluate(self, eval_sets: dict[str, data.Features], split: str = "dev",
               init_checkpoint: Optional[str] = None) -> dict:
    """Metrics on each set (XNLI language, MNLI matched/mismatched) and overall; writes
    ``eval_results.txt`` (google's format) and an ``eval`` metrics record."""
    if not self._restored:
      self.restore(init_checkpoint)
    per_set = {}
    all_logits, all_labels = [], []
    for name, features in eval_sets.items():
      logits = self.logits(features, self.config.eval_batch_size)
      per_set[name] = compute_metrics(self.task, logits, features.labels)
      all_logits.append(logits)
      all_labels.append(features.labels)
    primary = self.task.primary_group
    if len(per_set) == 1:
      results = dict(next(iter(per_set.values())))
    elif primary in per_set:
      results = dict(per_set[primary])
    else:
      results = compute_metrics(self.task, np.concatenate(all_logits), np.concatenate(all_labels))
    if len(per_set) > 1:
      for name, values in per_set.items():
        results.update({f"{key}_{name}": value for key, value in values.items()})
      if primary is None and not self.task.is_regression:
        results["eval_accuracy_average"] = float(np.mean(
            [values["eval_accuracy"] for values in per_set.values()]))
    step = int(self.global_step.numpy())
    results["global_step"] = step
    results["loss"] = results["eval_loss"]  # google writes both
    if self.runtime.is_chief:
      name = "eval_results.txt" if split == "dev" else f"eval_results_{split}.txt"
      write_results(os.path.join(self.config.output_dir, name), results)
      writer = MetricsWriter(self.config.output_dir, True, name="eval")
      writer.write(step, {k: v for k, v in results.items() if k != "global_step"})
      writer.close()
    return results

  def predict(self, test_sets: dict[str, data.Features],
              init_checkpoint: Optional[str] = None) -> list[str]:
    """google's ``test_results.tsv``: one line per example, the class probabilities
    tab-separated (regression: the predicted score). Several sets (MNLI matched and
    mismatched, XNLI languages): all of them in order in test_results.tsv, and each also in
    ``test_results_<set>.tsv``. Returns the paths written."""
    if not self._restored:
      self.restore(init_checkpoint)
    lines = {}
    for name, features in test_sets.items():
      logits = self.logits(features, self.config.predict_batch_size)
      values = logits[:, :1] if self.task.is_regression else _softmax(logits.astype(np.float64))
      lines[name] = ["\t".join(str(float(v)) for v in row) + "\n" for row in values]
    paths = []
    if self.runtime.is_chief:
      files = {"test_results.tsv": [l for rows in lines.values() for l in rows]}
      if len(lines) > 1:
        files.update({f"test_results_{name}.tsv": rows for name, rows in lines.items()})
      for name, rows in files.items():
        path = os.path.join(self.config.output_dir, name)
        with tf.io.gfile.GFile(path, "w") as f:
          f.write("".join(rows))
        paths.append(path)
    return paths
