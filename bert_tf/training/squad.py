"""SQuAD question answering as a task of the engine: train on span features, predict answers
gathered from every replica and worker, google's output files and the official scores.

The loss of a feature is google's (CE(start) + CE(end)) / 2 over the padded sequence; every
micro-batch divides its summed loss by the number of real features in the whole global step
(``ClassificationTask``'s normaliser, whose bookkeeping this task inherits), so one device, N
replicas and K accumulation micro-batches compute the same update.
"""
from __future__ import annotations

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
from bert_tf.training.classification import ClassificationTask
from bert_tf.training.planned import INPUTS, PlannedTrainer
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


class SquadTrainer(PlannedTrainer):
  """Fine-tunes a span model on SQuAD features and predicts answers.

  Args:
    bert_config: the encoder's config.
    config: ``SquadConfig``.
    optimizer_config: ``OptimizerConfig``; num_train_steps and num_warmup_steps are filled
      in from the plan (epochs x features / batch).
    runtime: ``distribution.Runtime``.
  """

  name, unit = "SQuAD", "features"
  infer_inputs = INPUTS + ("feature_index",)

  def __init__(self, bert_config: BertConfig, config: SquadConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime):
    super().__init__(SquadTask(config), bert_config, config, optimizer_config, runtime)

  def make_dataset(self, features, steps, replicas, k, start, pad_to):
    return data.make_dataset(features, steps, replicas, k, start, pad_to)

  def assemble(self, features, groups, pad_to):
    return data.assemble(features, groups, pad_to)

  def pad_to(self, training: bool) -> int:
    # Padded to max_seq_length as google: the training softmax and the n-best candidates of
    # prediction run over every position, padding included.
    return self.config.max_seq_length

  def span_logits(self, features: data.SquadFeatures) -> np.ndarray:
    """float32 [num_features, max_seq_length, 2] start and end logits, in feature order,
    each feature computed exactly once over all replicas and workers (checked)."""

    def replica_forward(batch):
      inputs = {name: batch[name][0] for name in INPUTS}
      return self.model(inputs, training=False)["logits"], batch["feature_index"][0]

    return self.gather_rows(features, self.config.predict_batch_size, replica_forward,
                            (self.config.max_seq_length, 2))

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

