"""``--pipeline_stages=N`` without a conf.json: a contiguous split of BERT's modules that
balances estimated per-module cost (forward + backward matmul FLOPs per example).

The embeddings' gathers are cheap, but the MLM head's vocabulary-sized product makes the last
stage heavy, so equal layer counts would leave every other stage waiting for it. The estimate
and the resulting conf.json are logged; the conf.json is also written to the output directory
(``pipeline_conf.json``) for the user to edit and pass back with --pipeline_config.
"""
from __future__ import annotations

from bert_tf.pipeline import conf as conf_lib


def module_costs(num_layers: int, hidden: int, intermediate: int, vocab: int, seq: int,
                 predictions: int) -> list:
  """FLOPs per example of [embeddings, layer_0 .. layer_{L-1}, heads], forward + backward
  (3x the forward's multiply-adds x 2)."""
  h, i, s = hidden, intermediate, seq
  embeddings = 10 * s * h                                  # sums and LayerNorm
  layer = 2 * s * (4 * h * h + 2 * h * i) + 4 * s * s * h  # projections, FFN, attention
  heads = 2 * predictions * (h * h + h * vocab) + 2 * h * h + 4 * h
  return [3 * c for c in [embeddings] + [layer] * num_layers + [heads]]


def _partition(costs: list, p: int) -> list:
  """Contiguous split of ``costs`` into p non-empty groups with the smallest largest sum; the
  group index of each item. (Linear partition by dynamic programming: n, p are small.)"""
  n = len(costs)
  prefix = [0]
  for c in costs:
    prefix.append(prefix[-1] + c)
  inf = float("inf")
  best = [[inf] * (n + 1) for _ in range(p + 1)]   # best[k][j]: first j items in k groups
  cut = [[0] * (n + 1) for _ in range(p + 1)]
  best[0][0] = 0
  for k in range(1, p + 1):
    for j in range(k, n + 1):
      for a in range(k - 1, j):
        value = max(best[k - 1][a], prefix[j] - prefix[a])
        if value < best[k][j]:
          best[k][j], cut[k][j] = value, a
  groups, j = [], n
  for k in range(p, 0, -1):
    a = cut[k][j]
    groups = [k - 1] * (j - a) + groups
    j = a
  return groups


def balanced_conf(num_stages: int, costs: list, replicas: int = 1) -> tuple:
  """(PipelineConf in the fine-grained form, predicted cost share of each stage)."""
  if not 1 <= num_stages <= len(costs):
    raise conf_lib.PipelineConfigError(
        f"--pipeline_stages={num_stages}: a BERT of {len(costs) - 2} layers has {len(costs)} "
        f"modules (embeddings, layers, heads): expected 1 to {len(costs)} stages")
  stages = _partition(costs, num_stages)
  modules = stages + [stages[-1]]   # the loss goes with the heads
  ranks = {str(s): list(range(s * replicas, (s + 1) * replicas)) for s in range(num_stages)}
  conf = conf_lib.parse_conf({"module_to_stage_map": modules, "stage_to_rank_map": ranks},
                             f"--pipeline_stages={num_stages}")
  total = float(sum(costs))
  shares = [sum(c for c, s in zip(costs, stages) if s == k) / total for k in range(num_stages)]
  return conf, shares
