"""Pipeline-parallel pretraining on logical CPU devices equals its references: gpipe and 1f1b on
4 stages, and 1f1b on 2 stages of 2 data-parallel ranks each (4 logical devices, one rank each)
with --recompute=full (blocks recomputed in each stage's backward, on its device), equal
single-device training without recompute with m accumulation micro-batches (the schedules'
orders for other p and m: test_pipeline_schedule), with every layer's forward and backward ops
and every variable's update on its stage's device in the traced step; 2bw equals a sequential
W(t+1) = W(t) - v grad f(W(t-1)) loop with the same optimizer, on 2 stages (across a SIGTERM
checkpoint-and-exit and resume) and on 2 stages x 2 ranks, and learns; a pipeline checkpoint
loads into a single-device pretrainer and a classifier's encoder; fp16 and bf16 (gpipe on 2
stages) equal one device under the same policy, and an fp16 overflow in one stage skips the
step on every stage.

Tiny odd-sized config (3 layers, hidden 32, vocab 99, sequence 16), dropout 0, fp32 unless
said. The test process has 2 logical CPU devices (conftest): 4-stage layouts put stages 0 and
2 on CPU:0 and 1 and 3 on CPU:1. The 2 stages x 2 ranks runs need 4 devices, which this process
cannot have once TensorFlow is initialised: they run together in one subprocess of 4 logical
CPU devices (``bert_tf.testing.pipeline_runs.replicated_child``), rank r on CPU:r, and the
tests here compare what it saved.
"""
import collections
import os
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import checkpoints, distribution, optimization
from bert_tf.fault_tolerance import Preempted
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.pipeline import conf as conf_lib
from bert_tf.pipeline.engine import PipelineStep
from bert_tf.pipeline.trainer import PipelinePretrainer, pipeline_runtime
from bert_tf.testing import builders
from bert_tf.testing.files import read_metrics
from bert_tf.testing.pipeline_runs import (CONFIG, DEVICES, FEATURES, FOUR, M, REPLICA_DEVICES,
                                           REPLICATED, STEPS, TWO, build, max_diff, pipeline,
                                           traced_ops, train_configs, weights)
from bert_tf.testing.tiny import TRAIN_BATCH
from bert_tf.training.pretraining import PretrainingTask

pytestmark = pytest.mark.integration
OVERRIDES = dict(gradient_accumulation_steps=M, steps=STEPS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """Single device, m accumulation micro-batches: the flush schedules' reference."""
  trainer = builders.pretrainer(tmp_path_factory.mktemp("ref"), config=CONFIG, features=FEATURES,
                                **OVERRIDES)
  metrics = trainer.train()
  return weights(trainer.model), metrics


@pytest.mark.parametrize("layout", ["FOUR", "TWO"])
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_flush_schedules_equal_accumulation(tmp_path, reference, schedule, layout):
  """m = 4 on 4 stages (stage 0 holds the embeddings alone) and on 2 plain stages, fp32; the
  4-stage 1f1b run also checks placement and that its checkpoint loads by name."""
  stages = {"FOUR": FOUR, "TWO": TWO}[layout]
  trainer = pipeline(tmp_path, stages, schedule)
  ref_weights, ref_metrics = reference
  diff = max_diff(weights(trainer.model), ref_weights)
  loss_diff = abs(trainer.fit_metrics["loss"] - ref_metrics["loss"])
  print(f"{schedule} on {trainer.conf.num_stages} stages: max |w - w_ref| = {diff:.2e}, "
        f"|loss - loss_ref| = {loss_diff:.2e}")
  assert diff <= 1e-6 and loss_diff <= 1e-6
  # One trace for the run: every stage's optimizer slots exist before the first call.
  assert trainer.compiled_train_loop().function.experimental_get_tracing_count() == 1
  assert {v.device[-5:] for v in trainer.staged.variables[1]} == {"CPU:1"}
  assert trainer.stage_optimizers[1].iterations.device.endswith("CPU:1")
  if schedule == "1f1b" and layout == "FOUR":
    check_stage_work_placement(trainer)
    checkpoint_loads_into_single_device_models(trainer, tmp_path)


def check_stage_work_placement(trainer):
  """In the traced step, every placed op of layer i (forward and the tape's backward) is on
  its stage's device, and each variable's optimizer update (tf_keras's update_k scope) on the
  device of the variable's stage: nothing falls back to device 0."""
  ops = [n for n in traced_ops(trainer) if n.device]
  stage_device = [d[-5:] for d in trainer.stage_devices]
  layer_device = {f"layer_{i}": stage_device[s] for s, layout in enumerate(trainer.layouts)
                  for i in layout.layers}
  placed = collections.defaultdict(set)
  for n in ops:
    layer = re.search(r"layer_\d+", n.name)
    if layer:
      placed[(layer.group(0), n.name.startswith("gradient_tape/"))].add(n.device[-5:])
  assert placed == {(layer, backward): {device} for layer, device in layer_device.items()
                    for backward in (False, True)}
  updates = collections.defaultdict(set)
  for n in ops:
    scope = re.match(r"(.*/update(?:_\d+)?)/", n.name)
    if scope:
      updates[scope.group(1)].add(n.device[-5:])
  assert sorted(tuple(d) for d in updates.values()) == sorted(
      (stage_device[s],) for s, vs in enumerate(trainer.staged.variables) for _ in vs)


def checkpoint_loads_into_single_device_models(trainer, output_dir):
  """The run's checkpoint, by name, into a single-device pretrainer (what single-device
  pretraining's --init_checkpoint does) and into a classifier's encoder (run_classifier's)."""
  features = {k: v[:5] for k, v in FEATURES.items()}
  expected = trainer.model(features, training=False)
  pretrainer = BertPretrainer(BertEncoder(CONFIG))
  assert checkpoints.restore_weights(str(output_dir), pretrainer) == "pretraining"
  got = pretrainer(features, training=False)
  for key in ("mlm_logits", "nsp_logits"):
    np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy())
  classifier = BertClassifier(BertEncoder(CONFIG), num_labels=3)
  assert checkpoints.restore_weights(
      str(output_dir), classifier.encoder) == "pretraining"
  np.testing.assert_array_equal(classifier(features)["pooled_output"].numpy(),
                                expected["pooled_output"].numpy())


def two_bw_reference(steps, m):
  """S = M = W0; per batch: g = grad f(S) over m micro-batches, clipped; S <- M; M <- opt(M, g)."""
  train, opt_config = train_configs("/unused", steps, gradient_accumulation_steps=m)
  tf_keras.utils.set_random_seed(train.seed)
  task = PretrainingTask(train)
  model, stash = task.build_model(CONFIG, train), task.build_model(CONFIG, train)
  for s, v in zip(stash.variables, model.variables):
    s.assign(v)
  optimizer = optimization.create_optimizer(opt_config)
  data = builders.dataset_fn(FEATURES)(tf.distribute.InputContext(), TRAIN_BATCH // m)

  def stash_model():
    for s, v in zip(stash.trainable_variables, model.trainable_variables):
      s.assign(v)

  @tf.function
  def step(batch):
    normalisers = task.normalisers(batch, lambda x: x)
    total = None
    for k in range(m):
      with tf.GradientTape() as tape:
        loss, _ = task.micro_batch_loss(stash, batch, k, normalisers, None)
      grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, stash.trainable_variables)]
      total = grads if total is None else [a + b for a, b in zip(total, grads)]
    total, _ = tf.clip_by_global_norm(total, opt_config.clip_norm)
    stash_model()
    optimizer.apply_gradients(zip(total, model.trainable_variables))

  for batch in data.batch(m, drop_remainder=True).take(steps):
    step(batch)
  return weights(model)


def test_2bw_equals_the_delayed_update_across_a_resume(tmp_path, reference):
  """m = p = 2, two steps per graph (no flush between them), stopped by a real SIGTERM during
  the first loop call (the engine's TerminationGuard in pipeline mode: it saves at step 2,
  where no save is scheduled, and raises Preempted) and resumed: the stash W(t-1) must come
  back from the checkpoint for the next step to be right."""
  overrides = dict(save_checkpoints_steps=STEPS)   # no scheduled save before the last step
  first = build(tmp_path, TWO, "2bw", m=2, overrides=overrides, steps_per_call=2)
  loop = first.compiled_train_loop()

  def signalled(iterator, num_steps):   # a scheduler's SIGTERM, while the first call runs
    os.kill(os.getpid(), signal.SIGTERM)
    return loop(iterator, num_steps)

  first._loop = signalled  # pylint: disable=protected-access
  with pytest.raises(Preempted) as stopped:
    first.train()
  assert stopped.value.code == 143 and stopped.value.step == 2
  assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path))) == "ckpt-2"
  resumed = pipeline(tmp_path, TWO, "2bw", m=2, steps_per_call=2, overrides=overrides)
  diff = max_diff(weights(resumed.model), two_bw_reference(STEPS, m=2))
  print(f"2bw on 2 stages, resumed: max |w - w_ref(delayed)| = {diff:.2e}")
  assert diff <= 1e-6
  # Not the flush update: the single-device accumulation reference (same batches, optimizer and
  # steps; m = 4 there sums the same examples' gradients as m = 2 up to rounding).
  flush_diff = max_diff(weights(resumed.model), reference[0])
  print(f"2bw on 2 stages, resumed: max |w - w_ref(flush)| = {flush_diff:.2e}")
  assert flush_diff > 1e-4


# Before TensorFlow initialises in the child: its CPU split into 4, then this module's runs.
CHILD = ("import sys; import bert_tf; from bert_tf import distribution; "
         "distribution.split_cpu(4); from bert_tf.testing import pipeline_runs; "
         "pipeline_runs.replicated_child(sys.argv[1])")


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
  """replicated_child's facts, and the 2bw reference (computed here while the child runs)."""
  output_dir = tmp_path_factory.mktemp("replicated")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(output_dir / "child.log", "w") as log:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(output_dir)], cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
      delayed_reference = two_bw_reference(3, m=M)
      returncode = child.wait(timeout=600)
    finally:
      if child.poll() is None:
        child.kill()
        child.wait()
  assert returncode == 0, (output_dir / "child.log").read_text()[-4000:]
  with open(output_dir / "replicated.pkl", "rb") as f:
    facts = pickle.load(f)
  assert facts["cpu_devices"] == 4
  return facts, delayed_reference


# (replica, stage) -> its variables' device: rank r = stage + 2 x replica, on CPU:r.
RANK_DEVICES = {(r, s): [f"CPU:{s + 2 * r}"] for r in range(2) for s in range(2)}


def test_1f1b_on_replicated_stages_with_recompute_equals_accumulation(reference, replicated):
  """2 stages x 2 ranks on 4 logical devices, 1f1b, m = 4, --recompute=full, against one
  device with 4 accumulation micro-batches and no recompute."""
  run = replicated[0]["1f1b"]
  ref_weights, ref_metrics = reference
  diff = max_diff(run["weights"], ref_weights)
  loss_diff = abs(run["loss"] - ref_metrics["loss"])
  print(f"1f1b on 2 stages x 2 ranks (4 devices), recompute=full: max |w - w_ref| = "
        f"{diff:.2e}, |loss - loss_ref| = {loss_diff:.2e}")
  assert diff <= 1e-6 and loss_diff <= 1e-6
  assert run["traces"] == 1
  assert run["devices"] == RANK_DEVICES and run["iterations"] == ["CPU:0", "CPU:1"]
  assert run["replica_diff"] == 0.0   # the update copied to every replica
  # Each replica runs m / 2 micro-batches: 2 softmaxes per layer for each (forward, recomputed).
  assert run["softmax"] == {(f"layer_{i}", f"CPU:{s + 2 * r}"): 2 * M // 2
                            for r in range(2) for s, layers in enumerate([[0], [1, 2]])
                            for i in layers}


def test_2bw_on_replicated_stages_equals_the_delayed_update(replicated):
  """2 stages x 2 ranks on 4 logical devices, m = 4 (2 micro-batches per replica pipeline:
  m / R = p), 3 steps of one graph each (the smallest graph; 3 steps: the first two equal the
  flush update, as the warm-up step's learning rate is 0): each replica keeps its own stash on
  its devices. (Two steps per graph on 2 stages x 2 ranks, across a resume, passed too,
  1.19e-7, and cost 110 s.)"""
  facts, delayed_reference = replicated
  run = facts["2bw"]
  diff = max_diff(run["weights"], delayed_reference)
  print(f"2bw on 2 stages x 2 ranks (4 devices): max |w - w_ref(delayed)| = {diff:.2e}")
  assert diff <= 1e-6
  assert run["devices"] == RANK_DEVICES and run["stashes"]["devices"] == RANK_DEVICES
  assert run["replica_diff"] == 0.0 and run["stashes"]["replica_diff"] == 0.0


def test_2bw_learns_like_the_flush_update(tmp_path):
  """6 steps on one repeated batch of 8 sequences (m = p = 2, one step per graph) against
  single-device training on the same data (same optimizer, accumulation, seed): the
  one-step-stale gradient still learns. The loss (2bw logs the mean of each 2 steps) falls at
  every log and is never more than 0.1 above single-device training's loss of two steps
  earlier: W(t+1) = W(t) - v grad f(W(t-1)) trails by a step, and on this fast-moving toy
  objective the stale gradient costs about one more."""
  steps, features = 6, {k: v[:TRAIN_BATCH] for k, v in FEATURES.items()}
  ref = builders.pretrainer(tmp_path / "ref", config=CONFIG, features=features, steps=steps,
                            gradient_accumulation_steps=2, iterations_per_loop=1)
  ref.train()
  conf = conf_lib.parse_conf(TWO)
  train, opt = train_configs(tmp_path / "2bw", steps, gradient_accumulation_steps=2)
  PipelinePretrainer(CONFIG, train, opt, pipeline_runtime(conf, "2bw"),
                     builders.dataset_fn(features), conf=conf, schedule="2bw", devices=DEVICES,
                     steps_per_call=1).train()
  ref_losses = [r["loss"] for r in read_metrics(tmp_path / "ref" / "train_metrics.jsonl")]
  losses = [r["loss"] for r in read_metrics(tmp_path / "2bw" / "train_metrics.jsonl")]
  print(f"2bw loss every 2 steps {np.round(losses, 3).tolist()}, one device every step "
        f"{np.round(ref_losses, 3).tolist()}")
  # Measured: 2bw [5.254, 5.065, 4.586], one device [5.254, 5.254, 4.877, 4.216, 3.635, 3.177].
  assert losses[0] == pytest.approx(ref_losses[0], abs=1e-5)   # W(-1) = W(0), lr(0) = 0
  assert all(b < a for a, b in zip(losses, losses[1:])), losses
  assert ref_losses[0] - ref_losses[-1] > 1.0, ref_losses        # the reference learns
  for k in range(1, len(losses)):   # no more than two steps behind, within 0.1
    assert losses[k] <= np.mean(ref_losses[2 * k - 2:2 * k]) + 0.1, (losses, ref_losses)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_mixed_precision_equals_one_device_under_the_same_policy(tmp_path, dtype):
  """gpipe on 2 stages (1f1b runs in the replicated test; gpipe runs here, on plain 2 stages),
  m = 2, 2 steps: fp16 (dynamic loss scale: the last stage scales the loss, every stage
  unscales its gradients) and bf16 (mixed_bfloat16, no loss scale) against single-device
  training with the same policy and accumulation.

  Both sides run the same ops on the same micro-batches in the same order, so the bf16 casts
  see the same inputs and round alike; what differs is fp32 summation order (the tied
  embedding's two gradients, the accumulators), about one fp32 ulp of a weight near 1.
  Measured, oneDNN on and off, gpipe and 1f1b alike: weights 1.2e-7 for both policies, loss
  equal. The effect of bf16 rounding itself is four orders larger: the same single-device run
  in bf16 against fp32 differs by 2.2e-3 in the weights (oneDNN on; 3.7e-3 off). So 1e-6 is 8x
  the measured difference and 2000x below what a stage computing outside the policy would
  leave."""
  ref = builders.pretrainer(tmp_path / "ref", config=CONFIG, features=FEATURES, dtype=dtype,
                            gradient_accumulation_steps=2, steps=2)
  ref_metrics = ref.train()
  trainer = pipeline(tmp_path / "pipe", TWO, "gpipe", steps=2, m=2, overrides=dict(dtype=dtype))
  diff = max_diff(weights(trainer.model), weights(ref.model))
  print(f"{dtype} gpipe on 2 stages: max |w - w_ref| = {diff:.2e}, loss "
        f"{trainer.fit_metrics['loss']:.7f} vs {ref_metrics['loss']:.7f}")
  assert diff <= 1e-6
  assert abs(trainer.fit_metrics["loss"] - ref_metrics["loss"]) <= 1e-6
  if dtype == "fp16":
    scales = [float(opt.loss_scale) for opt in trainer.stage_optimizers]
    assert scales == [float(ref.optimizer.loss_scale)] * 2, scales


@pytest.mark.parametrize("schedule", ["1f1b", "2bw"])
def test_fp16_overflow_in_one_stage_skips_the_step_on_every_stage(tmp_path, monkeypatch,
                                                                   schedule):
  """Stage 0's gradient is made non-finite in step 0 only (stage 1's stays finite): no
  stage's weights or optimizer move, every stage's loss scale halves, one skipped step (2bw,
  one step per graph: its stash, W(t-1), does not move either)."""
  original = PipelineStep._stage_grads

  def poisoned(self, t, s):
    grads, variables = original(self, t, s)
    if s == 0 and (t, "poisoned") not in self._grads:
      self._grads[(t, "poisoned")] = True
      inf = tf.where(self._step0 + t == 0, np.inf, 0.0)
      grads = [grads[0] + inf] + grads[1:]
      self._grads[(t, s)] = (grads, variables)
    return grads, variables

  monkeypatch.setattr(PipelineStep, "_stage_grads", poisoned)
  trainer = build(tmp_path, TWO, schedule, steps=2, m=2, overrides=dict(dtype="fp16"))
  trainer.restore()
  initial = weights(trainer.model)
  trainer.train(stop_after_steps=1)
  assert int(trainer.skipped_steps.numpy()) == 1 and trainer.current_step() == 1
  assert max_diff(weights(trainer.model), initial) == 0.0
  if schedule == "2bw":
    assert all(np.array_equal(w.numpy(), initial[v.name]) for w, v in zip(
        trainer.stash.model.trainable_variables, trainer.model.trainable_variables))
  initial_scale = trainer.config.initial_loss_scale
  assert [float(o.loss_scale) for o in trainer.stage_optimizers] == [initial_scale / 2] * 2
  # tf_keras's LossScaleOptimizer counts a skipped step in iterations (one device too).
  assert [int(o.iterations.numpy()) for o in trainer.stage_optimizers] == [1, 1]
  trainer.train(stop_after_steps=1)   # step 1 is finite: every stage moves
  assert int(trainer.skipped_steps.numpy()) == 1
  moved = [v for v in trainer.model.trainable_variables
           if np.any(v.numpy() != initial[v.name])]
  assert {trainer.staged.stage_of[v.ref()] for v in moved} == {0, 1}


def test_layouts_the_run_cannot_take(tmp_path):
  train, opt = train_configs(tmp_path, gradient_accumulation_steps=2)
  conf = conf_lib.parse_conf(REPLICATED)
  with pytest.raises(conf_lib.PipelineConfigError, match="--num_microbatches >= 4, got 2"):
    PipelinePretrainer(CONFIG, train, opt, pipeline_runtime(conf, "2bw"), conf=conf,
                       schedule="2bw", devices=REPLICA_DEVICES)
  train, opt = train_configs(tmp_path)
  conf = conf_lib.parse_conf({**TWO, "stage_to_rank_map": {"0": [0], "1": [5]}})
  with pytest.raises(conf_lib.PipelineConfigError, match="ranks up to 5 need 6 CPU devices"):
    PipelinePretrainer(CONFIG, train, opt, pipeline_runtime(conf, "1f1b"), conf=conf,
                       schedule="1f1b")
  with pytest.raises(conf_lib.PipelineConfigError, match="pipeline_runtime"):
    PipelinePretrainer(CONFIG, train, opt, distribution.make_runtime("one_device"), conf=conf,
                       schedule="1f1b", devices=DEVICES)
