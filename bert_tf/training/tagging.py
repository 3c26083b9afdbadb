"""Token classification (CoNLL-2003 NER, any BIO tagging) as a task of the engine: train,
evaluate (entity precision / recall / F1 as conlleval, token accuracy) and predict, with
``eval_results.txt`` and a CoNLL-format predictions file.

The loss is the cross-entropy of each labelled position (the first sub-token of a word),
summed and divided by the number of labelled tokens in the whole global step: one device, N
replicas and K accumulation micro-batches compute the same update. Training batches are the
classifier's plan (fixed count or token budget), through ``PlannedTrainer`` as every
fine-tuning trainer's.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig, FinetuneConfig, OptimizerConfig
from bert_tf.data import tagging as data
from bert_tf.distribution import Runtime
from bert_tf.modeling import BertEncoder
from bert_tf.modeling.tagging import BertTagger
from bert_tf.training.classification import ClassificationTask
from bert_tf.training.planned import INPUTS, PlannedTrainer, check_coverage
from bert_tf.training.reporting import write_eval_results

@dataclasses.dataclass(frozen=True)
class TaggingSpec:
  """What the trainer needs to know of the task: its name and label set ("O" first)."""
  name: str
  labels: tuple

  @property
  def num_labels(self) -> int:
    return len(self.labels)


class TaggingTask(ClassificationTask):
  """Per-token cross-entropy over labelled positions, normalised by the global count (the
  classification task's normaliser and step metrics, with per-token ``label_weights``)."""

  num_metrics = 6  # loss, windows, labelled tokens, real tokens, padded tokens, gradient norm

  def __init__(self, spec: TaggingSpec, config: FinetuneConfig):
    super().__init__(spec, config)
    self.spec = spec

  def build_model(self, bert_config: BertConfig, config: FinetuneConfig) -> BertTagger:
    return BertTagger(BertEncoder(bert_config, recompute=config.recompute, seed=config.seed),
                      self.spec.num_labels, dropout_rate=config.classifier_dropout)

  def init_from(self, path: str, model) -> str:
    """The encoder of a google checkpoint, our pretraining output, an encoder export or one of
    our fine-tuned models (the tagging head starts fresh)."""
    return checkpoints.restore_weights(path, model.encoder)

  def micro_batch_loss(self, model, batch, k, label_total, seed):
    features = {name: batch[name][k] for name in INPUTS}
    weights = batch["label_weights"][k]                        # [B, S]
    logits = model(features, training=True, dropout_seed=seed)["logits"]  # [B, S, L] float32
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(batch["label_ids"][k], logits)
    loss = tf.reduce_sum(per_token * weights) / label_total
    mask = tf.cast(features["input_mask"], tf.float32)
    windows = tf.reduce_sum(tf.cast(batch["example_index"][k] >= 0, tf.float32))
    padded_tokens = tf.cast(tf.size(mask), tf.float32) * tf.cast(windows > 0, tf.float32)
    return loss, tf.stack([loss, windows, tf.reduce_sum(weights), tf.reduce_sum(mask),
                           padded_tokens])

  def log_values(self, totals, num_steps, step):
    metrics = {"loss": float(totals[0] / num_steps), "grad_norm": float(totals[5] / num_steps),
               "epoch": round(step / self.num_train_steps * self.config.num_train_epochs, 4),
               "labelled_tokens_per_step": float(totals[2] / num_steps),
               "padding_efficiency": float(totals[3] / max(totals[4], 1.0))}
    return metrics, float(totals[1]), float(totals[3])


class TaggerTrainer(PlannedTrainer):
  """Fine-tunes, evaluates and predicts a tagger on the engine.

  Args:
    bert_config: the encoder's config.
    config: ``FinetuneConfig`` (``classifier_dropout``: dropout before the tagging layer).
    optimizer_config: ``OptimizerConfig``; steps filled in from the plan.
    runtime: ``distribution.Runtime``.
    spec: ``TaggingSpec`` (task name and label set).

  ``evaluate`` and ``predict`` take the features and their sentences.
  """

  unit = "windows"

  def __init__(self, bert_config: BertConfig, config: FinetuneConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime, spec: TaggingSpec):
    super().__init__(TaggingTask(spec, config), bert_config, config, optimizer_config, runtime)
    self.task_spec = spec
    self.name = spec.name

  def make_dataset(self, features, steps, replicas, k, start, pad_to):
    return data.make_dataset(features, steps, replicas, k, start, pad_to)

  def assemble(self, features, groups, pad_to):
    return data.assemble(features, groups, pad_to)

  # --- inference ---------------------------------------------------------------------------

  def predict_words(self, features: data.TaggingFeatures, batch_size: int) -> np.ndarray:
    """int32 [num_words]: the predicted label id of every word of the set (0, "O", for words
    that tokenise to nothing), gathered from every replica and worker and checked to cover
    every window and every word with a position exactly once."""
    predicted = np.zeros(features.num_words, np.int32)
    seen = np.zeros(features.num_words, np.int32)
    windows = np.zeros(len(features), np.int32)

    def replica_forward(batch):
      inputs = {name: batch[name][0] for name in INPUTS}
      logits = self.model(inputs, training=False)["logits"]
      return tf.argmax(logits, axis=-1, output_type=tf.int32), batch["example_index"][0]

    def collect(rows, index):
      for row, window in zip(rows, index):
        if window >= 0:
          positions, word_ids = features.positions(window)
          predicted[word_ids] = row[positions]
          np.add.at(seen, word_ids, 1)
          windows[window] += 1

    self.infer(features, batch_size, replica_forward, collect)
    # Each worker filled its own replicas' windows (zeros elsewhere): the sum is the whole set.
    predicted, seen, windows = (self.runtime.sum_over_workers(a)
                                for a in (predicted, seen, windows))
    expected = np.ones(features.num_words, np.int32)
    expected[features.vanished] = 0
    check_coverage(windows, np.ones(len(features), np.int32), "windows")
    check_coverage(seen, expected, "words")
    return predicted

  def _tags(self, features, sentences: Sequence[data.Sentence], batch_size) -> list[list[str]]:
    ids = self.predict_words(features, batch_size)
    labels, offsets = self.task_spec.labels, features.word_offsets
    return [[labels[i] for i in ids[offsets[s]:offsets[s + 1]]] for s in range(len(sentences))]

  def _write(self, name: str, lines: list[str]) -> Optional[str]:
    if not self.runtime.is_chief:
      return None
    path = os.path.join(self.config.output_dir, name)
    with tf.io.gfile.GFile(path, "w") as f:
      f.write("".join(lines))
    return path

  def evaluate(self, features: data.TaggingFeatures, sentences: Sequence[data.Sentence],
               split: str = "dev", init_checkpoint: Optional[str] = None) -> dict:
    """Entity precision / recall / F1 (micro and per type) and token accuracy on a labelled
    set; writes ``eval_results.txt`` (``eval_results_<split>.txt`` for another split) and
    ``<split>_predictions.txt`` (word gold predicted, CoNLL format)."""
    if not self._restored:
      self.restore(init_checkpoint)
    predicted = self._tags(features, sentences, self.config.eval_batch_size)
    scores = data.entity_scores([s.tags for s in sentences], predicted)
    results = {f"eval_{key}": scores[key] for key in ("precision", "recall", "f1", "accuracy")}
    for kind, (p, r, f1, count) in scores["per_type"].items():
      results.update({f"eval_precision_{kind}": p, f"eval_recall_{kind}": r,
                      f"eval_f1_{kind}": f1, f"eval_count_{kind}": count})
    results.update(eval_sentences=len(sentences), eval_words_without_tokens=len(
        features.vanished), global_step=self.current_step())
    if self.runtime.is_chief:
      write_eval_results(self.config.output_dir, results,
                         "eval_results.txt" if split == "dev" else f"eval_results_{split}.txt")
    self._write(f"{split}_predictions.txt", data.conll_lines(sentences, predicted))
    return results

  def predict(self, features: data.TaggingFeatures, sentences: Sequence[data.Sentence],
              init_checkpoint: Optional[str] = None) -> Optional[str]:
    """``test_predictions.txt``: word, the file's tag and the predicted tag, CoNLL format.
    Returns its path (None off the chief)."""
    if not self._restored:
      self.restore(init_checkpoint)
    predicted = self._tags(features, sentences, self.config.predict_batch_size)
    return self._write("test_predictions.txt", data.conll_lines(sentences, predicted))
