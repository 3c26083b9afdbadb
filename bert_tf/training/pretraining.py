"""Pretraining as a task of the engine: masked LM + next sentence (or masked LM alone), google's
eval metrics, and the encoder export that fine-tuning starts from.

The masked-LM loss is divided by the masked-token weight of the whole global batch and the
NSP loss by the global number of examples, so replicas and accumulation micro-batches
compute the update of one big batch (see ``step``).

Without next-sentence prediction (``TrainConfig.next_sentence_prediction=False``) the loss is
the masked-LM loss alone and ``next_sentence_labels`` is neither read nor needed. The model
keeps its pooler and NSP head: the loss does not reach them, so the step leaves them as they
were (no update, no weight decay), and checkpoints keep google's names whichever the objective
(a google checkpoint loads with nothing missing; a later run with NSP continues from one).
"""
from __future__ import annotations

import os
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig, OptimizerConfig, TrainConfig
from bert_tf.distribution import Runtime
from bert_tf.modeling import BertEncoder, BertPretrainer
from bert_tf.modeling.losses import masked_lm_loss_sums, next_sentence_loss
from bert_tf.training.engine import Engine
from bert_tf.training.reporting import write_eval_results

FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
            "masked_lm_weights", "next_sentence_labels")


def features_read(next_sentence_prediction: bool = True) -> tuple:
  """The features pretraining reads: ``FEATURES``, without the NSP labels if it has no NSP."""
  return FEATURES if next_sentence_prediction else FEATURES[:-1]


class PretrainingTask:
  """Masked LM + next sentence prediction on google-format features, or masked LM alone
  (``config.next_sentence_prediction``)."""

  def __init__(self, config: TrainConfig):
    self.config = config
    self.nsp = config.next_sentence_prediction
    self.features = features_read(self.nsp)
    # loss, masked-LM loss, [NSP loss,] gradient norm, skipped
    self.num_metrics = 5 if self.nsp else 4

  def build_model(self, bert_config: BertConfig, config: TrainConfig) -> BertPretrainer:
    return BertPretrainer(BertEncoder(bert_config, recompute=config.recompute, seed=config.seed))

  def init_from(self, path: str, model) -> str:
    return checkpoints.restore_weights(path, model)

  def normalisers(self, batch, all_reduce_sum):
    mlm_weight_total = all_reduce_sum(
        tf.reduce_sum(tf.cast(batch["masked_lm_weights"], tf.float32))) + 1e-5
    return mlm_weight_total, float(self.config.train_batch_size)

  def micro_batch_loss(self, model, batch, k, normalisers, seed):
    mlm_weight_total, global_examples = normalisers
    features = {name: batch[name][k] for name in self.features}
    out = model(features, training=True, dropout_seed=seed)
    mlm_sum, _ = masked_lm_loss_sums(out["mlm_logits"], features["masked_lm_ids"],
                                     features["masked_lm_weights"])
    loss = mlm_sum / mlm_weight_total
    if not self.nsp:  # nsp_logits unused: no gradient reaches the pooler and NSP head
      return loss, tf.stack([loss, mlm_sum])
    nsp_sum = next_sentence_loss(out["nsp_logits"], features["next_sentence_labels"]) * \
        tf.cast(tf.shape(features["input_ids"])[0], tf.float32)
    loss += nsp_sum / global_examples
    return loss, tf.stack([loss, mlm_sum, nsp_sum])

  def step_metrics(self, sums, normalisers, grad_norm, skipped):
    mlm_weight_total, global_examples = normalisers
    nsp = [sums[2] / global_examples] if self.nsp else []
    return tf.stack([sums[0], sums[1] / mlm_weight_total, *nsp, grad_norm, skipped])

  def log_values(self, totals, num_steps, step):
    del step
    values = totals / num_steps  # float32, as the figures were computed in the graph before
    names = ["loss", "masked_lm_loss"] + ["next_sentence_loss"] * self.nsp + ["grad_norm"]
    metrics = {name: float(value) for name, value in zip(names, values)}
    examples = num_steps * self.config.train_batch_size
    return metrics, examples, examples * self.config.max_seq_length


def evaluate_pretraining(model, strategy, dataset_fn: Callable, batch_size: int,
                         max_steps: int, next_sentence_prediction: bool = True) -> dict:
  """google's pretraining eval metrics over at most ``max_steps`` global batches; without
  ``next_sentence_prediction`` the masked-LM ones alone (``loss`` = ``masked_lm_loss``)."""

  def replica_dataset(context):
    per_replica = context.get_per_replica_batch_size(batch_size)
    return dataset_fn(context, per_replica).take(max_steps)

  def replica_eval(features):
    out = model(features, training=False)
    mlm_sum, _ = masked_lm_loss_sums(out["mlm_logits"], features["masked_lm_ids"],
                                     features["masked_lm_weights"])
    weights = tf.cast(features["masked_lm_weights"], tf.float32)
    predicted = tf.argmax(out["mlm_logits"], axis=-1, output_type=tf.int32)
    correct = tf.cast(tf.equal(predicted, tf.cast(features["masked_lm_ids"], tf.int32)),
                      tf.float32)
    n = tf.cast(tf.shape(features["input_ids"])[0], tf.float32)
    nsp_correct = nsp_sum = tf.zeros([])
    if next_sentence_prediction:
      labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
      nsp_correct = tf.reduce_sum(tf.cast(tf.equal(
          tf.argmax(out["nsp_logits"], -1, output_type=tf.int32), labels), tf.float32))
      nsp_sum = next_sentence_loss(out["nsp_logits"], labels) * n
    return tf.stack([tf.reduce_sum(correct * weights), tf.reduce_sum(weights), mlm_sum,
                     nsp_correct, nsp_sum, n])

  @tf.function
  def eval_step(features):
    return strategy.reduce(tf.distribute.ReduceOp.SUM,
                           strategy.run(replica_eval, args=(features,)), axis=None)

  totals = np.zeros(6)
  # Through the strategy (not runtime.distribute_dataset): under Horovod every rank evaluates
  # the whole held-out set, as one device does.
  for features in strategy.distribute_datasets_from_function(replica_dataset):
    totals += eval_step(features).numpy()
  if totals[5] == 0:  # averages over nothing: no metrics rather than zeros
    raise ValueError("pretraining evaluation read no examples from its input; no metrics "
                     "written (empty or fully skipped --eval_input_file?)")
  weight, n = max(totals[1], 1e-5), max(totals[5], 1.0)
  results = {"masked_lm_accuracy": totals[0] / weight, "masked_lm_loss": totals[2] / weight}
  if next_sentence_prediction:
    results.update(next_sentence_accuracy=totals[3] / n, next_sentence_loss=totals[4] / n)
  results["loss"] = results["masked_lm_loss"] + results.get("next_sentence_loss", 0.0)
  return results


class Pretrainer(Engine):
  """Pretraining on the engine: trains, evaluates and exports the encoder.

  Args:
    bert_config: the encoder's config.
    config: the run's ``TrainConfig``.
    optimizer_config: ``OptimizerConfig``.
    runtime: ``distribution.Runtime``.
    train_dataset_fn: ``(input_context, micro_batch_size) -> tf.data.Dataset`` of dicts with
      google's feature names, batched to ``micro_batch_size``, repeating, deterministic for a
      given seed (resume skips the consumed batches).
    eval_dataset_fn: same signature, finite, for ``evaluate``.
  """

  def __init__(self, bert_config: BertConfig, config: TrainConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime,
               train_dataset_fn: Optional[Callable] = None,
               eval_dataset_fn: Optional[Callable] = None):
    config.check_divisible(runtime.num_replicas)
    super().__init__(PretrainingTask(config), bert_config, config, runtime)
    self.train_dataset_fn, self.eval_dataset_fn = train_dataset_fn, eval_dataset_fn
    self.micro_batch = config.micro_batch_size(runtime.num_replicas)
    self.build_optimizer(optimizer_config)
    self.manager = self.checkpoints.manager

  def restore_or_initialize(self, init_checkpoint: Optional[str] = None) -> int:
    """Resumes from output_dir (everything), else loads ``init_checkpoint`` weights (google
    TF1 or ours). Returns the step."""
    return self.restore(init_checkpoint)

  def distributed_train_dataset(self, start_step: int = 0):
    """[K, micro_batch, ...] per step from ``start_step`` on (skipping consumed steps
    restores the data position)."""
    k = self.config.gradient_accumulation_steps

    def dataset_fn(context: tf.distribute.InputContext):
      ds = self.train_dataset_fn(context, self.micro_batch).batch(k, drop_remainder=True)
      if start_step:
        ds = ds.skip(start_step)
      return ds.prefetch(tf.data.AUTOTUNE)

    return self.runtime.distribute_dataset(dataset_fn)

  def train(self, init_checkpoint: Optional[str] = None,
            stop_after_steps: Optional[int] = None) -> dict:
    """Trains to ``num_train_steps`` (or ``stop_after_steps`` more steps, for tests of resume).
    Returns the last metrics dict."""
    cfg = self.config
    start = self.restore(init_checkpoint)
    target = cfg.num_train_steps if stop_after_steps is None else \
        min(cfg.num_train_steps, start + stop_after_steps)
    if start >= target:
      logging.info("nothing to do: step %d >= %d", start, target)
      return {}
    self.describe("training", start, target,
                  f"global batch {cfg.train_batch_size} = {self.runtime.num_replicas} replica(s)"
                  f" x {self.micro_batch} micro-batch x {cfg.gradient_accumulation_steps} "
                  "accumulation")
    evaluate = self.evaluate if self.eval_dataset_fn is not None else None
    metrics = self.fit(iter(self.distributed_train_dataset(start)), start, target,
                       evaluate=evaluate, eval_every_steps=cfg.eval_every_steps)
    if self.current_step() >= cfg.num_train_steps:
      self.export_encoder()
    return metrics

  def export_encoder(self) -> Optional[str]:
    """Writes the encoder alone (TF2 checkpoint + bert_config.json) for fine-tuning."""
    out = os.path.join(self.config.output_dir, "encoder")

    def write(directory):
      tf.io.gfile.makedirs(directory)
      return tf.train.Checkpoint(encoder=self.model.encoder).write(
          os.path.join(directory, "encoder"))

    path = self.runtime.write_from_chief(write, out, self.config.output_dir)
    if path is not None:
      self.bert_config.to_json_file(os.path.join(out, "bert_config.json"))
      logging.info("exported encoder checkpoint %s", path)
    return path

  def evaluate(self, max_steps: Optional[int] = None) -> dict:
    """google's eval metrics on held-out records; writes ``eval_results.txt`` like google."""
    cfg = self.config
    results = evaluate_pretraining(self.model, self.strategy, self.eval_dataset_fn,
                                   cfg.eval_batch_size,
                                   cfg.max_eval_steps if max_steps is None else max_steps,
                                   cfg.next_sentence_prediction)
    results["global_step"] = self.current_step()
    logging.info("eval at step %d: %s", results["global_step"], ", ".join(
        f"{k} {results[k]:.4f}" for k in ("masked_lm_accuracy", "next_sentence_accuracy")
        if k in results))
    if self.runtime.is_chief:
      write_eval_results(cfg.output_dir, results)
    return results
