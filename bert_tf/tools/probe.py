"""The real pretraining step on in-memory data, driven through the trainer's public API.

``build_pretrainer`` makes ``training.Pretrainer`` (model, optimizer, clipping: what a run
trains) over a repeating in-memory dataset; ``LoopRunner`` calls its compiled train loop
(``compiled_train_loop``, fed by ``distributed_train_dataset``) ``steps_per_call`` optimizer
steps at a time, as ``run_pretraining.py`` does between two log lines.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import tensorflow as tf

from bert_tf import training
from bert_tf.configs import BertConfig, OptimizerConfig, TrainConfig

# A tool's run never ends, saves or watches for stalls on its own.
TOOL_RUN = dict(num_train_steps=10 ** 6, save_checkpoints_steps=10 ** 9, stall_timeout_secs=0)


def dataset_fn(features: dict, cache: bool = False) -> Callable:
  """``(input_context, micro_batch) -> Dataset`` repeating ``features`` (dict of arrays),
  sharded per input pipeline."""

  def make(context: tf.distribute.InputContext, micro_batch: int) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    if cache:
      ds = ds.cache()
    return ds.repeat().batch(micro_batch, drop_remainder=True)

  return make


def build_pretrainer(config: BertConfig, features: dict, runtime, output_dir: str, batch: int,
                     seq: int, predictions: int, optimizer: Optional[OptimizerConfig] = None,
                     cache: bool = False, **train_overrides) -> training.Pretrainer:
  """``Pretrainer`` at global ``batch`` over ``features``; ``train_overrides``: TrainConfig
  fields (dtype, recompute, iterations_per_loop, use_xla, ...)."""
  train_config = TrainConfig(output_dir=output_dir, train_batch_size=batch, max_seq_length=seq,
                             max_predictions_per_seq=predictions,
                             **{**TOOL_RUN, **train_overrides})
  optimizer = optimizer or OptimizerConfig(learning_rate=1e-4, num_train_steps=10 ** 6,
                                           num_warmup_steps=1000)
  return training.Pretrainer(config, train_config, optimizer, runtime,
                             dataset_fn(features, cache))


class LoopRunner:
  """The trainer's compiled train loop, ``steps_per_call`` optimizer steps per call."""

  def __init__(self, trainer, steps_per_call: int = 1):
    self.steps = steps_per_call
    self.iterator = iter(trainer.distributed_train_dataset(0))
    self.loop = trainer.compiled_train_loop()
    self.num_steps = tf.constant(steps_per_call)

  def run(self) -> float:
    """One call; returns its mean loss per step (reading it waits for the call to finish)."""
    sums = self.loop(self.iterator, self.num_steps)  # per-step metric sums; [0] is the loss
    return float(sums.numpy()[0]) / self.steps

  def timed(self) -> tuple:
    """One call; returns (seconds, mean loss)."""
    began = time.perf_counter()
    loss = self.run()
    return time.perf_counter() - began, loss
