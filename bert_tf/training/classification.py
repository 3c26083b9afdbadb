"""Sequence classification (XNLI, GLUE) as a task of the engine: train, evaluate, predict, with
google's outputs (``eval_results.txt``, ``test_results.tsv``).

Batches come from ``bert_tf.data.classifier.plan_steps``: a step is replicas x K micro-batches
of example indexes, either a fixed number of examples padded to max_seq_length (google) or a
token budget with per-batch padding. Micro-batches differ in size, so every example carries a
weight (0 for padding rows) and the loss is normalised by the summed weights of the whole
global step: one device, N replicas and K accumulation steps compute the same update.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig, FinetuneConfig, OptimizerConfig
from bert_tf.data import classifier as data
from bert_tf.distribution import Runtime
from bert_tf.modeling import BertClassifier, BertEncoder
from bert_tf.training.engine import Engine
from bert_tf.training.metrics import compute_metrics, softmax
from bert_tf.training.reporting import write_eval_results

INPUTS = ("input_ids", "input_mask", "segment_ids")


class ClassificationTask:
  """A classifier (or regressor, STS-B) on the pooled output, weighted per example."""

  num_metrics = 5  # loss, examples, real tokens, padded tokens, gradient norm

  def __init__(self, task: data.Task, config: FinetuneConfig):
    self.task, self.config = task, config
    self.num_train_steps = 1  # set from the plan before training

  def build_model(self, bert_config: BertConfig, config: FinetuneConfig) -> BertClassifier:
    return BertClassifier(BertEncoder(bert_config, recompute=config.recompute, seed=config.seed),
                          self.task.num_labels, dropout_rate=config.classifier_dropout)

  def init_from(self, path: str, model) -> str:
    """google TF1 (pretrained or fine-tuned), our pretraining output or an encoder export."""
    try:  # the encoder alone: a pretraining checkpoint's cls/ heads are not wanted
      return checkpoints.restore_weights(path, model.encoder)
    except checkpoints.CheckpointMismatchError as first:
      try:  # a classifier checkpoint (google's output_weights/output_bias)
        return checkpoints.restore_weights(path, model)
      except checkpoints.CheckpointMismatchError:
        raise first from None

  def normalisers(self, batch, all_reduce_sum):
    # The number of real examples in the whole global step.
    return tf.maximum(all_reduce_sum(tf.reduce_sum(batch["label_weights"])), 1.0)

  def _per_example_loss(self, logits, labels):
    if self.task.is_regression:
      return tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
    return tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits)

  def micro_batch_loss(self, model, batch, k, weight_total, seed):
    features = {name: batch[name][k] for name in INPUTS}
    weights = batch["label_weights"][k]
    logits = model(features, training=True, dropout_seed=seed)["logits"]
    loss = tf.reduce_sum(self._per_example_loss(logits, batch["label_ids"][k]) * weights
                         ) / weight_total
    mask = tf.cast(features["input_mask"], tf.float32)
    padded_tokens = tf.cast(tf.size(mask), tf.float32) * tf.cast(tf.reduce_sum(weights) > 0,
                                                                tf.float32)
    return loss, tf.stack([loss, tf.reduce_sum(weights), tf.reduce_sum(mask), padded_tokens])

  def step_metrics(self, sums, normalisers, grad_norm, skipped):
    del normalisers, skipped
    return tf.concat([sums, [grad_norm]], axis=0)

  def log_values(self, totals, num_steps, step):
    metrics = {"loss": float(totals[0] / num_steps), "grad_norm": float(totals[4] / num_steps),
               "epoch": round(step / self.num_train_steps * self.config.num_train_epochs, 4),
               # real tokens / padded tokens: what token-budget batching improves
               "padding_efficiency": float(totals[2] / max(totals[3], 1.0))}
    return metrics, float(totals[1]), float(totals[2])


class ClassifierTrainer(Engine):
  """Fine-tunes, evaluates and predicts a classifier on the engine.

  Args:
    bert_config: the encoder's config.
    config: ``FinetuneConfig``.
    optimizer_config: ``OptimizerConfig``; its num_train_steps and num_warmup_steps are
      filled in from the plan (epochs x examples / batch).
    runtime: ``distribution.Runtime``.
    task: ``bert_tf.data.classifier.Task`` (labels, regression or not, metrics).
  """

  def __init__(self, bert_config: BertConfig, config: FinetuneConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime, task: data.Task):
    super().__init__(ClassificationTask(task, config), bert_config, config, runtime)
    self.task_spec = task
    self.parts = runtime.num_replicas * config.gradient_accumulation_steps
    self.base_optimizer_config = optimizer_config
    self._forward = None

  # --- data --------------------------------------------------------------------------------

  def plan(self, features: data.Features):
    cfg = self.config
    return data.plan_steps(features.lengths, self.parts, seed=cfg.seed,
                           epochs=cfg.num_train_epochs, **cfg.batching(cfg.train_batch_size))

  def _distribute(self, features: data.Features, steps, k: int, start: int, pad_to=None):
    num_replicas = self.runtime.num_replicas

    def dataset_fn(context: tf.distribute.InputContext):
      local = num_replicas // context.num_input_pipelines
      first = context.input_pipeline_id * local
      ds = data.make_dataset(features, steps, range(first, first + local), k, start, pad_to)
      return ds.prefetch(tf.data.AUTOTUNE)

    return self.runtime.distribute_dataset(dataset_fn)

  # --- training ----------------------------------------------------------------------------

  def train(self, features: data.Features, init_checkpoint: Optional[str] = None,
            stop_after_steps: Optional[int] = None) -> dict:
    """Fine-tunes for num_train_epochs over ``features``; resumes from output_dir.
    Returns the last logged metrics."""
    cfg = self.config
    steps = self.plan(features)
    num_steps = len(steps)
    if num_steps < 1:
      raise ValueError("no training steps: the training set is empty")
    if self.optimizer is None:
      self.build_optimizer(dataclasses.replace(
          self.base_optimizer_config, num_train_steps=num_steps,
          num_warmup_steps=int(num_steps * cfg.warmup_proportion)))
    self.task.num_train_steps = num_steps
    start = self.restore(init_checkpoint)
    target = num_steps if stop_after_steps is None else min(num_steps, start + stop_after_steps)
    if start >= target:
      logging.info("training already done: step %d of %d", start, num_steps)
      return {}
    unit = "tokens" if cfg.batch_size_in_tokens else "examples"
    self.describe(f"fine-tuning {self.task_spec.name} on {len(features)} examples "
                  f"({cfg.num_train_epochs:.3g} epochs),", start, target,
                  f"{cfg.train_batch_size} {unit} per step = {self.runtime.num_replicas} "
                  f"replica(s) x {cfg.gradient_accumulation_steps} accumulation")
    pad_to = None if cfg.batch_size_in_tokens else cfg.max_seq_length
    iterator = iter(self._distribute(features, steps, cfg.gradient_accumulation_steps, start,
                                     pad_to))
    return self.fit(iterator, start, target)

  # --- inference ---------------------------------------------------------------------------

  def logits(self, features: data.Features, batch_size: int) -> np.ndarray:
    """float32 [num_examples, num_labels] in example order (length-sorted batches inside)."""
    steps = data.plan_steps(features.lengths, self.runtime.num_replicas, seed=None,
                            **self.config.batching(batch_size))
    dataset = self._distribute(features, steps, 1, 0)
    strategy = self.strategy

    def replica_forward(batch):
      inputs = {name: batch[name][0] for name in INPUTS}
      return self.model(inputs, training=False)["logits"], batch["example_index"][0]

    if self._forward is None:  # one trace for every set and batch shape
      self._forward = tf.function(lambda batch: strategy.run(replica_forward, args=(batch,)),
                                  input_signature=[dataset.element_spec])
    out = np.zeros((len(features), self.task_spec.num_labels), np.float32)
    seen = np.zeros(len(features), np.int32)
    for batch in dataset:
      logits, index = self._forward(batch)
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
    logits = {name: self.logits(features, self.config.eval_batch_size)
              for name, features in eval_sets.items()}
    results = self._combine(logits, {name: f.labels for name, f in eval_sets.items()})
    results["global_step"] = self.current_step()
    results["loss"] = results["eval_loss"]  # google writes both
    if self.runtime.is_chief:
      name = "eval_results.txt" if split == "dev" else f"eval_results_{split}.txt"
      write_eval_results(self.config.output_dir, results, name)
    return results

  def _combine(self, logits: dict, labels: dict) -> dict:
    """One set: its metrics. Several: the task's primary set (MNLI matched) or all examples
    together, plus each set's metrics suffixed with its name (and, for XNLI, the average)."""
    task, primary = self.task_spec, self.task_spec.primary_group
    per_set = {name: compute_metrics(task, logits[name], labels[name]) for name in logits}
    if len(per_set) == 1:
      return dict(next(iter(per_set.values())))
    if primary in per_set:
      results = dict(per_set[primary])
    else:
      results = compute_metrics(task, np.concatenate(list(logits.values())),
                                np.concatenate(list(labels.values())))
    for name, values in per_set.items():
      results.update({f"{key}_{name}": value for key, value in values.items()})
    if primary is None and not task.is_regression:
      results["eval_accuracy_average"] = float(np.mean(
          [values["eval_accuracy"] for values in per_set.values()]))
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
      values = logits[:, :1] if self.task_spec.is_regression else softmax(
          logits.astype(np.float64))
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
