"""Where training runs: one object the loop uses without branching on the backend.

The train step calls ``runtime.all_reduce_sum`` inside the replica function for the gradients
and the loss normalisers; under a tf.distribute strategy that is the replica context's
all-reduce. A backend plugs in by providing the same fields.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tensorflow as tf

DISTRIBUTIONS = ("one_device", "mirrored")


@dataclasses.dataclass(frozen=True)
class Runtime:
  strategy: tf.distribute.Strategy
  num_replicas: int                  # global replicas taking part in one optimizer step
  is_chief: bool                     # who writes checkpoints, summaries and logs
  input_shard: tuple[int, int]       # (num_input_pipelines, this pipeline's index)
  all_reduce_sum: Callable           # replica context: nest of tensors -> summed over replicas
  broadcast_initial_state: Callable  # (variables) -> None; no-op when replicas share them
  description: str = ""


def split_cpu(num_devices: int) -> None:
  """Splits the CPU into ``num_devices`` logical devices (before TensorFlow initialises).

  Lets the multi-device code paths run on a machine without GPUs: ``--cpu_devices=2`` then
  ``--distribution=mirrored`` mirrors over /cpu:0 and /cpu:1.
  """
  if num_devices <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError as e:
    existing = len(tf.config.list_logical_devices("CPU"))
    if existing != num_devices:
      raise RuntimeError(f"cannot split the CPU into {num_devices} devices: TensorFlow is "
                         f"already initialised with {existing}") from e


def _replica_all_reduce_sum(values):
  return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)


def make_runtime(distribution: str = "one_device") -> Runtime:
  """``one_device``: the first GPU, else the CPU. ``mirrored``: all local GPUs, else all logical
  CPU devices (see ``split_cpu``)."""
  gpus = tf.config.list_logical_devices("GPU")
  if distribution == "one_device":
    device = gpus[0].name if gpus else "/cpu:0"
    strategy = tf.distribute.OneDeviceStrategy(device)
    desc = f"one device ({device})"
  elif distribution == "mirrored":
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    # On CPU there is no NCCL; the hierarchical-copy default needs GPUs too.
    cross = None if gpus else tf.distribute.ReductionToOneDevice()
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    desc = f"mirrored over {len(devices)} device(s): {', '.join(devices)}"
  else:
    raise ValueError(f"distribution is {distribution!r}; expected one of {DISTRIBUTIONS}")
  return Runtime(strategy=strategy, num_replicas=strategy.num_replicas_in_sync, is_chief=True,
                 input_shard=(1, 0), all_reduce_sum=_replica_all_reduce_sum,
                 broadcast_initial_state=lambda variables: None, description=desc)
