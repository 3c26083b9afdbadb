"""SQuAD features -> batches: the classifier's step plan and padding (``plan_steps``,
``assemble``), with ``label_ids`` holding [start, end] per row and ``feature_index`` naming
each row's feature (-1 for padding rows)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from bert_tf.data import classifier
from bert_tf.data.squad.features import SquadFeatures


def assemble(features: SquadFeatures, groups: Sequence[np.ndarray],
             pad_to: Optional[int] = None) -> dict[str, np.ndarray]:
  """[K, rows, length] ids, mask and segments; ``label_ids`` int32 [K, rows, 2] (start, end);
  ``label_weights`` float32 [K, rows] (0: padding row); ``feature_index`` int64 [K, rows]."""
  batch = classifier.assemble(features.ids, groups, pad_to)
  labels = np.zeros(batch["label_ids"].shape + (2,), np.int32)
  for j, group in enumerate(groups):
    labels[j, :len(group), 0] = features.start_positions[group]
    labels[j, :len(group), 1] = features.end_positions[group]
  batch["label_ids"] = labels
  batch["feature_index"] = batch.pop("example_index")
  return batch


def make_dataset(features: SquadFeatures, steps: list, replicas: Sequence[int],
                 accumulation: int, start_step: int = 0, pad_to: Optional[int] = None):
  """tf.data of the plan for some replicas, as ``classifier.make_dataset``: per step one
  element per replica in ``replicas`` with its ``accumulation`` micro-batches."""
  import tensorflow as tf
  spec = {name: tf.TensorSpec([accumulation, None, None], tf.int32)
          for name in ("input_ids", "input_mask", "segment_ids")}
  spec.update(label_ids=tf.TensorSpec([accumulation, None, 2], tf.int32),
              label_weights=tf.TensorSpec([accumulation, None], tf.float32),
              feature_index=tf.TensorSpec([accumulation, None], tf.int64))

  return classifier.planned_dataset(lambda groups, pad: assemble(features, groups, pad), spec, steps,
                         replicas, accumulation, start_step, pad_to)
