"""Distillation data: the training examples (plus unlabelled transfer examples) tokenised for the
student and, when the teacher runs on the fly, for the teacher with its own vocabulary and
casing; or the teacher's precomputed logits from a file, checked against the examples.

Batches are the classifier's (``assemble``) plus ``gold_weights`` (1 for a labelled example,
0 for transfer and padding rows) and either ``teacher_logits`` [K, rows, L] or the teacher's
own ``teacher_input_ids`` / ``teacher_input_mask`` / ``teacher_segment_ids`` [K, rows, T].
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
from typing import Callable, Optional, Sequence

import numpy as np

from bert_tf.data.classifier.batching import assemble, planned_dataset
from bert_tf.data.classifier.features import Features, featurize
from bert_tf.data.classifier.reading import Example, ReadStats
from bert_tf.data.classifier.tasks import Task

TEACHER_INPUTS = ("teacher_input_ids", "teacher_input_mask", "teacher_segment_ids")


@dataclasses.dataclass
class DistillFeatures:
  """The student's features of every example, which of them are labelled, and what the
  teacher needs: its own tokens (on the fly) or its logits (precomputed), same order."""
  student: Features
  labelled: np.ndarray                       # bool [examples]
  fingerprint: str                           # of the example texts, in order
  teacher: Optional[Features] = None         # the teacher's tokens
  teacher_logits: Optional[np.ndarray] = None  # float32 [examples, num_labels]

  def __len__(self):
    return len(self.student)

  @property
  def lengths(self) -> np.ndarray:
    return self.student.lengths

  @property
  def labels(self) -> np.ndarray:
    return self.student.labels


def fingerprint(examples: Sequence[Example]) -> str:
  """sha256 of the examples' texts in order: a logits file belongs to these examples."""
  h = hashlib.sha256()
  for e in examples:
    h.update(f"{e.text_a}\t{e.text_b}\n".encode("utf-8"))
  return h.hexdigest()[:16]


def _texts_only(task: Task) -> Task:
  """A copy of ``task`` whose files are read without their label column: transfer rows have
  no gold label, so a blank, placeholder or missing label column is no malformed row."""
  texts = copy.copy(task)
  read_file = task._read_file  # pylint: disable=protected-access

  def read_texts(data_dir, spec, *args, **kwargs):
    return read_file(data_dir, dataclasses.replace(spec, label=None), *args, **kwargs)

  texts._read_file = read_texts  # pylint: disable=protected-access
  return texts


def read_examples(task: Task, data_dir: str, transfer_dir: Optional[str] = None,
                  skip_malformed: bool = False, log: Callable = print) -> tuple[list, int]:
  """The training split's examples, then ``transfer_dir``'s training-format examples, read
  without their labels (a label column may be blank, hold anything or be absent). Returns
  (examples, number of labelled ones)."""
  stats = ReadStats()
  train = [e for examples in task.examples(data_dir, "train", skip_malformed, stats).values()
           for e in examples]
  transfer = []
  if transfer_dir:
    transfer = [e for examples in _texts_only(task).examples(
        transfer_dir, "train", skip_malformed, stats).values() for e in examples]
    log(f"distillation: {len(train)} labelled + {len(transfer)} transfer examples "
        f"(from {transfer_dir}, labels ignored)")
  if stats.skipped:
    log(f"train: skipped {stats.skipped} malformed row(s) of {stats.rows} ({stats.reasons})")
  return train + transfer, len(train)


def distill_features(examples: Sequence[Example], num_labelled: int, task: Task, tokenizer,
                     max_seq_length: int, teacher_tokenizer=None) -> DistillFeatures:
  """Each example tokenised for the student and (``teacher_tokenizer``) for the teacher."""
  student = featurize(examples, tokenizer, max_seq_length, task)
  labelled = np.arange(len(examples)) < num_labelled
  teacher = (featurize(examples, teacher_tokenizer, max_seq_length, task)
             if teacher_tokenizer is not None else None)
  return DistillFeatures(student, labelled, fingerprint(examples), teacher=teacher)


def write_teacher_logits(path: str, logits: np.ndarray, features: DistillFeatures,
                         task: Task) -> None:
  import tensorflow as tf
  buffer = io.BytesIO()
  np.savez(buffer, logits=logits.astype(np.float32), fingerprint=features.fingerprint,
           task=task.name, num_labelled=int(features.labelled.sum()))
  with tf.io.gfile.GFile(path + ".tmp", "wb") as f:
    f.write(buffer.getvalue())
  tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def read_teacher_logits(path: str, features: DistillFeatures, task: Task) -> np.ndarray:
  """The file's logits, refused (naming the file and the counts) unless written for exactly
  these examples of this task."""
  import tensorflow as tf
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"--teacher_logits_file={path}: no such file")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = np.load(io.BytesIO(f.read()))
    logits, fp, name = data["logits"], str(data["fingerprint"]), str(data["task"])
  if name != task.name or logits.ndim != 2 or logits.shape[1] != task.num_labels:
    raise ValueError(f"--teacher_logits_file={path}: logits of task {name} with shape "
                     f"{logits.shape}; expected task {task.name} with {task.num_labels} "
                     "label(s) per example")
  if len(logits) != len(features) or fp != features.fingerprint:
    raise ValueError(f"--teacher_logits_file={path}: {len(logits)} examples (fingerprint "
                     f"{fp}), but the training data has {len(features)} (fingerprint "
                     f"{features.fingerprint}): write it again with --write_teacher_logits "
                     "on the same --data_dir / --transfer_data_dir")
  return logits


def assemble_distill(features: DistillFeatures, groups: Sequence[np.ndarray],
                     pad_to: Optional[int] = None) -> dict[str, np.ndarray]:
  """``assemble`` of the student's features plus gold weights and the teacher's part."""
  out = assemble(features.student, groups, pad_to)
  k, rows = out["label_weights"].shape
  gold = np.zeros((k, rows), np.float32)
  for j, group in enumerate(groups):
    gold[j, :len(group)] = features.labelled[group]
  out["gold_weights"] = gold
  if features.teacher_logits is not None:
    logits = np.zeros((k, rows, features.teacher_logits.shape[1]), np.float32)
    for j, group in enumerate(groups):
      logits[j, :len(group)] = features.teacher_logits[group]
    out["teacher_logits"] = logits
  if features.teacher is not None:
    teacher = assemble(features.teacher, groups, None)
    out.update({f"teacher_{name}": teacher[name]
                for name in ("input_ids", "input_mask", "segment_ids")})
  return out


def make_distill_dataset(features: DistillFeatures, steps, replicas: Sequence[int],
                         accumulation: int, start_step: int = 0, pad_to: Optional[int] = None):
  """``make_dataset`` for distillation batches (see the module docstring)."""
  import tensorflow as tf
  regression = features.labels.dtype == np.float32
  ints = tf.TensorSpec([accumulation, None, None], tf.int32)
  rows = tf.TensorSpec([accumulation, None], tf.float32)
  spec = {name: ints for name in ("input_ids", "input_mask", "segment_ids")}
  spec.update(label_ids=tf.TensorSpec([accumulation, None],
                                      tf.float32 if regression else tf.int32),
              label_weights=rows, gold_weights=rows,
              example_index=tf.TensorSpec([accumulation, None], tf.int64))
  if features.teacher_logits is not None:
    spec["teacher_logits"] = tf.TensorSpec(
        [accumulation, None, features.teacher_logits.shape[1]], tf.float32)
  if features.teacher is not None:
    spec.update({name: ints for name in TEACHER_INPUTS})
  return planned_dataset(lambda groups, pad: assemble_distill(features, groups, pad), spec,
                         steps, replicas, accumulation, start_step, pad_to)
