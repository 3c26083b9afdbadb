"""Pipeline-parallel training: an engine trainer (``Pretrainer``, ``ClassifierTrainer``) with its
step replaced by the pipeline step, one optimizer per stage and the stages' variables on their
devices (``PipelineMixin``; ``PipelinePretrainer`` and ``PipelineClassifierTrainer`` put it in
front of the two trainers, whose task objects run unchanged on the pipeline engine).

Everything else is the engine's: the task's losses and metrics, the outer loop (logging,
checkpoints every N steps, SIGTERM, eval), resume. Checkpoints hold the model under the same
names as a non-pipelined run (``model/...``), so ``--init_checkpoint`` of run_classifier.py and
of single-device pretraining loads them as they are; the per-stage optimizers (and 2bw's weight
stash) are saved beside it for an exact resume.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Optional

from absl import logging
import tensorflow as tf

from bert_tf import distribution, optimization, precision
from bert_tf.configs import BertConfig, OptimizerConfig, RunConfig
from bert_tf.distribution import Runtime
from bert_tf.fault_tolerance import CheckpointWriter, TerminationGuard
from bert_tf.pipeline import conf as conf_lib
from bert_tf.pipeline import stages as stages_lib
from bert_tf.pipeline.engine import PipelineStep
from bert_tf.training.classification import ClassifierTrainer
from bert_tf.training.pretraining import Pretrainer


def local_devices(conf: conf_lib.PipelineConf) -> list:
  """Rank r -> this process's r-th device of the accelerator kind present (GPU, else CPU)."""
  kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
  available = tf.config.list_logical_devices(kind)
  needed = max(r for ranks in conf.stage_to_rank_map.values() for r in ranks) + 1
  if needed > len(available):
    raise conf_lib.PipelineConfigError(
        f"{conf.source}: ranks up to {needed - 1} need {needed} {kind} devices; this process "
        f"has {len(available)} (on a CPU, --cpu_devices={needed})")
  return [d.name for d in available]


def pipeline_runtime(conf: conf_lib.PipelineConf, schedule: str,
                     base: Optional[Runtime] = None) -> Runtime:
  """One process, one replica, no tf.distribute strategy (the default one): the stages choose
  their devices themselves, and a strategy scope would claim every variable for its device."""
  return dataclasses.replace(
      base or distribution.make_runtime("one_device"), strategy=tf.distribute.get_strategy(),
      description=f"pipeline of {conf.num_stages} stages ({schedule})")


class PipelineMixin:
  """An engine trainer over a pipeline layout; put it before the trainer class in the bases.

  Args (keyword, beyond the trainer's own, whose first four are bert_config, config,
  optimizer_config, runtime):
    conf: a checked ``PipelineConf``; several ranks in a stage are data-parallel replicas
      (gpipe, 1f1b).
    schedule: gpipe, 1f1b or 2bw; m is ``config.gradient_accumulation_steps``.
    devices: rank -> device string (default: this process's devices).
    steps_per_call: 2bw: batches unrolled in one graph without a flush between them (the loop's
      step counts must be multiples of it); flush schedules: 1.
  """

  def __init__(self, bert_config: BertConfig, config: RunConfig,
               optimizer_config: OptimizerConfig, runtime: Runtime, *args,
               conf: conf_lib.PipelineConf, schedule: str, devices: Optional[list] = None,
               steps_per_call: int = 1, **kwargs):
    conf_lib.check_for_run(conf, schedule, config.gradient_accumulation_steps,
                           bert_config.num_hidden_layers)
    if config.gradient_accumulation_steps % conf.replicas:
      raise conf_lib.PipelineConfigError(
          f"{conf.source}: {conf.replicas} replicas per stage need --num_microbatches "
          f"divisible by {conf.replicas}, got {config.gradient_accumulation_steps}")
    if schedule == "2bw" and config.gradient_accumulation_steps < conf.replicas * conf.num_stages:
      raise conf_lib.PipelineConfigError(
          f"{conf.source}: 2bw with {conf.replicas} replicas per stage runs m / "
          f"{conf.replicas} micro-batches in each replica's pipeline, which needs at least "
          f"{conf.num_stages} (the stages): --num_microbatches >= "
          f"{conf.replicas * conf.num_stages}, got {config.gradient_accumulation_steps}")
    if runtime.num_replicas != 1 or runtime.strategy is not tf.distribute.get_strategy():
      raise conf_lib.PipelineConfigError(
          "pipeline mode takes the runtime of pipeline_runtime(): the stages are the devices, "
          "under no tf.distribute strategy")
    self.steps_per_call = steps_per_call if schedule == "2bw" else 1
    for name in ("iterations_per_loop", "save_checkpoints_steps", "num_train_steps"):
      if getattr(config, name, 0) % self.steps_per_call:
        raise conf_lib.PipelineConfigError(
            f"--{name}={getattr(config, name)} must be a multiple of the 2bw steps per call "
            f"({self.steps_per_call})")
    devices = devices or local_devices(conf)
    needed = max(r for ranks in conf.stage_to_rank_map.values() for r in ranks) + 1
    if needed > len(devices):
      raise conf_lib.PipelineConfigError(
          f"{conf.source}: ranks up to {needed - 1}, but the run has {len(devices)} devices")
    self.conf, self.schedule = conf, schedule
    self.layouts = conf.stage_layouts(bert_config.num_hidden_layers)
    # [stage][replica] -> device; replica 0 holds the trained (checkpointed) variables.
    self.replica_devices = [[devices[r] for r in conf.ranks(s)] for s in range(conf.num_stages)]
    self.stage_devices = [d[0] for d in self.replica_devices]
    self.stage_times = None   # the last loop call's per-stage timing (see build_train_loop)
    with stages_lib.placement(self.layouts, self.stage_devices):
      super().__init__(bert_config, config, optimizer_config, runtime, *args, **kwargs)

  def build_optimizer(self, optimizer_config: OptimizerConfig) -> None:
    """One optimizer per stage, built under its device (its step counter and update math stay
    there), plus 2bw's stash copy; then the engine's checkpoint writer."""
    if self.optimizer is not None:
      raise RuntimeError("the optimizer is built once per trainer; make a new trainer")
    self.optimizer_config = optimizer_config
    self.staged = stages_lib.StagedModel(self.model, self.layouts)
    self.replicas = [self.staged]
    for r in range(1, self.conf.replicas):   # copies, set from the model at every restore
      with stages_lib.placement(self.layouts, [d[r] for d in self.replica_devices]):
        copy = self.task.build_model(self.bert_config, self.config)
      self.replicas.append(stages_lib.StagedModel(copy, self.layouts))
    # 2bw: a stash per replica (W(t-1)), on that replica's devices; replica 0's is saved.
    self.stashes = None
    if self.schedule == "2bw":
      self.stashes = []
      for r in range(self.conf.replicas):
        with stages_lib.placement(self.layouts, [d[r] for d in self.replica_devices]):
          copy = self.task.build_model(self.bert_config, self.config)
        self.stashes.append(stages_lib.StagedModel(copy, self.layouts))
    self.stash = self.stashes[0] if self.stashes else None
    # fp16: every stage's optimizer is a LossScaleOptimizer. The copies of the scale move
    # together: every stage sees the same global finiteness (engine.PipelineStep._update).
    self.stage_optimizers = []
    for s, device in enumerate(self.stage_devices):
      with tf.device(device):
        opt = precision.wrap_optimizer(optimization.create_optimizer(optimizer_config),
                                       self.config.dtype,
                                       initial_scale=self.config.initial_loss_scale)
        # Slots now, on the stage's device (as Engine.build_optimizer): created in the first
        # call, they would make the step's tf.function trace twice.
        inner = opt.inner_optimizer if self.loss_scaling else opt
        inner._create_all_weights(self.staged.variables[s])  # pylint: disable=protected-access
        self.stage_optimizers.append(opt)
    if self.loss_scaling:   # the last stage scales the loss for all (tf_keras would warn)
      for opt in self.stage_optimizers:
        opt._loss_has_been_scaled = True  # pylint: disable=protected-access
    self.optimizer = self.stage_optimizers[0]   # learning rate and step for the log lines
    self.checkpoints = CheckpointWriter(self.runtime, self.checkpoint_manager(),
                                        self.config.output_dir)
    self.termination = TerminationGuard(self.checkpoints, self.current_step)

  def checkpoint_manager(self) -> tf.train.CheckpointManager:
    objects = dict(model=self.model, **self.state.checkpoint_objects())
    for s, opt in enumerate(getattr(self, "stage_optimizers", [])):
      objects["optimizer" if s == 0 else f"optimizer_stage_{s}"] = opt
    if getattr(self, "stash", None) is not None:
      objects["pipeline_stash"] = self.stash.model
    return tf.train.CheckpointManager(
        tf.train.Checkpoint(**objects), self.config.output_dir,
        max_to_keep=self.config.keep_checkpoint_max, checkpoint_name="ckpt",
        step_counter=self.global_step)

  def restore(self, init_checkpoint: Optional[str] = None) -> int:
    if self.checkpoints is None:   # evaluation or prediction only: the model's weights alone
      return super().restore(init_checkpoint)
    resumed = self.checkpoints.manager.latest_checkpoint is not None
    step = super().restore(init_checkpoint)
    copies = [(replica.model, self.model) for replica in self.replicas[1:]]
    if self.stash is not None and not resumed:   # W(-1) = W(0)
      copies.append((self.stash.model, self.model))
    if self.stash is not None:   # every replica's stash equals replica 0's (restored or set)
      copies += [(stash.model, self.stash.model) for stash in self.stashes[1:]]
    for copy, source in copies:
      for w, v in zip(copy.trainable_variables, source.trainable_variables):
        w.assign(v)
    if self.runtime.is_chief:
      tf.io.gfile.makedirs(self.config.output_dir)
      with tf.io.gfile.GFile(os.path.join(self.config.output_dir, "pipeline_conf.json"),
                             "w") as f:
        json.dump({**self.conf.to_json(), "schedule": self.schedule,
                   "num_microbatches": self.config.gradient_accumulation_steps}, f, indent=1)
    return step

  def fit(self, iterator, start, target, **kwargs):
    """The engine's loop, refused up front when 2bw's graph calls cannot end on ``start`` and
    ``target``: a loop call runs a multiple of the steps per call, so a remainder would never
    run and the loop would repeat with the step unchanged (a resume from a gpipe checkpoint or
    one of another --pipeline_steps_per_call, a stop step that is not a multiple)."""
    if start % self.steps_per_call or target % self.steps_per_call:
      raise conf_lib.PipelineConfigError(self._per_call_problem(start, target))
    return super().fit(iterator, start, target, **kwargs)

  def _per_call_problem(self, start: int, target: int) -> str:
    return (f"2bw runs {self.steps_per_call} steps per graph call (--pipeline_steps_per_call); "
            f"training from step {start} to step {target} needs both to be multiples of it: "
            "pass --pipeline_steps_per_call=1 (or a divisor of both)")

  def build_train_loop(self):
    """The engine's compiled loop with the pipeline step: ``(iterator, num_steps) -> summed
    metrics``; ``Engine.fit`` runs it unchanged. Each call also logs the per-stage timing
    line (``stage_timing_line``) and keeps it in ``self.stage_times``."""
    cfg = self.config
    step = PipelineStep(self.task, self.replicas, self.stashes, self.stage_optimizers,
                        self.replica_devices, self.state, kind=self.schedule,
                        num_microbatches=cfg.gradient_accumulation_steps, seed=cfg.seed,
                        clip_norm=self.optimizer_config.clip_norm,
                        loss_scaling=self.loss_scaling)
    per_call, n = self.steps_per_call, self.task.num_metrics

    def loop(iterator, num_steps):
      totals = tf.zeros([n + step.num_timings])
      for _ in tf.range(num_steps // per_call):
        totals += step.run([next(iterator) for _ in range(per_call)])
      return totals

    compiled = tf.function(loop)

    def timed_loop(iterator, num_steps):
      if int(num_steps) % per_call:   # would run no step for the remainder (see fit)
        step_now = self.current_step()
        raise conf_lib.PipelineConfigError(
            self._per_call_problem(step_now, step_now + int(num_steps)))
      began = time.perf_counter()
      totals = compiled(iterator, num_steps).numpy()
      wall = time.perf_counter() - began
      self.stage_times = StageTimes(totals[n:].reshape(self.conf.num_stages, 3), wall,
                                    int(num_steps))
      logging.info("%s", self.stage_times.line())
      return tf.constant(totals[:n])

    timed_loop.function = compiled   # its traced graph, for inspection (placement tests)
    return timed_loop


class StageTimes:
  """Per stage, seconds of forward (F), backward (B) and update (U) work summed over the loop
  call, replicas included; ``wall`` the call's wall time (the first call includes tracing).

  What is measured: each schedule op of a stage is bracketed by ``tf.timestamp()`` ops on the
  stage's device, the first after the op's inputs (previous stage's activation or gradient)
  and the stage's previous op are ready, the second after its outputs exist. So a span is
  time from inputs ready to outputs done: compute, plus waiting for a core the logical devices
  share (on a CPU host, other stages' work); not time spent waiting for another stage.
  busy = (F + B + U) / wall: the stage's share of the call that it was working (with R
  replicas per stage it can exceed 1/R's share: their spans are summed)."""

  def __init__(self, seconds, wall: float, steps: int):
    self.seconds, self.wall, self.steps = seconds, wall, steps

  def busy(self):
    return self.seconds.sum(axis=1) / max(self.wall, 1e-9)

  def line(self) -> str:
    parts = [f"stage {s}: F {f:.3f} B {b:.3f} U {u:.3f} busy {busy:.2f}"
             for s, ((f, b, u), busy) in enumerate(zip(self.seconds, self.busy()))]
    return (f"pipeline stage times over {self.steps} step(s), {self.wall:.2f} s wall "
            f"(seconds summed per op kind): " + "; ".join(parts))


class PipelinePretrainer(PipelineMixin, Pretrainer):
  """``Pretrainer`` over a pipeline layout (``PipelineMixin``'s keyword arguments)."""


class PipelineClassifierTrainer(PipelineMixin, ClassifierTrainer):
  """``ClassifierTrainer`` (run_classifier.py) over a pipeline layout: its task, plan, data,
  evaluation and prediction, the step of the pipeline engine. The plan's step count must be a
  multiple of 2bw's steps per call (fine-tuning: use --pipeline_steps_per_call=1)."""

def from_spec(pipeline, spec, runtime: Runtime, *args, trainer=None, **kwargs):
  """run_pretraining.py's (default) or run_classifier.py's (``trainer=
  PipelineClassifierTrainer``, ``args=(task,)``) pipeline trainer: ``pipeline`` from
  ``flags.pipeline.to_spec``, ``spec`` the run's ``RunSpec``; m replaces the accumulation
  steps. Other arguments go to the trainer."""
  from bert_tf.pipeline import cluster  # pylint: disable=import-outside-toplevel
  if pipeline.predicted_shares:
    logging.info("pipeline split by estimated cost: %s, predicted share of the step per stage "
                 "%s", json.dumps(pipeline.conf.to_json()),
                 ", ".join(f"{x:.3f}" for x in pipeline.predicted_shares))
  run = dataclasses.replace(spec.run, gradient_accumulation_steps=pipeline.num_microbatches)
  devices = cluster.connect_if_cluster()   # None: this process's own devices
  return (trainer or PipelinePretrainer)(
      spec.bert_config, run, spec.optimizer, pipeline_runtime(pipeline.conf, pipeline.schedule,
                                                              runtime),
      *args, conf=pipeline.conf, schedule=pipeline.schedule,
      steps_per_call=pipeline.steps_per_call, devices=devices, **kwargs)
