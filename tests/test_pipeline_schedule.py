"""Pipeline schedules and conf.json, without TensorFlow: every micro-batch gets one forward and
one backward per stage in dependency order, warm-up counts and in-flight bounds follow
PipeDream's formulas, the bubble is (p - 1) / (m + p - 1), nothing deadlocks under blocking
paired transfers, 2BW's weight versions are W(t - 1); bad conf.json files each give one error
naming the entry."""
import json

import pytest

from bert_tf.pipeline import balance
from bert_tf.pipeline import conf as conf_lib
from bert_tf.pipeline import schedule as sched

pytestmark = pytest.mark.unit
SHAPES = [(1, 1), (2, 1), (2, 4), (3, 5), (4, 4), (4, 8), (5, 3)]


def _ops(stage_ops, kind):
  return [op for op in stage_ops if op.kind == kind]


@pytest.mark.parametrize("kind", ["gpipe", "1f1b", "2bw"])
@pytest.mark.parametrize("p,m", SHAPES)
def test_each_micro_batch_runs_once_per_stage_in_dependency_order(kind, p, m):
  if kind == "2bw" and m < p:
    with pytest.raises(ValueError, match="2bw needs micro-batches >= stages"):
      sched.make_schedule(kind, p, m)
    return
  batches = 3
  schedule = sched.make_schedule(kind, p, m, batches)
  everything = {(t, i) for t in range(batches) for i in range(m)}
  for ops in schedule:
    for kind_ in "FB":
      keys = [op.key for op in _ops(ops, kind_)]
      assert sorted(keys) == sorted(everything) and len(set(keys)) == len(keys)
    assert [op.batch for op in _ops(ops, "U")] == list(range(batches))
    position = {(op.kind, op.key): n for n, op in enumerate(ops)}
    for t, i in everything:   # a stage's backward follows its forward; updates follow backwards
      assert position[("F", (t, i))] < position[("B", (t, i))]
      assert position[("B", (t, i))] < position[("U", (t, -1))]
  seen = set()
  for s, op in sched.program_order(schedule):   # across stages, in the engine's build order
    if op.kind == "F" and s > 0:
      assert ("F", s - 1, op.key) in seen
    if op.kind == "B" and s < p - 1:
      assert ("B", s + 1, op.key) in seen
    seen.add((op.kind, s, op.key))


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", SHAPES)
def test_warmup_in_flight_and_bubble_follow_the_formulas(kind, p, m):
  schedule = sched.make_schedule(kind, p, m)
  result = sched.simulate(schedule)   # unit forward and backward times, blocking paired sends
  for s, ops in enumerate(schedule):
    warmup = sched.warmup_count(kind, p, s, m)
    assert warmup == (m if kind == "gpipe" else min(p - s - 1, m))
    # Forwards before the first backward: the warm-up, then (1f1b) the first steady forward.
    first_b = next(n for n, op in enumerate(ops) if op.kind == "B")
    assert first_b == (m if kind == "gpipe" else min(warmup + 1, m))
    assert result.max_in_flight[s] == (m if kind == "gpipe" else min(p - s, m))
  assert result.makespan == 2 * (m + p - 1)
  assert result.idle_fraction == pytest.approx((p - 1) / (m + p - 1))


def test_2bw_has_no_flush_and_one_step_weight_versions():
  p, m, batches = 4, 4, 5
  schedule = sched.make_schedule("2bw", p, m, batches)
  result = sched.simulate(schedule)
  # Only the first warm-up and the last cool-down idle: the bubble of one long batch.
  assert result.idle_fraction == pytest.approx((p - 1) / (batches * m + p - 1))
  flush = sched.simulate(sched.make_schedule("1f1b", p, m, batches))
  assert flush.idle_fraction == pytest.approx((p - 1) / (m + p - 1))
  assert result.max_in_flight == [p - s for s in range(p)]
  for ops in schedule:
    # Replay the two buffers: M newest, S the stash; U(t): S <- M, M <- W(t + 1).
    newest, stash = 0, 0
    for op in ops:
      if op.kind == "U":
        stash, newest = newest, op.batch + 1
      elif op.kind == "F":
        assert op.version == max(op.batch - 1, 0)
        assert (stash if op.buffer == "S" else newest) == op.version, op
    assert newest == batches


def test_the_simulation_detects_deadlock():
  """Unpaired blocking sends deadlock 1F1B (stage 0 sends a forward while stage 1 sends a
  backward): the simulation that finds no deadlock above is able to find one."""
  with pytest.raises(sched.DeadlockError, match="deadlock"):
    sched.simulate(sched.make_schedule("1f1b", 2, 2), paired=False)
  sched.simulate(sched.make_schedule("gpipe", 2, 2), paired=False)


def test_unbalanced_stage_times_set_the_pace():
  result = sched.simulate(sched.make_schedule("1f1b", 3, 6), f_time=[1, 2, 1], b_time=[2, 4, 2])
  assert result.busy == [18, 36, 18]
  # The slowest stage (6 per micro-batch) sets the pace: its 36, plus filling and draining.
  assert 36 < result.makespan <= (6 + 3 - 1) * 6


# --- conf.json ---------------------------------------------------------------------------------

def test_source_layout_of_bert24_on_8_stages():
  data = {"module_to_stage_map": [0, 1, 2, 3, 4, 5, 6, 7, 7],
          "stage_to_rank_map": {str(s): list(range(8 * s, 8 * s + 8)) for s in range(8)}}
  conf = conf_lib.parse_conf(data)
  assert conf.num_stages == 8 and conf.replicas == 8 and conf.ranks(7) == tuple(range(56, 64))
  layouts = conf.stage_layouts(24)
  assert layouts[0] == conf_lib.StageLayout(True, (0, 1, 2), False)
  assert layouts[7] == conf_lib.StageLayout(False, (21, 22, 23), True)
  assert conf_lib.parse_conf(conf.to_json()) == conf
  # A run's pipeline_conf.json (the layout plus what it ran with) reads back as a layout.
  assert conf_lib.parse_conf({**conf.to_json(), "schedule": "2bw", "num_microbatches": 8}) == conf


def test_fine_grained_layout():
  conf = conf_lib.parse_conf({"module_to_stage_map": [0, 0, 1, 1, 2, 2, 2],
                              "stage_to_rank_map": {"0": [0], "1": [1], "2": [2]}})
  assert [(l.embeddings, l.layers, l.heads) for l in conf.stage_layouts(4)] == \
      [(True, (0,), False), (False, (1, 2), False), (False, (3,), True)]


def test_automatic_split_balances_estimated_cost():
  # Equal modules: equal shares. A heavy last module (the heads) gets a stage to itself.
  conf, shares = balance.balanced_conf(3, [1] * 6)
  assert conf.module_to_stage_map == (0, 0, 1, 1, 2, 2, 2) and shares == [1 / 3] * 3
  conf, shares = balance.balanced_conf(2, [1, 1, 1, 1, 5])
  assert conf.stage_layouts(3) == [conf_lib.StageLayout(True, (0, 1, 2), False),
                                   conf_lib.StageLayout(False, (), True)]
  # BERT-24 on 8 stages (sequence 128, 20 predictions): the source's layout, 3 layers a stage.
  costs = balance.module_costs(24, 1024, 4096, 30522, 128, 20)
  conf, shares = balance.balanced_conf(8, costs)
  assert [l.layers for l in conf.stage_layouts(24)] == [tuple(range(3 * s, 3 * s + 3))
                                                         for s in range(8)]
  assert max(shares) < 0.14 and sum(shares) == pytest.approx(1.0)
  with pytest.raises(conf_lib.PipelineConfigError, match="expected 1 to 26 stages"):
    balance.balanced_conf(27, costs)


GOOD_RANKS = {"0": [0], "1": [1]}
BAD = [
    ({"module_to_stage_map": [0, 2, 2], "stage_to_rank_map": GOOD_RANKS},
     r"module_to_stage_map\[1\]: stages must be contiguous"),
    ({"module_to_stage_map": [0, 1, 0], "stage_to_rank_map": GOOD_RANKS},
     r"module_to_stage_map\[2\]: stages must be contiguous"),
    ({"module_to_stage_map": [1, 1], "stage_to_rank_map": GOOD_RANKS},
     r"module_to_stage_map\[0\]: the first module must be on stage 0"),
    ({"module_to_stage_map": [0, 0, 1], "stage_to_rank_map": GOOD_RANKS},
     r"module_to_stage_map\[2\]: the last entry is the loss"),
    ({"module_to_stage_map": [0, "1", 1], "stage_to_rank_map": GOOD_RANKS},
     r"module_to_stage_map\[1\]: expected a stage number"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [0, 1], "1": [1, 2]}},
     r"stage_to_rank_map\['1'\]: rank 1 is already in stage 0"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [0]}},
     r"stage_to_rank_map\[\"1\"\]: missing"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [0], "1": [1, 2]}},
     r"stage_to_rank_map: uneven replication"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [0], "2": [1]}},
     r"stage_to_rank_map\['2'\]: module_to_stage_map has stages 0..1"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"one": [0], "1": [1]}},
     r"stage_to_rank_map\['one'\]: keys are stage numbers written as strings"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [], "1": [1]}},
     r"stage_to_rank_map\['0'\]: expected a non-empty list"),
    ({"module_to_stage_map": [0, 1, 1]}, r"stage_to_rank_map: missing"),
    ({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": GOOD_RANKS, "x": 1},
     r"top level: unknown key"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_bad_conf_json_names_the_entry(tmp_path, data, message):
  path = tmp_path / "conf.json"
  path.write_text(json.dumps(data))
  with pytest.raises(conf_lib.PipelineConfigError, match=message) as raised:
    conf_lib.load_conf(str(path))
  assert str(raised.value).startswith(str(path))


def test_bad_files_and_runs(tmp_path):
  with pytest.raises(conf_lib.PipelineConfigError, match="not valid JSON"):
    (tmp_path / "c.json").write_text("{")
    conf_lib.load_conf(str(tmp_path / "c.json"))
  with pytest.raises(conf_lib.PipelineConfigError, match="cannot read"):
    conf_lib.load_conf(str(tmp_path / "missing.json"))
  conf = conf_lib.parse_conf({"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": GOOD_RANKS})
  with pytest.raises(conf_lib.PipelineConfigError, match="2bw needs --num_microbatches >= "):
    conf_lib.check_for_run(conf, "2bw", 1)
  with pytest.raises(conf_lib.PipelineConfigError, match="expected one of"):
    conf_lib.check_for_run(conf, "pipedream", 4)
  with pytest.raises(conf_lib.PipelineConfigError, match="a BERT of 3 layers takes 6"):
    conf_lib.check_for_run(conf, "1f1b", 4, num_layers=3)
  conf_lib.check_for_run(conf, "2bw", 2, num_layers=4)


@pytest.mark.timeout(180)
def test_2bw_refuses_steps_its_graph_calls_cannot_end_on(tmp_path):
  """2bw, two steps per graph call: a stop (or resume) step that is not a multiple of 2 would
  leave a remainder no call runs, and the engine's loop would repeat with the step unchanged.
  Refused with an error naming the steps, by the pretrainer (before any step) and by its
  compiled loop for a call of an odd step count. (Tiny 2-stage model; the hard timeout fails
  the hang this guards against.)"""
  import tensorflow as tf
  from bert_tf.testing import pipeline_runs
  trainer = pipeline_runs.build(tmp_path, pipeline_runs.TWO, "2bw", steps=4, m=2,
                                steps_per_call=2)
  with pytest.raises(conf_lib.PipelineConfigError,
                     match=r"2bw runs 2 steps per graph call .* from step 0 to step 1 "):
    trainer.train(stop_after_steps=1)
  assert trainer.current_step() == 0
  iterator = iter(trainer.distributed_train_dataset(0))
  with pytest.raises(conf_lib.PipelineConfigError, match="from step 0 to step 3 "):
    trainer.compiled_train_loop()(iterator, tf.constant(3))
