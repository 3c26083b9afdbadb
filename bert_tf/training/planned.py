"""What every fine-tuning trainer shares: in-memory features, a step plan (a number of examples
or a token budget per step, length-bucketed: ``bert_tf.data.classifier.plan_steps``), training
for ``num_train_epochs`` on the engine, and inference spread over every replica and worker and
gathered back in feature order, each feature computed exactly once (checked).

A trainer (classification, distillation, SQuAD, tagging) supplies its task, its
``make_dataset`` (training's plan as tf.data), its ``assemble`` (how micro-batches of feature
indexes become arrays, for inference), which of those arrays inference's forward needs
(``infer_inputs``) and what it does with the gathered outputs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from bert_tf.configs import BertConfig, FinetuneConfig, OptimizerConfig
from bert_tf.data.classifier import plan_steps, stack_parts
from bert_tf.distribution import Runtime
from bert_tf.training.engine import Engine, Task

INPUTS = ("input_ids", "input_mask", "segment_ids")


class PlannedTrainer(Engine):
  """The engine, fed from planned in-memory features.

  Args:
    task: the ``Task``.
    bert_config, config (a ``FinetuneConfig``), runtime: as for ``Engine``.
    optimizer_config: ``OptimizerConfig``; its num_train_steps and num_warmup_steps are
      filled in from the plan (epochs x examples / batch, warm-up proportion).
  """

  name = "fine-tuning"   # for the log
  unit = "examples"      # what a planned row is, for the log
  # What inference's forward is given of an assembled micro-batch: the model inputs and the
  # row's feature index (not the labels). Each is [rows, length] or [rows].
  infer_inputs = INPUTS + ("example_index",)

  def __init__(self, task: Task, bert_config: BertConfig, config: FinetuneConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime):
    super().__init__(task, bert_config, config, runtime)
    self.parts = runtime.num_replicas * config.gradient_accumulation_steps
    self.base_optimizer_config = optimizer_config
    self._infer_fn = None  # infer's (traced forward, local replica ids): made once

  # --- data --------------------------------------------------------------------------------

  def make_dataset(self, features, steps, replicas, k: int, start: int, pad_to):
    """The plan's micro-batches for ``replicas`` as tf.data (see ``planned_dataset``)."""
    raise NotImplementedError

  def assemble(self, features, groups, pad_to) -> dict:
    """Micro-batches (index arrays) as [len(groups), rows, length] arrays (the task's
    ``data.assemble``: the same arrays ``make_dataset`` yields), for inference."""
    raise NotImplementedError

  def pad_to(self, training: bool) -> Optional[int]:
    """google pads every batch to max_seq_length; token batches and inference pad per batch."""
    cfg = self.config
    return cfg.max_seq_length if training and not cfg.batch_size_in_tokens else None

  def plan(self, features):
    cfg = self.config
    return plan_steps(features.lengths, self.parts, seed=cfg.seed, epochs=cfg.num_train_epochs,
                      **cfg.batching(cfg.train_batch_size))

  def _distribute(self, features, steps, k: int, start: int, pad_to: Optional[int]):
    num_replicas = self.runtime.num_replicas

    def dataset_fn(context: tf.distribute.InputContext):
      local = num_replicas // context.num_input_pipelines
      first = context.input_pipeline_id * local
      ds = self.make_dataset(features, steps, range(first, first + local), k, start, pad_to)
      return ds.prefetch(tf.data.AUTOTUNE)

    return self.runtime.distribute_dataset(dataset_fn)

  # --- training ----------------------------------------------------------------------------

  def train(self, features, init_checkpoint: Optional[str] = None,
            stop_after_steps: Optional[int] = None) -> dict:
    """Fine-tunes for num_train_epochs over ``features``; resumes from output_dir.
    Returns the last logged metrics."""
    cfg = self.config
    steps = self.plan(features)
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
    unit = "tokens" if cfg.batch_size_in_tokens else self.unit
    self.describe(f"fine-tuning {self.name} on {len(features)} {self.unit} "
                  f"({cfg.num_train_epochs:.3g} epochs),", start, target,
                  f"{cfg.train_batch_size} {unit} per step = {self.runtime.num_replicas} "
                  f"replica(s) x {cfg.gradient_accumulation_steps} accumulation")
    iterator = iter(self._distribute(features, steps, cfg.gradient_accumulation_steps, start,
                                     self.pad_to(training=True)))
    return self.fit(iterator, start, target)

  # --- inference ---------------------------------------------------------------------------

  def infer(self, features, batch_size: int, replica_forward: Callable,
            collect: Callable) -> None:
    """Runs ``replica_forward(batch) -> (outputs, feature_index)`` once over ``features``,
    planned over every replica (``plan_steps``: a step's replica r gets its micro-batch
    ``step[r]``), and calls ``collect(outputs, index)`` (NumPy; index -1 for padding rows) for
    each of this worker's replicas' parts, in plan order. Collected arrays cover only this
    worker's features: sum them with ``runtime.sum_over_workers``. ``batch`` holds
    ``infer_inputs`` as assembled ([1, rows, length] or [1, rows]); ``replica_forward`` is
    traced at the first call and serves every later one (the same function every call).

    Fed from the host, without tf.data: a step's micro-batches for this worker's replicas are
    assembled into one array per input ([local replicas, rows, length], ``stack_parts``) and
    the traced forward cuts each replica's own part back out, shape and values as assembled;
    one trace for every set and batch shape (None rows and length). Why: a distributed
    generator pipeline made anew on every call (with its iterator 150-700 ms of wall time, for
    under 1 ms of planning and assembly) made a 64-example classifier call at seq 128 a fifth
    slower than the bare encoder forward."""
    runtime, strategy = self.runtime, self.strategy
    shards, shard = runtime.input_shard  # Horovod: (ranks, this rank); tf.distribute: (1, 0)
    steps = plan_steps(features.lengths, runtime.num_replicas, seed=None,
                       **self.config.batching(batch_size))
    pad_to = self.pad_to(training=False)
    if self._infer_fn is None:
      self._infer_fn = self._make_infer_fn(replica_forward)
    forward, local_ids = self._infer_fn
    mine = [shard * (runtime.num_replicas // shards) + i for i in local_ids]
    for step in steps:
      parts = [self.assemble(features, step[r:r + 1], pad_to) for r in mine]
      stacked, sizes = stack_parts([{name: part[name] for name in self.infer_inputs}
                                    for part in parts])
      outputs, index = forward(stacked, sizes)
      for out, ix in zip(strategy.experimental_local_results(outputs),
                         strategy.experimental_local_results(index)):
        collect(out.numpy(), ix.numpy())

  def _make_infer_fn(self, replica_forward):
    """(forward(stacked, sizes), this worker's replica ids in the sync group: Horovod's
    default strategy says [0] for the rank's one)."""
    strategy = self.strategy
    ids = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(context.replica_id_in_sync_group))
    local_ids = [int(i) for i in strategy.experimental_local_results(ids)]
    # Feature indexes are int64 (as assembled), everything else int32.
    spec = {name: tf.TensorSpec([len(local_ids), None, None][:3 - name.endswith("_index")],
                                tf.int64 if name.endswith("_index") else tf.int32)
            for name in self.infer_inputs}

    @tf.function(input_signature=[spec, tf.TensorSpec([len(local_ids), 2], tf.int32)])
    def forward(stacked, sizes):
      def part(context):  # this replica's micro-batch: [1, rows, length] as assembled
        p = local_ids.index(context.replica_id_in_sync_group)
        cut = (slice(p, p + 1), slice(None, sizes[p, 0]), slice(None, sizes[p, 1]))
        return {name: value[cut[:len(value.shape)]] for name, value in stacked.items()}
      batch = strategy.experimental_distribute_values_from_function(part)
      return strategy.run(replica_forward, args=(batch,))

    return forward, local_ids

  def gather_rows(self, features, batch_size: int, replica_forward: Callable,
                  row_shape: tuple) -> np.ndarray:
    """float32 [num_features, *row_shape]: ``replica_forward``'s rows in feature order, each
    computed exactly once over all replicas and workers (checked)."""
    out = np.zeros((len(features), *row_shape), np.float32)
    seen = np.zeros(len(features), np.int32)

    def collect(rows, index):
      keep = index >= 0
      out[index[keep]] = rows[keep]
      np.add.at(seen, index[keep], 1)

    self.infer(features, batch_size, replica_forward, collect)
    # Each worker filled its own replicas' rows (zeros elsewhere): the sum is the whole set.
    out, seen = self.runtime.sum_over_workers(out), self.runtime.sum_over_workers(seen)
    check_coverage(seen, np.ones(len(features), np.int32), self.unit)
    return out


def check_coverage(seen: np.ndarray, expected: np.ndarray, what: str) -> None:
  """Every item computed as often as expected (once), over all replicas and workers."""
  if not np.array_equal(seen, expected):
    raise RuntimeError(
        f"inference covered {int(np.sum((seen > 0) & (expected > 0)))} of "
        f"{int(np.sum(expected > 0))} {what} ({int(np.sum(seen > expected))} more than once): "
        "the batches were not split across workers as planned")
