"""Knowledge distillation of a fine-tuned teacher into a (small) student classifier, as a task of
the engine (Hinton et al. 2015; Turc et al. 2019, "Well-Read Students Learn Better").

Per example: ``alpha * CE(gold) + (1 - alpha) * T^2 * CE(softmax(t / T), softmax(s / T))``
(the soft term is KL(teacher || student) at temperature T up to a constant; T^2 keeps its
gradients' size as T changes); regression (STS-B): ``alpha * (s - y)^2 + (1 - alpha) *
(s - t)^2``. Transfer examples (no gold label) carry the soft term alone, at full weight. The
sum is divided by the number of real examples in the whole global step, as the classifier's
loss: one device, N replicas and K accumulation micro-batches compute the same update.

The teacher is either precomputed (``teacher_logits`` in the batch, from a file written by
``compute_teacher_logits``) or a frozen ``BertClassifier`` run in the step, in inference mode
(no dropout) under the student's precision policy, on its own tokens of each example. It runs
in ``normalisers``, before the student's gradient tape opens, so none of its activations are
kept for the backward pass and it gets no gradient.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Optional

import numpy as np
import tensorflow as tf

from bert_tf import checkpoint_checks, checkpoints
from bert_tf.configs import BertConfig, FinetuneConfig, OptimizerConfig
from bert_tf.configs.distillation import DistillConfig
from bert_tf.data import classifier as data
from bert_tf.data.classifier import distill as distill_data
from bert_tf.distribution import Runtime
from bert_tf.interop import hf
from bert_tf.modeling import BertClassifier, BertEncoder
from bert_tf.training.classification import (ClassificationTask, ClassifierTrainer,
                                              hf_tensor_names)
from bert_tf.training.planned import INPUTS


def soft_cross_entropy(student_logits, teacher_logits, temperature: float) -> tf.Tensor:
  """float32 [B]: T^2 * CE(softmax(teacher / T), softmax(student / T))."""
  targets = tf.nn.softmax(tf.cast(teacher_logits, tf.float32) / temperature)
  ce = tf.nn.softmax_cross_entropy_with_logits(
      labels=targets, logits=tf.cast(student_logits, tf.float32) / temperature)
  return ce * (temperature * temperature)


_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"  # the suffix of a variable's key in our checkpoints


def _model_weights(prefix: str) -> dict[str, list]:
  """{key: shape} of the model weights (not optimizer slots or counters) of our checkpoint."""
  return {k[:-len(_VALUE)]: shape for k, shape in tf.train.list_variables(prefix)
          if k.startswith("model/") and k.endswith(_VALUE) and ".OPTIMIZER_SLOT" not in k}


def _differences(prefix: str, model: BertClassifier) -> str:
  """Every missing, unexpected and mis-shaped weight of our checkpoint ``prefix`` against
  ``model``, whose keys and shapes come from writing a checkpoint of it (on errors only)."""
  with tempfile.TemporaryDirectory() as tmp:
    wanted = _model_weights(tf.train.Checkpoint(model=model).write(os.path.join(tmp, "t")))
  found = _model_weights(prefix)
  shaped = [f"{k}: checkpoint {found[k]} vs teacher {wanted[k]}"
            for k in sorted(set(found) & set(wanted)) if list(found[k]) != list(wanted[k])]
  listed = lambda names: f"{len(names)} {names[:24]}{' ...' if len(names) > 24 else ''}"
  return (f"\n  missing from checkpoint: {listed(sorted(set(wanted) - set(found)))}\n  "
          f"unexpected in checkpoint: {listed(sorted(set(found) - set(wanted)))}\n  "
          f"mis-shaped: {listed(shaped)}")


def load_teacher(path: str, model: BertClassifier) -> str:
  """A fine-tuned classifier's weights, head included, all of them: google TF1
  (``output_weights``), one of our classifier runs (``model/classifier/``) or a Hugging Face
  ``BertForSequenceClassification`` folder (``classifier.weight``). Anything without a
  classifier head is refused (a teacher with a random head teaches noise), and so is a
  checkpoint of another shape than ``--teacher_bert_config_file``, deeper ones included: one
  error names the checkpoint, the teacher's config and every missing, unexpected and
  mis-shaped weight. Returns the kind loaded."""
  config = model.encoder.bert_config
  where = (f"--teacher_init_checkpoint={path} does not match --teacher_bert_config_file "
           f"({', '.join(f'{k}={getattr(config, k)}' for k in checkpoint_checks.SHAPE_FIELDS)})"
           f" with the task's {model.num_labels} label(s)")
  if hf.weights_file(path):
    names, head = hf_tensor_names(path), "classifier.weight"
  else:
    prefix = checkpoints.checkpoint_prefix(path)
    names = {name for name, _ in tf.train.list_variables(prefix)}
    head = "output_weights" if "output_weights" in names else "model/classifier/"
  if not any(name.startswith(head) for name in names):
    raise checkpoints.CheckpointMismatchError(
        f"--teacher_init_checkpoint={path}: not a fine-tuned classifier (no output_weights, "
        f"model/classifier/ or classifier.weight; first names: {sorted(names)[:5]}): distil "
        "from a teacher fine-tuned on this task (google TF1, a run_classifier.py --output_dir "
        "or a Hugging Face BertForSequenceClassification folder)")
  try:
    if head != "model/classifier/":  # google and HF: all or nothing, every problem listed
      return checkpoints.restore_weights(path, model)
    checkpoint_checks.read_all_used(tf.train.Checkpoint(model=model), prefix, model,
                                    within=("model/",))
    return "classifier"
  except checkpoints.CheckpointMismatchError as e:
    details = "" if head != "model/classifier/" else _differences(prefix, model)
    raise checkpoints.CheckpointMismatchError(f"{where}:{details}\n  {e}") from None


def build_teacher(teacher_config: BertConfig, num_labels: int, checkpoint: str
                  ) -> BertClassifier:
  """The frozen teacher: built under the current policy and strategy scope, weights loaded."""
  teacher = BertClassifier(BertEncoder(teacher_config), num_labels, name="teacher")
  load_teacher(checkpoint, teacher)
  teacher.trainable = False
  return teacher


class DistillationTask(ClassificationTask):
  """The classification task with a teacher's soft labels (see the module docstring)."""

  num_metrics = 7  # loss, examples, real tokens, padded tokens, gold loss, soft loss, grad norm

  def __init__(self, task: data.Task, config: FinetuneConfig, distill: DistillConfig):
    super().__init__(task, config)
    self.distill = distill
    self.teacher: Optional[BertClassifier] = None
    # alpha = 1 without transfer data is plain fine-tuning: no soft term, no teacher run.
    self.uses_teacher = distill.alpha < 1 or distill.transfer_data_dir is not None

  def build_model(self, bert_config: BertConfig, config: FinetuneConfig) -> BertClassifier:
    student = super().build_model(bert_config, config)
    d = self.distill
    if self.uses_teacher and d.on_the_fly:
      if d.teacher_config is None or d.teacher_checkpoint is None:
        raise ValueError("an on-the-fly teacher needs --teacher_bert_config_file and "
                         "--teacher_init_checkpoint (or pass --teacher_logits_file)")
      self.teacher = build_teacher(d.teacher_config, self.task.num_labels, d.teacher_checkpoint)
    return student

  def teacher_logits(self, batch) -> Optional[tf.Tensor]:
    """float32 [K, rows, num_labels]: precomputed, or the frozen teacher's forward passes."""
    if not self.uses_teacher:
      return None
    if "teacher_logits" in batch:
      return batch["teacher_logits"]
    if self.teacher is None:
      raise ValueError("distillation batches carry neither teacher logits nor teacher inputs")

    def forward(inputs):
      ids, mask, segments = inputs
      return self.teacher({"input_ids": ids, "input_mask": mask, "segment_ids": segments},
                          training=False)["logits"]

    logits = tf.map_fn(forward, tuple(batch[name] for name in distill_data.TEACHER_INPUTS),
                       fn_output_signature=tf.TensorSpec([None, self.task.num_labels],
                                                         tf.float32))
    return tf.stop_gradient(logits)

  def normalisers(self, batch, all_reduce_sum):
    # Before the student's tape: the teacher runs here, forward only.
    return super().normalisers(batch, all_reduce_sum), self.teacher_logits(batch)

  def _soft_loss(self, logits, teacher_logits):
    if self.task.is_regression:
      return tf.square(logits[:, 0] - teacher_logits[:, 0])
    return soft_cross_entropy(logits, teacher_logits, self.distill.temperature)

  def micro_batch_loss(self, model, batch, k, normalisers, seed):
    total, teacher = normalisers
    alpha = self.distill.alpha
    features = {name: batch[name][k] for name in INPUTS}
    weights, gold_weights = batch["label_weights"][k], batch["gold_weights"][k]
    logits = model(features, training=True, dropout_seed=seed)["logits"]
    if alpha != 1.0:
      gold_weights = gold_weights * alpha
    gold = tf.reduce_sum(self._per_example_loss(logits, batch["label_ids"][k]) * gold_weights
                         ) / total
    soft = tf.zeros([])
    loss = gold
    if self.uses_teacher:
      # labelled rows 1 - alpha, transfer rows 1, padding rows 0
      soft = tf.reduce_sum(self._soft_loss(logits, teacher[k]) * (weights - gold_weights)
                           ) / total
      loss = gold + soft
    mask = tf.cast(features["input_mask"], tf.float32)
    padded_tokens = tf.cast(tf.size(mask), tf.float32) * tf.cast(tf.reduce_sum(weights) > 0,
                                                                tf.float32)
    return loss, tf.stack([loss, tf.reduce_sum(weights), tf.reduce_sum(mask), padded_tokens,
                           gold, soft])

  def step_metrics(self, sums, normalisers, grad_norm, skipped):
    return super().step_metrics(sums, normalisers[0], grad_norm, skipped)

  def log_values(self, totals, num_steps, step):
    metrics, examples, tokens = super().log_values(
        np.concatenate([totals[:4], totals[6:]]), num_steps, step)
    metrics.update(gold_loss=float(totals[4] / num_steps),
                   soft_loss=float(totals[5] / num_steps))
    return metrics, examples, tokens


class DistillationTrainer(ClassifierTrainer):
  """A ``ClassifierTrainer`` whose training set is ``DistillFeatures`` and whose loss mixes
  gold and teacher labels. Evaluation and prediction are the classifier's (the student)."""

  def __init__(self, bert_config: BertConfig, config: FinetuneConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime, task: data.Task,
               distill: DistillConfig):
    self.distill = distill
    super().__init__(bert_config, config, optimizer_config, runtime, task)

  def make_task(self, task: data.Task, config: FinetuneConfig) -> DistillationTask:
    return DistillationTask(task, config, self.distill)

  def make_dataset(self, features, steps, replicas, k, start, pad_to):
    if isinstance(features, distill_data.DistillFeatures):
      return distill_data.make_distill_dataset(features, steps, replicas, k, start, pad_to)
    return super().make_dataset(features, steps, replicas, k, start, pad_to)


def compute_teacher_logits(distill: DistillConfig, config: FinetuneConfig, runtime: Runtime,
                           task: data.Task, features: distill_data.DistillFeatures
                           ) -> np.ndarray:
  """float32 [examples, num_labels]: the teacher (inference mode, ``config``'s precision) on
  each example's teacher tokens, spread over every replica and worker."""
  if distill.teacher_config is None or distill.teacher_checkpoint is None:
    raise ValueError("--write_teacher_logits needs --teacher_bert_config_file and "
                     "--teacher_init_checkpoint")
  config = dataclasses.replace(config, classifier_dropout=0.0)
  trainer = ClassifierTrainer(distill.teacher_config, config, OptimizerConfig(), runtime, task)
  load_teacher(distill.teacher_checkpoint, trainer.model)
  trainer._restored = True  # pylint: disable=protected-access  (never the student's output_dir)
  tokens = features.teacher if features.teacher is not None else features.student
  return trainer.logits(tokens, config.predict_batch_size)
