"""Sequence classification (XNLI, GLUE) as a task of the engine: train, evaluate, predict, with
google's outputs (``eval_results.txt``, ``test_results.tsv``).

Batches come from ``bert_tf.data.classifier.plan_steps``: a step is replicas x K micro-batches
of example indexes, either a fixed number of examples padded to max_seq_length (google) or a
token budget with per-batch padding. Micro-batches differ in size, so every example carries a
weight (0 for padding rows) and the loss is normalised by the summed weights of the whole
global step: one device, N replicas and K accumulation steps compute the same update.
"""
from __future__ import annotations

import os
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig, FinetuneConfig, OptimizerConfig
from bert_tf.data import classifier as data
from bert_tf.distribution import Runtime
from bert_tf.interop import hf
from bert_tf.modeling import BertClassifier, BertEncoder
from bert_tf.training.planned import INPUTS, PlannedTrainer
from bert_tf.training.metrics import compute_metrics, softmax
from bert_tf.training.reporting import write_eval_results


def hf_tensor_names(path: str) -> set[str]:
  """The tensor names of an HF folder's ``model.safetensors`` (or that file): from its header
  alone for a local file."""
  file = hf.weights_file(path)
  if os.path.exists(file):
    from safetensors import safe_open  # pylint: disable=import-outside-toplevel
    with safe_open(file, framework="np") as f:
      return set(f.keys())
  return set(hf.read_tensors(file))


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
    """google TF1 (pretrained or fine-tuned), our pretraining output, an encoder export or a
    Hugging Face folder. A fine-tuned classifier's head is loaded too when it fits this task:
    google's ``output_weights`` and HF's ``classifier.weight`` (a head of another shape: the
    encoder alone, logged). Our own runs give their encoder (``model/encoder/``) only."""
    if hf.weights_file(path) and "classifier.weight" in hf_tensor_names(path):
      try:  # all or nothing: the encoder and the head
        kind = checkpoints.restore_weights(path, model)
        logging.info("%s: classifier head (classifier.weight/bias) loaded too", path)
        return kind
      except checkpoints.CheckpointMismatchError as whole:
        logging.warning("%s: the whole classifier does not load (%s); loading the encoder "
                        "alone, the head starts from its initial values", path, whole)
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


class ClassifierTrainer(PlannedTrainer):
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
    super().__init__(self.make_task(task, config), bert_config, config, optimizer_config,
                     runtime)
    self.task_spec = task
    self.name = task.name

  def make_task(self, task: data.Task, config: FinetuneConfig) -> ClassificationTask:
    """The engine's task (a subclass's loss: ``distillation.DistillationTask``)."""
    return ClassificationTask(task, config)

  def make_dataset(self, features, steps, replicas, k, start, pad_to):
    return data.make_dataset(features, steps, replicas, k, start, pad_to)

  def assemble(self, features, groups, pad_to):
    """Micro-batches (index arrays) as arrays (``data.assemble``), for inference."""
    return data.assemble(features, groups, pad_to)

  def logits(self, features: data.Features, batch_size: int) -> np.ndarray:
    """float32 [num_examples, num_labels] in example order (length-sorted batches inside)."""

    def replica_forward(batch):
      inputs = {name: batch[name][0] for name in INPUTS}
      return self.model(inputs, training=False)["logits"], batch["example_index"][0]

    return self.gather_rows(features, batch_size, replica_forward,
                            (self.task_spec.num_labels,))

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
