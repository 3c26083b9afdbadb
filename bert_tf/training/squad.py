"""SQuAD question answering as a task of the engine: train on span features, predict answers
gathered from every replica and worker, google's output files and the official scores.

The loss of a feature is google's (CE(start) + CE(end)) / 2 over the padded sequence; every
micro-batch divides its summed loss by the number of real features in the whole global step
(``ClassificationTask``'s normaliser, whose bookkeeping this task inherits), so one device, N
replicas and K accumulation micro-batches compute the same update.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig, OptimizerConfig
from bert_tf.configs.squad import SquadConfig
from bert_tf.data import squad as data
from bert_tf.distribution import Runtime
from bert_tf.modeling import BertEncoder
from bert_tf.modeling.squad import BertSpanLabeler
from bert_tf.training.classification import INPUTS, ClassificationTask
from bert_tf.training.engine import Engine
from bert_tf.training.reporting import write_eval_results


class SquadTask(ClassificationTask):
  """Span labelling: ``label_ids`` [B, 2] are each feature's start and end positions."""

  def __init__(self, config: SquadConfig):
    super().__init__(None, config)

  def build_model(self, bert_config: BertConfig, config: SquadConfig) -> BertSpanLabeler:
    return BertSpanLabeler(BertEncoder(bert_config, recompute=config.recompute,
                                       seed=config.seed))

  def init_from(self, path: str, model) -> str:
    """google TF1 (pretrained, or SQuAD fine-tuned: cls/squad/ loads too), another SQuAD
    run's output (span head included), our pretraining output or an encoder export."""
    return checkpoints.restore_weights(path, model)

  def _per_example_loss(self, logits, labels):
    # logits [B, S, 2] -> [B, 2, S]: cross-entropy over the positions, for start and end.
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.cast(labels, tf.int32), tf.transpose(logits, [0, 2, 1]))
    return tf.reduce_mean(ce, axis=1)


class SquadTrainer(Engine):
  """Fine-tunes a span model on SQuAD features and predicts answers.

  Args:
    bert_config: the encoder's config.
    config: ``SquadConfig``.
    optimizer_config: ``OptimizerConfig``; num_train_steps and num_warmup_steps are filled
      in from the plan (epochs x features / batch).
    runtime: ``distribution.Runtime``.
  """

  def __init__(self, bert_config: BertConfig, config: SquadConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime):
    super().__init__(SquadTask(config), bert_config, config, runtime)
    self.parts = runtime.num_replicas * config.gradient_accumulation_steps
    self.base_optimizer_config = optimizer_config
    self._forward = None

  def _distribute(self, features: data.SquadFeatures, steps, k: int, start: int):
    num_replicas, pad_to = self.runtime.num_replicas, self.config.max_seq_length

    def dataset_fn(context: tf.distribute.InputContext):
      local = num_replicas // context.num_input_pipelines
      first = context.input_pipeline_id * local
      # Padded to max_seq_length as google: the training softmax and the n-best candidates
      # of prediction run over every position, padding included.
      ds = data.make_dataset(features, steps, range(first, first + local), k, start, pad_to)
      return ds.prefetch(tf.data.AUTOTUNE)

    return self.runtime.distribute_dataset(dataset_fn)

  def train(self, features: data.SquadFeatures, init_checkpoint: Optional[str] = None,
            stop_after_steps: Optional[int] = None) -> dict:
    """Fine-tunes for num_train_epochs over ``features`` (training features: positions set);
    resumes from output_dir. Returns the last logged metrics."""
    cfg = self.config
    steps = data.plan_steps(features.lengths, self.parts, seed=cfg.seed,
                            epochs=cfg.num_train_epochs, batch_size=cfg.train_batch_size)
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
    self.describe(f"fine-tuning SQuAD on {len(features)} features ({cfg.num_train_epochs:.3g} "
                  "epochs),", start, target,
                  f"{cfg.train_batch_size} features per step = {self.runtime.num_replicas} "
                  f"replica(s) x {cfg.gradient_accumulation_steps} accumulation")
    iterator = iter(self._distribute(features, steps, cfg.gradient_accumulation_steps, start))
    return self.fit(iterator, start, target)

  def span_logits(self, features: data.SquadFeatures) -> np.ndarray:
    """float32 [num_features, max_seq_length, 2] start and end logits, in feature order,
    each feature computed exactly once over all replicas and workers (checked)."""
    steps = data.plan_steps(features.lengths, self.runtime.num_replicas, seed=None,
                            batch_size=self.config.predict_batch_size)
    dataset = self._distribute(features, steps, 1, 0)
    strategy = self.strategy

    def replica_forward(batch):
      inputs = {name: batch[name][0] for name in INPUTS}
      return self.model(inputs, training=False)["logits"], batch["feature_index"][0]

    if self._forward is None:
      self._forward = tf.function(lambda batch: strategy.run(replica_forward, args=(batch,)),
                                  input_signature=[dataset.element_spec])
    out = np.zeros((len(features), self.config.max_seq_length, 2), np.float32)
    seen = np.zeros(len(features), np.int32)
    for batch in dataset:
      logits, index = self._forward(batch)
      for lg, ix in zip(strategy.experimental_local_results(logits),
                        strategy.experimental_local_results(index)):
        ix = ix.numpy()
        keep = ix >= 0
        out[ix[keep]] = lg.numpy()[keep]
        np.add.at(seen, ix[keep], 1)
    # Each worker filled its own replicas' features (zeros elsewhere): the sum is the set.
    out = self.runtime.sum_over_workers(out)
    seen = self.runtime.sum_over_workers(seen)
    if not np.all(seen == 1):
      raise RuntimeError(f"prediction covered {int(np.sum(seen > 0))} of {len(features)} "
                         f"features ({int(np.sum(seen > 1))} more than once): the batches were "
                         "not split across workers as planned")
    return out

  def predict(self, examples: list, features: data.SquadFeatures, *, do_lower_case: bool,
              version_2_with_negative: bool, dataset: Optional[list] = None,
              init_checkpoint: Optional[str] = None) -> dict:
    """Answers for ``examples`` (features made with their spans); the chief writes
    ``predictions.json``, ``nbest_predictions.json``, for 2.0 ``null_odds.json`` and, when
    ``dataset`` (the file's ``data`` list) has answers, ``eval_results.txt`` with the
    official scores. Returns {"predictions", "nbest", "null_odds", "eval" (None without
    answers), "logits" (``span_logits``)}."""
    cfg = self.config
    if not self._restored:
      self.restore(init_checkpoint)
    logits = self.span_logits(features)
    predictions, nbest, null_odds = data.postprocess(
        examples, features.spans, logits[..., 0], logits[..., 1], n_best_size=cfg.n_best_size,
        max_answer_length=cfg.max_answer_length, do_lower_case=do_lower_case,
        version_2_with_negative=version_2_with_negative,
        null_score_diff_threshold=cfg.null_score_diff_threshold)
    results = None
    if dataset is not None and data.has_answers(dataset):
      results = data.evaluate(dataset, predictions, version_2_with_negative,
                              dict(null_odds) if version_2_with_negative else None)
      results["global_step"] = self.current_step()
    if self.runtime.is_chief:
      tf.io.gfile.makedirs(cfg.output_dir)
      for path in data.write_predictions(cfg.output_dir, predictions, nbest, null_odds,
                                         version_2_with_negative):
        logging.info("wrote %s", path)
      if results is not None:
        logging.info("wrote %s", write_eval_results(cfg.output_dir, results))
    return {"predictions": dict(predictions), "nbest": dict(nbest),
            "null_odds": dict(null_odds), "eval": results, "logits": logits}

