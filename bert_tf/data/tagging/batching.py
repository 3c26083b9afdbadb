"""Tagging batches: micro-batches of windows (planned by the classifier's ``plan_steps``, by
count or token budget) assembled into [K, rows, length] arrays with per-token label weights."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from bert_tf.data.classifier.batching import planned_dataset, round_up
from bert_tf.data.tagging.features import TaggingFeatures

INT_INPUTS = ("input_ids", "input_mask", "segment_ids", "label_ids")


def assemble(features: TaggingFeatures, groups: Sequence[np.ndarray],
             pad_to: Optional[int] = None) -> dict[str, np.ndarray]:
  """Micro-batches (window index arrays) -> [K, rows, width] arrays, zero-padded.

  ``label_weights`` is 1 at each labelled first sub-token and 0 everywhere else (padding rows
  included); ``example_index`` [K, rows] is the window index, -1 for padding rows.
  """
  k = len(groups)
  rows = max(1, max(len(g) for g in groups))
  lengths = features.lengths
  longest = max((int(lengths[g].max()) for g in groups if len(g)), default=1)
  width = pad_to or round_up(longest)
  out = {name: np.zeros((k, rows, width), np.int32) for name in INT_INPUTS}
  weights = np.zeros((k, rows, width), np.float32)
  index = np.full((k, rows), -1, np.int64)
  for j, group in enumerate(groups):
    for r, i in enumerate(group):
      start, end = features.offsets[i], features.offsets[i + 1]
      n = end - start
      labels = features.labels[start:end]
      out["input_ids"][j, r, :n] = features.ids[start:end]
      out["input_mask"][j, r, :n] = 1
      out["label_ids"][j, r, :n] = np.maximum(labels, 0)
      weights[j, r, :n] = labels >= 0
      index[j, r] = i
  return {**out, "label_weights": weights, "example_index": index}


def make_dataset(features: TaggingFeatures, steps: list[list[np.ndarray]],
                 replicas: Sequence[int], accumulation: int, start_step: int = 0,
                 pad_to: Optional[int] = None):
  """tf.data of the plan for some replicas: per step, one element per replica in ``replicas``
  holding its ``accumulation`` micro-batches (shapes vary: one traced step serves all)."""
  import tensorflow as tf
  spec = {name: tf.TensorSpec([accumulation, None, None], tf.int32) for name in INT_INPUTS}
  spec.update(label_weights=tf.TensorSpec([accumulation, None, None], tf.float32),
              example_index=tf.TensorSpec([accumulation, None], tf.int64))

  return planned_dataset(lambda groups, pad: assemble(features, groups, pad), spec, steps,
                         replicas, accumulation, start_step, pad_to)
