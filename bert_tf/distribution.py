"""Where training runs: one object the loop uses without branching on the backend.

The train step calls ``runtime.all_reduce_sum`` inside the replica function for the gradients
and the loss normalisers, and ``runtime.replica_index()`` to give each replica its own dropout
stream. Under a tf.distribute strategy these are the replica context's all-reduce and replica
id; under Horovod (one process per device, default strategy) they are Horovod's grouped
allreduce and rank.

Learning rate and the global batch: ``--train_batch_size`` is the global batch of one optimizer
step whatever the backend (replicas x accumulation x micro-batch), and the loss is normalised by
that global batch, so adding workers at a fixed --train_batch_size changes nothing numerically
and needs no learning-rate change. Changing --train_batch_size itself is a recipe change:
scale the learning rate linearly (Adam, small batches) or by the square root (LAMB), with
warm-up, as the LAMB paper and NVIDIA's recipes do.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Callable, Optional, TypeVar

import numpy as np
import tensorflow as tf

from bert_tf.configs import COLLECTIVES, DISTRIBUTIONS, DistributionConfig

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Runtime:
  strategy: tf.distribute.Strategy
  num_replicas: int                  # global replicas taking part in one optimizer step
  is_chief: bool                     # who writes checkpoints, summaries and logs
  input_shard: tuple[int, int]       # (num_input_pipelines, index) when not from the strategy
  all_reduce_sum: Callable           # replica context: nest of tensors -> summed over replicas
  replica_index: Callable            # replica context: () -> global replica index (int tensor)
  broadcast_initial_state: Callable  # (variables) -> None; no-op when replicas share them
  # Host side, (np.ndarray) -> np.ndarray: each worker's array summed over the workers (once
  # per worker, not per replica). A collective when there are several workers: every worker
  # calls it at the same point with the same shape.
  sum_over_workers: Callable = lambda array: np.asarray(array)
  worker_index: int = 0              # this process among the workers
  all_workers_save: bool = False     # MWMS: every worker takes part in a save (non-chiefs
                                     # write to a scratch directory that is then removed)
  description: str = ""
  # MultiWorkerMirrored: (checkpoint_manager, save_fn, exit_fn) -> TensorFlow's own
  # PreemptionCheckpointHandler, which agrees a step over the coordination service when any
  # worker gets SIGTERM. None elsewhere: the trainer then agrees through ``any_worker``.
  preemption_handler: Optional[Callable] = None

  def any_worker(self, flag: bool) -> bool:
    """True on every worker if any worker says True (a collective, see sum_over_workers)."""
    return bool(self.sum_over_workers(np.array([int(flag)], np.int32))[0] > 0)

  def distribute_dataset(self, dataset_fn: Callable):
    """``dataset_fn(input_context) -> tf.data.Dataset`` made once per input pipeline and
    distributed over the replicas. The context's pipelines are the workers: the strategy's
    under tf.distribute, the Horovod ranks (``input_shard``) under Horovod."""
    num_pipelines, index = self.input_shard

    def fn(context: tf.distribute.InputContext):
      if num_pipelines > 1:  # one process per worker outside tf.distribute (Horovod)
        context = tf.distribute.InputContext(num_pipelines, index, context.num_replicas_in_sync)
      return dataset_fn(context)

    return self.strategy.distribute_datasets_from_function(fn)

  def scratch_dir(self, output_dir: str) -> str:
    """This non-chief worker's throw-away directory for saves it must take part in."""
    return os.path.join(output_dir, f".worker_{self.worker_index}_tmp")

  def write_from_chief(self, write: Callable[[str], T], directory: str,
                       output_dir: str) -> Optional[T]:
    """``write(directory)`` on the chief, returning its result. Under MultiWorkerMirrored a
    save may run collectives, so the other workers take part, writing into their scratch
    directory, removed at once; they return None, as every non-chief does."""
    if self.is_chief:
      return write(directory)
    if self.all_workers_save:
      scratch = self.scratch_dir(output_dir)
      write(scratch)
      shutil.rmtree(scratch, ignore_errors=True)
    return None


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


def _replica_id():
  return tf.distribute.get_replica_context().replica_id_in_sync_group


def _strategy_runtime(strategy, description, is_chief=True, worker_index=0,
                      all_workers_save=False, sum_over_workers=lambda array: np.asarray(array),
                      preemption_handler=None) -> Runtime:
  return Runtime(strategy=strategy, num_replicas=strategy.num_replicas_in_sync,
                 is_chief=is_chief, input_shard=(1, 0), all_reduce_sum=_replica_all_reduce_sum,
                 replica_index=_replica_id, broadcast_initial_state=lambda variables: None,
                 worker_index=worker_index, all_workers_save=all_workers_save,
                 sum_over_workers=sum_over_workers, description=description,
                 preemption_handler=preemption_handler)


def _multi_worker_runtime(collective: str) -> Runtime:
  if "TF_CONFIG" not in os.environ:
    raise ValueError("--distribution=multi_worker_mirrored needs TF_CONFIG in the environment "
                     "(the cluster's workers and this process's task); see README 'Multi-node'")
  implementation = {
      "auto": tf.distribute.experimental.CommunicationImplementation.AUTO,
      "ring": tf.distribute.experimental.CommunicationImplementation.RING,
      "nccl": tf.distribute.experimental.CommunicationImplementation.NCCL}[collective]
  strategy = tf.distribute.MultiWorkerMirroredStrategy(
      communication_options=tf.distribute.experimental.CommunicationOptions(
          implementation=implementation))
  resolver = strategy.cluster_resolver
  task_type, task_id = resolver.task_type, int(resolver.task_id)
  has_chief = "chief" in json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
  is_chief = task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)
  workers = strategy.extended._num_workers  # pylint: disable=protected-access

  @tf.function(reduce_retracing=True)
  def _sum(per_replica):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  def sum_over_workers(array):
    array = np.asarray(array)
    first = []  # the first of this worker's replicas contributes the array, the others zeros

    def value(context):
      del context
      first.append(not first)
      return tf.constant(array if first[-1] else np.zeros_like(array))

    return _sum(strategy.experimental_distribute_values_from_function(value)).numpy()

  def preemption_handler(manager, save_fn, exit_fn):
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        resolver, manager, termination_config=tf.distribute.experimental.TerminationConfig(
            save_fn=save_fn, exit_fn=exit_fn))

  return _strategy_runtime(
      strategy, f"multi-worker mirrored: {task_type} {task_id} of {workers} workers, "
      f"{strategy.num_replicas_in_sync} replicas, {collective} collectives",
      is_chief=is_chief, worker_index=task_id if task_type == "worker" else 0,
      all_workers_save=True, sum_over_workers=sum_over_workers,
      preemption_handler=preemption_handler)


def _horovod_runtime(fp16_compression: bool) -> Runtime:
  import horovod.tensorflow as hvd  # only here: machines without Horovod run everything else
  hvd.init()
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:  # one GPU per rank, pinned by local rank
    gpu = gpus[hvd.local_rank() % len(gpus)]
    tf.config.experimental.set_memory_growth(gpu, True)
    tf.config.set_visible_devices(gpu, "GPU")
  compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none
  rank = hvd.rank()

  def all_reduce_sum(values):
    flat = tf.nest.flatten(values)
    # One grouped call: Horovod fuses the tensors into few allreduces.
    reduced = hvd.grouped_allreduce(flat, op=hvd.Sum, compression=compression)
    return tf.nest.pack_sequence_as(values, reduced)

  def broadcast(variables):
    hvd.broadcast_variables(variables, root_rank=0)

  def sum_over_workers(array):
    return hvd.allreduce(tf.constant(np.asarray(array)), op=hvd.Sum).numpy()

  strategy = tf.distribute.get_strategy()
  return Runtime(strategy=strategy, num_replicas=hvd.size(), is_chief=rank == 0,
                 input_shard=(hvd.size(), rank), all_reduce_sum=all_reduce_sum,
                 replica_index=lambda: tf.constant(rank, tf.int32),
                 broadcast_initial_state=broadcast, worker_index=rank,
                 sum_over_workers=sum_over_workers,
                 description=f"horovod: rank {rank} of {hvd.size()} "
                             f"(local rank {hvd.local_rank()}), "
                             f"fp16 compression {'on' if fp16_compression else 'off'}")


def make_runtime(distribution: str = "one_device", collective: str = "auto",
                 horovod_fp16_compression: bool = False) -> Runtime:
  """``one_device``: the first GPU, else the CPU. ``mirrored``: all local GPUs, else all logical
  CPU devices (see ``split_cpu``). ``multi_worker_mirrored``: workers from ``TF_CONFIG``, all
  local devices per worker. ``horovod``: one process per device under horovodrun."""
  if collective not in COLLECTIVES:
    raise ValueError(f"collective is {collective!r}; expected one of {COLLECTIVES}")
  # Multi-worker and Horovod set up before anything initialises TensorFlow's runtime
  # (MultiWorkerMirrored must configure collectives at startup); listing devices would.
  if distribution == "multi_worker_mirrored":
    return _multi_worker_runtime(collective)
  if distribution == "horovod":
    return _horovod_runtime(horovod_fp16_compression)
  gpus = tf.config.list_logical_devices("GPU")
  if distribution == "one_device":
    device = gpus[0].name if gpus else "/cpu:0"
    return _strategy_runtime(tf.distribute.OneDeviceStrategy(device), f"one device ({device})")
  if distribution == "mirrored":
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    # On CPU there is no NCCL; the hierarchical-copy default needs GPUs too.
    cross = None if gpus else tf.distribute.ReductionToOneDevice()
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=cross)
    return _strategy_runtime(strategy, f"mirrored over {len(devices)} device(s): "
                             f"{', '.join(devices)}")
  raise ValueError(f"distribution is {distribution!r}; expected one of {DISTRIBUTIONS}")


def start(config: DistributionConfig) -> Runtime:
  """Op determinism, logical CPU devices, then the runtime: once, first thing in ``main()``."""
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  split_cpu(config.cpu_devices)
  return make_runtime(config.distribution, collective=config.collective,
                      horovod_fp16_compression=config.horovod_fp16_compression)
