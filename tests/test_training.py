"""The pretraining loop: optimizer rules, schedule, accumulation, Mirrored parity, fp16 skips,
divergence abort, exact resume, evaluation output; masked LM without next-sentence prediction
(its loss against NumPy; Mirrored parity)."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import optimization, training
from bert_tf.testing import builders
from bert_tf.testing.numerics import max_diff
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import dropout_config, tiny_config
from bert_tf.training.pretraining import PretrainingTask


# --- optimizers against their published update rules ------------------------------------------

def _reference_step(w, g, m, v, t, lr, wd, b1=0.9, b2=0.999, eps=1e-6, bias_correction=False,
                    trust_ratio=False, decay=True):
  """google's AdamWeightDecayOptimizer (bias_correction=False, trust_ratio=False) and LAMB
  (You et al. 2019, Algorithm 2) on numpy arrays."""
  m = b1 * m + (1 - b1) * g
  v = b2 * v + (1 - b2) * g * g
  m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if bias_correction else (m, v)
  update = m_hat / (np.sqrt(v_hat) + eps)
  if decay:
    update = update + wd * w
  ratio = 1.0
  if trust_ratio:
    w_norm, u_norm = np.linalg.norm(w), np.linalg.norm(update)
    ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
  return w - ratio * lr * update, m, v


@pytest.mark.unit
@pytest.mark.parametrize("name,bias_correction", [("adamw", None), ("lamb", None),
                                                  ("lamb", False)])
def test_optimizer_updates_follow_published_rules(name, bias_correction):
  rng = np.random.default_rng(0)
  config = optimization.OptimizerConfig(name=name, learning_rate=0.01, num_train_steps=10 ** 6,
                                        num_warmup_steps=0, weight_decay_rate=0.01,
                                        bias_correction=bias_correction)
  opt = optimization.create_optimizer(config)
  with tf.name_scope("layer_0"):
    kernel = tf.Variable(rng.normal(size=(3, 4)).astype(np.float32), name="kernel")
  with tf.name_scope("layer_0/layer_norm"):
    gamma = tf.Variable(rng.normal(size=(4,)).astype(np.float32), name="gamma")
  with tf.name_scope("layer_0/dense"):
    bias = tf.Variable(rng.normal(size=(4,)).astype(np.float32), name="bias")
  variables = [kernel, gamma, bias]
  state = {v.name: (v.numpy().astype(np.float64), 0.0, 0.0) for v in variables}
  corrected = (name == "lamb") if bias_correction is None else bias_correction
  for t in range(1, 4):
    grads = [rng.normal(size=v.shape).astype(np.float32) for v in variables]
    opt.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    for v, g in zip(variables, grads):
      w, m, s = state[v.name]
      excluded = "layer_norm" in v.name or "bias" in v.name
      state[v.name] = _reference_step(w, g.astype(np.float64), m, s, t, 0.01, 0.01,
                                      bias_correction=corrected,
                                      trust_ratio=(name == "lamb" and not excluded),
                                      decay=not excluded)
      np.testing.assert_allclose(v.numpy(), state[v.name][0], rtol=1e-5, atol=1e-6,
                                 err_msg=f"{name} step {t} {v.name}")


@pytest.mark.unit
def test_schedule_matches_google_at_listed_steps():
  schedule = optimization.WarmupPolynomialDecay(1e-4, num_train_steps=1000, num_warmup_steps=100)
  # google: warmup lr*step/warmup; then lr*(1-step/num_train_steps)^1.
  expected = {0: 0.0, 1: 1e-6, 50: 5e-5, 99: 9.9e-5, 100: 9e-5, 500: 5e-5, 999: 1e-7, 1000: 0.0,
              2000: 0.0}
  for step, value in expected.items():
    assert float(schedule(step)) == pytest.approx(value, rel=1e-4, abs=1e-12), step  # float32
  sqrt_decay = optimization.WarmupPolynomialDecay(1e-3, 1000, 0, power=0.5)
  assert float(sqrt_decay(750)) == pytest.approx(1e-3 * 0.5, rel=1e-5)


@pytest.mark.unit
def test_phase_steps_follow_gluon_formula():
  # Baseline 256 x 512 tokens x 1M steps, moved to 8192 x 128 (accumulated from 512 x 16):
  assert optimization.phase_steps(256, 512, 1_000_000, 512, 128, accumulation_steps=16) == 125000
  assert optimization.phase_steps(256, 128, 900_000, 256, 128) == 900_000


# --- the loop ------------------------------------------------------------------------------------

def _trainer(tmp_path, name, runtime="one_device", **overrides):
  return builders.pretrainer(tmp_path / name, runtime, **overrides)


def _weights(trainer):
  return [v.numpy() for v in trainer.model.trainable_variables]


@pytest.mark.integration
def test_accumulation_equals_one_big_batch(tmp_path):
  initial = _trainer(tmp_path, "init", steps=1)
  start = initial.model.get_weights()
  results = {}
  for k in (1, 4):
    trainer = _trainer(tmp_path, f"k{k}", steps=2, gradient_accumulation_steps=k)
    trainer.model.set_weights(start)
    metrics = trainer.train()
    results[k] = (_weights(trainer), metrics["loss"])
  diff = max_diff(results[1][0], results[4][0])
  print(f"accumulation 4x2 vs 1x8: max |weight diff| {diff:.2e}, "
        f"losses {results[1][1]:.7f} / {results[4][1]:.7f}")
  assert diff <= 1e-6
  assert results[1][1] == pytest.approx(results[4][1], abs=1e-6)
  assert max_diff(start[:3], results[1][0][:3]) > 1e-4  # training did move the weights


@pytest.mark.integration
@pytest.mark.parametrize("optimizer,next_sentence", [("adamw", True), ("lamb", False)])
def test_mirrored_two_devices_equal_one_device(tmp_path, optimizer, next_sentence):
  """lamb trains masked LM alone (--nonext_sentence_prediction): the same parity, and the
  pooler and NSP head, which its loss does not reach, do not move."""
  start = _trainer(tmp_path, "init", steps=1).model.get_weights()
  results = {}
  for name in ("one_device", "mirrored"):
    trainer = _trainer(tmp_path, name, name, steps=3, optimizer=optimizer,
                       iterations_per_loop=3, save_checkpoints_steps=3,
                       next_sentence_prediction=next_sentence)
    assert trainer.runtime.num_replicas == (2 if name == "mirrored" else 1)
    trainer.model.set_weights(start)
    metrics = trainer.train()
    results[name] = (_weights(trainer), metrics["loss"])
  diff = max_diff(results["one_device"][0], results["mirrored"][0])
  print(f"mirrored(2) vs one device, {optimizer}, NSP {next_sentence}: max |weight diff| "
        f"{diff:.2e}")
  assert diff <= 1e-5
  assert results["one_device"][1] == pytest.approx(results["mirrored"][1], abs=1e-5)
  assert ("next_sentence_loss" in metrics) == next_sentence
  if not next_sentence:
    assert metrics["loss"] == pytest.approx(metrics["masked_lm_loss"], abs=1e-6)
    trained = dict(zip([v.name for v in trainer.model.weights], start))
    moved = {v.name: max_diff([v.numpy()], [trained[v.name]])
             for v in trainer.model.trainable_variables}
    assert all(moved[n] == 0 for n in moved if "pooler" in n or "next_sentence" in n), moved
    assert max(moved.values()) > 1e-4


def _slots(trainer):
  opt = trainer.inner_optimizer
  return [opt.get_slot(v, s).numpy() for v in trainer.model.trainable_variables for s in "mv"]


@pytest.mark.integration
def test_fp16_overflow_steps_leave_state_unchanged_and_are_counted(tmp_path):
  # A loss scale of 2^40 overflows float16 gradients: every step must be skipped.
  trainer = _trainer(tmp_path, "fp16", steps=3, dtype="fp16", initial_loss_scale=2.0 ** 40,
                     iterations_per_loop=1, save_checkpoints_steps=10)
  trainer.restore_or_initialize()
  before = _weights(trainer)
  metrics = trainer.train()
  assert metrics["skipped_steps"] == 3
  assert metrics["loss_scale"] == 2.0 ** 37
  for a, b in zip(before, _weights(trainer)):
    np.testing.assert_array_equal(a, b)
  assert all(not np.any(s) for s in _slots(trainer)), "optimizer slots must stay zero"
  lines = [json.loads(l) for l in open(tmp_path / "fp16" / "train_metrics.jsonl")]
  assert [l["skipped_steps"] for l in lines] == [1, 2, 3]


@pytest.mark.integration
def test_fp16_trains_when_scale_is_sane(tmp_path):
  trainer = _trainer(tmp_path, "fp16ok", steps=4, dtype="fp16", recompute="full",
                     iterations_per_loop=2)
  before = _weights(trainer)
  metrics = trainer.train()
  assert metrics["skipped_steps"] == 0 and np.isfinite(metrics["loss"])
  assert max_diff(before, _weights(trainer)) > 0


@pytest.mark.integration
def test_persistent_overflow_aborts_and_keeps_last_checkpoint(tmp_path):
  trainer = _trainer(tmp_path, "diverge", steps=10, dtype="fp16", initial_loss_scale=2.0 ** 40,
                     iterations_per_loop=1, save_checkpoints_steps=1, max_consecutive_skips=3)
  with pytest.raises(training.TrainingDivergedError, match="3 consecutive steps") as e:
    trainer.train()
  assert "ckpt-2" in str(e.value)
  assert os.path.basename(tf.train.latest_checkpoint(str(tmp_path / "diverge"))) == "ckpt-2"
  assert not os.path.exists(tmp_path / "diverge" / "ckpt-3.index")


@pytest.mark.integration
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
  """Bitwise: weights, optimizer slots and step, with dropout on (seeded per step)."""
  from tensorflow.python.framework import config as tf_config
  tf.config.experimental.enable_op_determinism()
  try:
    _resume_matches(tmp_path)
  finally:
    # Process-wide: leave later tests as they would run alone.
    tf_config.disable_op_determinism()


def _resume_matches(tmp_path):
  # Dropout on; the same features (seed 0) for all three.
  run = dict(steps=6, config=dropout_config(0.1), gradient_accumulation_steps=2)
  full = _trainer(tmp_path, "full", **run)
  full.train()
  part = _trainer(tmp_path, "resumed", **run)
  part.train(stop_after_steps=4)
  assert int(part.global_step.numpy()) == 4
  del part
  resumed = _trainer(tmp_path, "resumed", **run)
  resumed.train()
  assert int(resumed.global_step.numpy()) == 6
  for a, b in zip(_weights(full), _weights(resumed)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_slots(full), _slots(resumed)):
    np.testing.assert_array_equal(a, b)
  # The encoder export for fine-tuning is there at the end.
  assert os.path.exists(tmp_path / "resumed" / "encoder" / "bert_config.json")


@pytest.mark.integration
def test_evaluate_writes_google_eval_results(tmp_path):
  trainer = _trainer(tmp_path, "eval", steps=2)
  trainer.train()
  results = trainer.evaluate()
  text = (tmp_path / "eval" / "eval_results.txt").read_text().splitlines()
  keys = [line.split(" = ")[0] for line in text]
  assert keys == sorted(["global_step", "loss", "masked_lm_accuracy", "masked_lm_loss",
                         "next_sentence_accuracy", "next_sentence_loss"])
  assert 0.0 <= results["masked_lm_accuracy"] <= 1.0 and results["global_step"] == 2


@pytest.mark.integration
def test_phase_two_starts_from_phase_one_weights_with_its_own_schedule(tmp_path):
  """--init_checkpoint=<phase 1 output_dir>: weights only; step, slots and schedule restart."""
  from bert_tf import checkpoints
  phase1 = _trainer(tmp_path, "phase1", steps=2)
  phase1.train()
  phase2 = _trainer(tmp_path, "phase2", steps=3)
  assert phase2.restore_or_initialize(init_checkpoint=str(tmp_path / "phase1")) == 0
  for a, b in zip(_weights(phase1), _weights(phase2)):
    np.testing.assert_array_equal(a, b)
  assert int(phase2.inner_optimizer.iterations.numpy()) == 0
  assert phase2.learning_rate() == 0.0  # warm-up restarts at step 0
  # A google TF1 checkpoint and our encoder-only export work as --init_checkpoint too.
  google = checkpoints.export_google_checkpoint(phase1.model, phase1.bert_config,
                                                str(tmp_path / "google"))
  for path, kind in ((google, "google"), (str(tmp_path / "phase1" / "encoder"), "encoder")):
    target = _trainer(tmp_path, f"from_{kind}", steps=1)
    assert checkpoints.restore_weights(path, target.model) == kind
    encoder_vars = len(target.model.encoder.trainable_variables)
    for a, b in zip(_weights(phase1)[:encoder_vars], _weights(target)[:encoder_vars]):
      np.testing.assert_array_equal(a, b)


# --- masked LM alone (--nonext_sentence_prediction) --------------------------------------------

def _np_cross_entropy(logits, labels):
  """-log softmax(logits)[label] per row, float64."""
  logits = logits.astype(np.float64)
  top = logits.max(-1, keepdims=True)
  log_sum_exp = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
  return log_sum_exp - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


@pytest.mark.unit
def test_masked_lm_only_loss_is_the_mlm_part_of_the_full_loss(tmp_path):
  """Same weights and batch (13 sequences of 7, 3 predictions, some weights 0), global
  normalisers as another replica's share would make them: the MLM-only task's loss is the
  NumPy masked-LM loss alone, the full task's is it plus the NumPy NSP loss; MLM-only needs no
  next_sentence_labels and its gradient reaches neither the pooler nor the NSP head."""
  config = tiny_config()
  features = pretraining_features(config)
  full = PretrainingTask(training.TrainConfig(output_dir=str(tmp_path), train_batch_size=20))
  mlm = PretrainingTask(training.TrainConfig(output_dir=str(tmp_path), train_batch_size=20,
                                             next_sentence_prediction=False))
  model = full.build_model(config, full.config)
  out = model(features)
  ids, weights = features["masked_lm_ids"].numpy(), features["masked_lm_weights"].numpy()
  np_mlm = float((_np_cross_entropy(out["mlm_logits"].numpy(), ids) * weights).sum())
  np_nsp = float(_np_cross_entropy(out["nsp_logits"].numpy(),
                                   features["next_sentence_labels"].numpy()).sum())
  normalisers = (tf.constant(7.5), 20.0)  # global weight total and examples of all replicas
  batch = {k: v[tf.newaxis] for k, v in features.items()}  # one micro-batch: [K=1, B, ...]
  full_loss, full_sums = full.micro_batch_loss(model, batch, 0, normalisers, None)
  del batch["next_sentence_labels"]
  with tf.GradientTape() as tape:
    loss, sums = mlm.micro_batch_loss(model, batch, 0, normalisers, None)
  assert float(loss) == pytest.approx(np_mlm / 7.5, rel=1e-5)
  assert float(full_loss) == pytest.approx(np_mlm / 7.5 + np_nsp / 20.0, rel=1e-5)
  assert float(sums[1]) == pytest.approx(float(full_sums[1]), rel=1e-6)
  assert mlm.num_metrics == len(mlm.step_metrics(sums, normalisers, 0.0, 0.0)) == 4
  grads = tape.gradient(loss, model.trainable_variables)
  unreached = [v.name for v, g in zip(model.trainable_variables, grads) if g is None]
  assert unreached and all("pooler" in n or "next_sentence" in n for n in unreached), unreached
