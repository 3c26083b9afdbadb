"""Batching: examples -> micro-batches (by count or by token budget) -> optimizer steps
(``plan_steps``), each micro-batch padded into arrays (``assemble``), the plan as tf.data
(``make_dataset``); for inference, a step's per-replica micro-batches in one array
(``stack_parts``)."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from bert_tf.data.classifier.features import Features

PAD_MULTIPLE = 8  # padded lengths are multiples of 8 (tensor-core friendly, fewer shapes)


def round_up(n, multiple=PAD_MULTIPLE):
  """``n`` rounded up to a multiple of ``multiple``."""
  return -(-n // multiple) * multiple


def micro_batches(lengths: np.ndarray, batch_size: Optional[int] = None,
                  token_budget: Optional[int] = None, rng: Optional[np.random.Generator] = None,
                  pool_batches: int = 100) -> list[np.ndarray]:
  """Splits example indexes into micro-batches.

  By count (``batch_size``): consecutive runs of the (shuffled if ``rng``) order, as google.
  By tokens (``token_budget``): examples are bucketed by length (sorted within pools of about
  ``pool_batches`` batches of the shuffled order, or all of them when not shuffling) and a
  batch grows while rows x padded length stays within the budget, so short examples are not
  padded to max_seq_length. With ``rng`` the batch order is shuffled too.
  """
  n = len(lengths)
  order = rng.permutation(n) if rng is not None else np.arange(n)
  if token_budget is None:
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]
  padded = np.array([round_up(int(x)) for x in lengths]) if n else np.zeros(0, int)
  if rng is not None:
    pool = max(1, pool_batches * token_budget // max(1, int(padded.mean()) if n else 1))
  else:
    pool = max(n, 1)
  batches = []
  for start in range(0, n, pool):
    chunk = order[start:start + pool]
    chunk = chunk[np.argsort(padded[chunk], kind="stable")]
    current, width = [], 0
    for i in chunk:
      w = max(width, padded[i])
      if current and (len(current) + 1) * w > token_budget:
        batches.append(np.array(current))
        current, w = [], padded[i]
      current.append(i)
      width = w
    if current:
      batches.append(np.array(current))
  if rng is not None:
    batches = [batches[i] for i in rng.permutation(len(batches))]
  return batches


def plan_steps(lengths: np.ndarray, parts: int, *, batch_size: Optional[int] = None,
               token_budget: Optional[int] = None, seed: Optional[int] = None,
               epochs: float = 1.0) -> list[list[np.ndarray]]:
  """Optimizer steps, each a list of ``parts`` (= replicas x accumulation) micro-batches.

  ``batch_size``/``token_budget`` are per optimizer step (global); each micro-batch gets a
  1/parts share. With ``seed``, epoch e is shuffled with seed (seed, e): deterministic, so a
  resumed run rebuilds the same plan and skips the steps already done. ``epochs`` may be
  fractional (google's num_train_epochs=3.0): the last epoch is cut to its share of steps.
  The last step of an epoch may hold empty micro-batches (they weigh nothing).
  """
  micro_size = None if batch_size is None else max(1, batch_size // parts)
  micro_budget = None if token_budget is None else token_budget // parts
  steps = []
  for epoch in range(max(1, math.ceil(epochs))):
    rng = None if seed is None else np.random.default_rng([seed, epoch])
    batches = micro_batches(lengths, micro_size, micro_budget, rng)
    empty = np.zeros(0, np.int64)
    epoch_steps = [batches[i:i + parts] + [empty] * (parts - len(batches[i:i + parts]))
                   for i in range(0, len(batches), parts)]
    if epoch + 1 > epochs:  # fractional last epoch
      epoch_steps = epoch_steps[:int(round(len(epoch_steps) * (epochs - epoch)))]
    steps.extend(epoch_steps)
  return steps


def assemble(features: Features, groups: Sequence[np.ndarray], pad_to: Optional[int] = None
             ) -> dict[str, np.ndarray]:
  """Stacks micro-batches (index arrays) into [K, rows, length] arrays, zero-padded.

  Rows that are padding have ``label_weights`` 0 and ``example_index`` -1. ``pad_to``: pad
  every sequence to this length (google's fixed-length padding); else to the longest in the
  group, rounded up to a multiple of 8.
  """
  k = len(groups)
  rows = max(1, max(len(g) for g in groups))
  lengths = features.lengths
  longest = max((int(lengths[g].max()) for g in groups if len(g)), default=1)
  width = pad_to or round_up(longest)
  ids = np.zeros((k, rows, width), np.int32)
  mask = np.zeros_like(ids)
  segments = np.zeros_like(ids)
  labels = np.zeros((k, rows), features.labels.dtype)
  weights = np.zeros((k, rows), np.float32)
  index = np.full((k, rows), -1, np.int64)
  for j, group in enumerate(groups):
    for r, i in enumerate(group):
      start, end = features.offsets[i], features.offsets[i + 1]
      n = end - start
      ids[j, r, :n] = features.ids[start:end]
      mask[j, r, :n] = 1
      segments[j, r, features.first_lengths[i]:n] = 1
    labels[j, :len(group)] = features.labels[group]
    weights[j, :len(group)] = 1.0
    index[j, :len(group)] = group
  if features.labels.dtype == np.float32:
    labels = np.nan_to_num(labels)
  else:
    labels = np.maximum(labels, 0)  # unlabelled (-1) rows: any valid id, their loss is unused
  return {"input_ids": ids, "input_mask": mask, "segment_ids": segments, "label_ids": labels,
          "label_weights": weights, "example_index": index}


def stack_parts(parts: Sequence[dict[str, np.ndarray]]
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """Several replicas' single micro-batches (an ``assemble`` of one group each, any task's:
  [1, rows, ...] arrays, each its own rows and length) as one array per name, [parts, most
  rows, ...longest] zero-filled, and ``sizes`` [parts, 2] int32: each part's (rows, length)
  of ``input_ids``, so ``stacked[name][p:p + 1, :rows, :length]`` ([p:p + 1, :rows] for
  [rows] arrays) is part p again, shape and values. Feature indexes (``*_index``) fill with -1
  (padding rows) like ``assemble``."""
  stacked = {}
  for name, first in parts[0].items():
    shape = (len(parts), *np.max([part[name].shape[1:] for part in parts], axis=0))
    stacked[name] = np.full(shape, -1 if name.endswith("_index") else 0, first.dtype)
    for p, part in enumerate(parts):
      stacked[name][(p, *[slice(0, n) for n in part[name].shape[1:]])] = part[name][0]
  sizes = np.array([part["input_ids"].shape[1:] for part in parts], np.int32)
  return stacked, sizes


def planned_dataset(assemble_fn, spec: dict, steps: list[list[np.ndarray]],
                    replicas: Sequence[int], accumulation: int, start_step: int = 0,
                    pad_to: Optional[int] = None):
  """tf.data of a step plan for some replicas: per step, one element per replica in
  ``replicas``, ``assemble_fn(groups, pad_to)`` of that replica's ``accumulation``
  micro-batches, typed by ``spec``. Every fine-tuning task's batches come through here."""
  import tensorflow as tf

  def generate():
    for step in steps[start_step:]:
      for r in replicas:
        yield assemble_fn(step[r * accumulation:(r + 1) * accumulation], pad_to)

  return tf.data.Dataset.from_generator(generate, output_signature=spec)


def make_dataset(features: Features, steps: list[list[np.ndarray]], replicas: Sequence[int],
                 accumulation: int, start_step: int = 0, pad_to: Optional[int] = None):
  """tf.data of the plan for some replicas: per step, one element per replica in ``replicas``,
  each holding that replica's ``accumulation`` micro-batches as [K, rows, length] arrays.

  Shapes vary from element to element (the spec has None dimensions), so one traced step
  serves every batch shape.
  """
  import tensorflow as tf
  label_dtype = tf.float32 if features.labels.dtype == np.float32 else tf.int32
  spec = {name: tf.TensorSpec([accumulation, None, None], tf.int32)
          for name in ("input_ids", "input_mask", "segment_ids")}
  spec.update(label_ids=tf.TensorSpec([accumulation, None], label_dtype),
              label_weights=tf.TensorSpec([accumulation, None], tf.float32),
              example_index=tf.TensorSpec([accumulation, None], tf.int64))
  return planned_dataset(lambda groups, pad: assemble(features, groups, pad), spec, steps,
                         replicas, accumulation, start_step, pad_to)
