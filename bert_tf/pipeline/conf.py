"""conf.json: PipeDream's pipeline layout, parsed and checked before anything runs.

    {"module_to_stage_map": [0, 1, 1],
     "stage_to_rank_map": {"0": [0], "1": [1]}}

``module_to_stage_map`` has one entry per module in model order and ends with the loss
(criterion). For a BERT of L layers two forms are accepted:
  * L + 3 entries (fine-grained): embeddings, layer_0 .. layer_{L-1}, heads (pooler, MLM, NSP or
    classifier), loss;
  * d + 1 entries with d dividing L (PipeDream's ``bert24.depth=d`` models): the encoder cut into
    d equal modules, embeddings with the first, pooler and heads with the last, then the loss.
Stages are contiguous and non-decreasing from 0, every stage has a module and the loss sits on
the last stage, with the heads. ``stage_to_rank_map`` keys are stage numbers as strings, values
the ranks (devices) of that stage; several ranks in a stage are data-parallel replicas of it.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

SCHEDULES = ("gpipe", "1f1b", "2bw")


class PipelineConfigError(ValueError):
  """A conf.json (or its combination with the schedule and model) that cannot run."""


@dataclasses.dataclass(frozen=True)
class StageLayout:
  """What one stage holds of a BERT model (``layers``: encoder layer indexes, in order)."""
  embeddings: bool
  layers: tuple
  heads: bool


@dataclasses.dataclass(frozen=True)
class PipelineConf:
  """A checked conf.json."""
  module_to_stage_map: tuple
  stage_to_rank_map: dict  # int stage -> tuple of int ranks
  source: str = "conf.json"

  @property
  def num_stages(self) -> int:
    return len(self.stage_to_rank_map)

  @property
  def replicas(self) -> int:
    return len(self.stage_to_rank_map[0])

  def ranks(self, stage: int) -> tuple:
    return self.stage_to_rank_map[stage]

  def to_json(self) -> dict:
    return {"module_to_stage_map": list(self.module_to_stage_map),
            "stage_to_rank_map": {str(s): list(r) for s, r in self.stage_to_rank_map.items()}}

  def stage_layouts(self, num_layers: int) -> list:
    """Per stage, a ``StageLayout`` of a BERT with ``num_layers`` encoder layers."""
    modules = self.module_to_stage_map
    n = len(modules)
    if n == num_layers + 3:   # embeddings, each layer, heads, loss
      owner = {"embeddings": modules[0], "heads": modules[-2]}
      layer_stage = list(modules[1:-2])
    elif n >= 2 and num_layers % (n - 1) == 0:   # d equal encoder modules, then the loss
      per = num_layers // (n - 1)
      layer_stage = [modules[i // per] for i in range(num_layers)]
      owner = {"embeddings": modules[0], "heads": modules[-2]}
    else:
      divisors = [d for d in range(1, num_layers + 1) if num_layers % d == 0]
      raise PipelineConfigError(
          f"{self.source}: module_to_stage_map has {n} entries; a BERT of {num_layers} layers "
          f"takes {num_layers + 3} (embeddings, each layer, heads, loss) or d + 1 with d "
          f"dividing {num_layers} (d in {divisors}), the last entry being the loss")
    return [StageLayout(embeddings=owner["embeddings"] == s,
                        layers=tuple(i for i, st in enumerate(layer_stage) if st == s),
                        heads=owner["heads"] == s)
            for s in range(self.num_stages)]


def _fail(source: str, entry: str, problem: str):
  raise PipelineConfigError(f"{source}: {entry}: {problem}")


def _check_modules(source: str, modules) -> tuple:
  entry = "module_to_stage_map"
  if not isinstance(modules, list) or len(modules) < 2:
    _fail(source, entry, f"expected a list of at least 2 stage numbers (modules, then the "
          f"loss), got {modules!r}")
  for i, s in enumerate(modules):
    if not isinstance(s, int) or isinstance(s, bool) or s < 0:
      _fail(source, f"{entry}[{i}]", f"expected a stage number >= 0, got {s!r}")
  if modules[0] != 0:
    _fail(source, f"{entry}[0]", f"the first module must be on stage 0, got {modules[0]}")
  for i in range(1, len(modules)):
    if modules[i] not in (modules[i - 1], modules[i - 1] + 1):
      _fail(source, f"{entry}[{i}]", f"stages must be contiguous and non-decreasing: "
            f"{modules[i - 1]} is followed by {modules[i]}")
  if modules[-1] != modules[-2]:
    _fail(source, f"{entry}[{len(modules) - 1}]", "the last entry is the loss and must sit on "
          f"the last stage with the heads (stage {modules[-2]}), got {modules[-1]}")
  return tuple(modules)


def _check_ranks(source: str, ranks, num_stages: int) -> dict:
  entry = "stage_to_rank_map"
  if not isinstance(ranks, dict):
    _fail(source, entry, f"expected an object {{\"0\": [ranks], ...}}, got {ranks!r}")
  parsed, owner = {}, {}
  for key, values in ranks.items():
    if not (isinstance(key, str) and key.isdigit()):
      _fail(source, f"{entry}[{key!r}]", "keys are stage numbers written as strings")
    stage = int(key)
    if stage >= num_stages:
      _fail(source, f"{entry}[{key!r}]", f"module_to_stage_map has stages 0..{num_stages - 1}")
    if not isinstance(values, list) or not values:
      _fail(source, f"{entry}[{key!r}]", f"expected a non-empty list of ranks, got {values!r}")
    for r in values:
      if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        _fail(source, f"{entry}[{key!r}]", f"expected ranks (ints >= 0), got {r!r}")
      if r in owner:
        _fail(source, f"{entry}[{key!r}]", f"rank {r} is already in stage {owner[r]}")
      owner[r] = stage
    parsed[stage] = tuple(values)
  for stage in range(num_stages):
    if stage not in parsed:
      _fail(source, f"{entry}[\"{stage}\"]", "missing: every stage needs its ranks")
  counts = {s: len(r) for s, r in parsed.items()}
  if len(set(counts.values())) > 1:
    _fail(source, entry, f"uneven replication {counts}: every stage needs the same number of "
          "ranks (parallel pipelines; round-robin between uneven stages is not implemented)")
  return dict(sorted(parsed.items()))


def parse_conf(data, source: str = "conf.json") -> PipelineConf:
  """A conf.json's parsed object -> ``PipelineConf``; ``PipelineConfigError`` names the entry."""
  if not isinstance(data, dict):
    _fail(source, "top level", f"expected an object, got {type(data).__name__}")
  # schedule and num_microbatches: what a run records in its pipeline_conf.json (read back
  # as a layout, they are informational; the flags decide).
  unknown = sorted(set(data) - {"module_to_stage_map", "stage_to_rank_map", "schedule",
                                "num_microbatches"})
  if unknown:
    _fail(source, "top level", f"unknown key(s) {unknown}; expected module_to_stage_map and "
          "stage_to_rank_map")
  for key in ("module_to_stage_map", "stage_to_rank_map"):
    if key not in data:
      _fail(source, key, "missing")
  modules = _check_modules(source, data["module_to_stage_map"])
  ranks = _check_ranks(source, data["stage_to_rank_map"], modules[-1] + 1)
  return PipelineConf(modules, ranks, source)


def load_conf(path: str) -> PipelineConf:
  """Reads and checks conf.json at ``path``."""
  try:
    with open(path) as f:
      data = json.load(f)
  except OSError as e:
    raise PipelineConfigError(f"{path}: cannot read the pipeline config: {e}") from None
  except json.JSONDecodeError as e:
    raise PipelineConfigError(f"{path}: not valid JSON: {e}") from None
  return parse_conf(data, path)


def check_for_run(conf: PipelineConf, schedule: str, num_microbatches: int,
                  num_layers: Optional[int] = None) -> None:
  """The schedule, micro-batch count and model fit this layout (raises before anything runs)."""
  if schedule not in SCHEDULES:
    raise PipelineConfigError(f"--pipeline_schedule={schedule!r}: expected one of {SCHEDULES}")
  p = conf.num_stages
  if num_microbatches < 1:
    raise PipelineConfigError(f"--num_microbatches={num_microbatches}: expected >= 1")
  if schedule == "2bw" and num_microbatches < p:
    raise PipelineConfigError(
        f"--pipeline_schedule=2bw needs --num_microbatches >= the number of stages ({p}) so "
        f"that only two weight versions are live; got {num_microbatches}")
  if num_layers is not None:
    conf.stage_layouts(num_layers)
