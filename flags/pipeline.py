"""Pipeline-parallel flags (PipeDream's conf.json and schedules), defined for
run_pretraining.py by ``flags.pretraining`` and for run_classifier.py by
``define_classifier_flags`` here (the same flags plus the source's --num_stages).

In pipeline mode the stages are this process's devices (GPUs, or logical CPU devices with
--cpu_devices), so --distribution stays one_device; m, the micro-batches of one step, is
--num_microbatches (the engine's --gradient_accumulation_steps: give one, or both equal).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from absl import flags as absl_flags

from bert_tf.configs.run import PipelineConfig, RunSpec
from bert_tf.pipeline import balance
from bert_tf.pipeline import conf as conf_lib
from flags import common


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
  conf: conf_lib.PipelineConf
  schedule: str
  num_microbatches: int
  steps_per_call: int
  predicted_shares: Optional[list] = None   # --pipeline_stages: estimated cost per stage


def define_pipeline_flags(flag_values=absl_flags.FLAGS) -> None:
  f = common.Definer(flag_values)
  f.DEFINE_string("pipeline_config", None, "PipeDream conf.json: module_to_stage_map and "
                  "stage_to_rank_map (README 'Pipeline parallelism'). Turns pipeline mode on.")
  f.DEFINE_integer("pipeline_stages", 0, "Pipeline mode without a conf.json: this many stages, "
                   "one device each, modules split to balance their estimated cost (the "
                   "layout used is logged and written to <output_dir>/pipeline_conf.json, "
                   "to edit and pass back).")
  f.DEFINE_enum("pipeline_schedule", "1f1b", list(conf_lib.SCHEDULES),
                "gpipe: all forwards, then all backwards; 1f1b: PipeDream-Flush; 2bw: "
                "PipeDream-2BW, double-buffered weights, W(t+1) = W(t) - lr grad f(W(t-1)).")
  f.DEFINE_integer("num_microbatches", 0, "m, micro-batches per optimizer step in pipeline "
                   "mode (0: --gradient_accumulation_steps).")
  f.DEFINE_integer("pipeline_steps_per_call", 2, "2bw: optimizer steps unrolled in one graph "
                   "with no flush between them; --iterations_per_loop, "
                   "--save_checkpoints_steps and --num_train_steps must be multiples of it.")


def define_classifier_flags(flag_values=absl_flags.FLAGS) -> None:
  """run_classifier.py: fine-tuning pipelined with the same flags and conf.json, and the
  source's --num_stages, checked against the layout the --init_checkpoint run saved."""
  define_pipeline_flags(flag_values)
  f = common.Definer(flag_values)
  f.DEFINE_integer("num_stages", 0, "PipeDream's fine-tuning flag: the number of stages of the "
                   "pipeline run --init_checkpoint comes from; checked against its "
                   "pipeline_conf.json (the checkpoint loads by name whatever the layout). "
                   "0: not checked.")


def saved_layout(init_checkpoint: str) -> Optional[dict]:
  """The pipeline_conf.json beside a checkpoint (its run's output directory), or None."""
  folder = (init_checkpoint if os.path.isdir(init_checkpoint)
            else os.path.dirname(init_checkpoint))
  path = os.path.join(folder, "pipeline_conf.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def num_stages_problems(v) -> list[str]:
  """--num_stages against the saved layout of --init_checkpoint."""
  if not getattr(v, "num_stages", 0):
    return []
  if not v.init_checkpoint:
    return [f"--num_stages={v.num_stages} describes the pipeline checkpoint of "
            "--init_checkpoint, which is not given"]
  saved = saved_layout(v.init_checkpoint)
  if saved is None:
    return [f"--num_stages={v.num_stages}: --init_checkpoint={v.init_checkpoint} is not the "
            "output of a pipeline run (no pipeline_conf.json beside it); drop --num_stages "
            "to load it by name"]
  stages = len(saved["stage_to_rank_map"])
  if stages != v.num_stages:
    return [f"--num_stages={v.num_stages}, but --init_checkpoint={v.init_checkpoint} was "
            f"saved by a pipeline of {stages} stages (module_to_stage_map "
            f"{saved['module_to_stage_map']})"]
  return []


def enabled(v) -> bool:
  return bool(v.pipeline_config) or v.pipeline_stages > 0


def microbatches(v) -> int:
  return v.num_microbatches or v.gradient_accumulation_steps


def problems(v) -> list[str]:
  """Contradictions, and a bad conf.json (naming the file and entry), before anything runs."""
  if not enabled(v):
    changed = [n for n in ("num_microbatches", "pipeline_schedule", "pipeline_steps_per_call")
               if common.changed(v, n)]
    return [f"--{n} applies to pipeline mode (--pipeline_config or --pipeline_stages)"
            for n in changed]
  found = []
  if v.pipeline_config and v.pipeline_stages:
    found.append("give one of --pipeline_config and --pipeline_stages")
  if common.resolved_distribution(v) != "one_device":
    found.append(f"pipeline mode places stages on this process's devices: --distribution="
                 f"{common.resolved_distribution(v)} cannot be combined with it")
  if (v.num_microbatches and common.changed(v, "gradient_accumulation_steps")
      and v.num_microbatches != v.gradient_accumulation_steps):
    found.append(f"--num_microbatches={v.num_microbatches} contradicts "
                 f"--gradient_accumulation_steps={v.gradient_accumulation_steps} (the same m "
                 "in pipeline mode; give one)")
  if v.pipeline_steps_per_call < 1:
    found.append(f"--pipeline_steps_per_call must be >= 1, got {v.pipeline_steps_per_call}")
  if (v.pipeline_schedule != "2bw" and v.pipeline_steps_per_call != 1
      and common.changed(v, "pipeline_steps_per_call")):
    found.append(f"--pipeline_steps_per_call={v.pipeline_steps_per_call} applies to "
                 f"--pipeline_schedule=2bw; {v.pipeline_schedule} flushes every step (one step "
                 "per graph)")
  if v.use_xla:
    found.append("--use_xla does not apply in pipeline mode (--pipeline_config / "
                 "--pipeline_stages): a compiled function cannot span the stages' devices")
  if found:
    return found
  try:
    bert = common.bert_config_from_flags(v)
  except Exception:  # pylint: disable=broad-except (a bad model config is reported elsewhere)
    return found
  try:
    spec = to_spec(v, bert)
    conf_lib.check_for_run(spec.conf, spec.schedule, spec.num_microbatches,
                           bert.num_hidden_layers)
  except conf_lib.PipelineConfigError as e:
    found.append(str(e))
  return found


def to_spec(v, bert) -> Optional[PipelineSpec]:
  """Flags -> the pipeline's layout and schedule for the model ``bert`` (a BertConfig), or
  None outside pipeline mode."""
  if not enabled(v):
    return None
  shares = None
  if v.pipeline_config:
    conf = conf_lib.load_conf(v.pipeline_config)
  else:
    costs = balance.module_costs(bert.num_hidden_layers, bert.hidden_size,
                                 bert.intermediate_size, bert.vocab_size, v.max_seq_length,
                                 getattr(v, "max_predictions_per_seq", 0))
    conf, shares = balance.balanced_conf(v.pipeline_stages, costs)
  per_call = v.pipeline_steps_per_call if v.pipeline_schedule == "2bw" else 1
  return PipelineSpec(conf, v.pipeline_schedule, microbatches(v), per_call, shares)


def resolve(v, spec: RunSpec) -> tuple[RunSpec, Optional[PipelineSpec]]:
  """In pipeline mode, the run's spec as it runs: m as the accumulation steps and the pipeline
  section (what run_config.json records), and the pipeline's layout and schedule; else
  ``(spec, None)``. Before ``record_run``."""
  pipeline = to_spec(v, spec.bert_config)
  if pipeline is None:
    return spec, None
  section = PipelineConfig(
      schedule=pipeline.schedule, num_microbatches=pipeline.num_microbatches,
      steps_per_call=pipeline.steps_per_call, conf_file=v.pipeline_config or None,
      layout=pipeline.conf.to_json())
  run = dataclasses.replace(spec.run, gradient_accumulation_steps=pipeline.num_microbatches)
  return dataclasses.replace(spec, run=run, pipeline=section), pipeline
