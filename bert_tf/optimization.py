"""Learning-rate schedule and optimizers: google's AdamWeightDecay and LAMB.

Both optimizers are Model Garden's ``LAMB`` (official.modeling.optimization.lamb), subclassed
only to make bias correction optional:
  * LAMB as NVIDIA/Model Garden use it: bias correction on, layer adaptation (trust ratio).
  * gluon-nlp's LAMB recipe: ``bias_correction=False``.
  * google's AdamWeightDecayOptimizer is exactly LAMB without bias correction and without
    layer adaptation: m/(sqrt(v)+eps) + wd*w, scaled by lr. (Model Garden's own
    ``AdamWeightDecay`` subclasses Keras Adam and so bias-corrects, which google's does not.)
Weight decay skips LayerNorm parameters and biases, by variable name as google does.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras
from official.modeling.optimization import lamb

from bert_tf.configs import OptimizerConfig  # noqa: F401  (re-exported: optimization.OptimizerConfig)

# google's exclude_from_weight_decay; our variable names contain "layer_norm" and "bias".
WEIGHT_DECAY_EXCLUDE = ("LayerNorm", "layer_norm", "bias")


class WarmupPolynomialDecay(tf_keras.optimizers.schedules.LearningRateSchedule):
  """google's schedule: lr * step / warmup while step < warmup, then
  lr * (1 - step / num_train_steps) ** power (decay counted from step 0, not from warmup).

  Model Garden's PolynomialWarmUp warms up to the *decayed* value and treats step 0 as 1, so
  it does not reproduce google's numbers; this wraps Keras' PolynomialDecay instead.
  """

  def __init__(self, learning_rate, num_train_steps, num_warmup_steps, power=1.0,
               end_learning_rate=0.0):
    super().__init__()
    self.learning_rate = learning_rate
    self.num_train_steps = num_train_steps
    self.num_warmup_steps = num_warmup_steps
    self.power = power
    self.end_learning_rate = end_learning_rate
    self._decay = tf_keras.optimizers.schedules.PolynomialDecay(
        learning_rate, num_train_steps, end_learning_rate=end_learning_rate, power=power)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    decayed = self._decay(step)
    if not self.num_warmup_steps:
      return decayed
    warmup = self.learning_rate * step / float(self.num_warmup_steps)
    return tf.where(step < self.num_warmup_steps, warmup, decayed)

  def get_config(self):
    return {"learning_rate": self.learning_rate, "num_train_steps": self.num_train_steps,
            "num_warmup_steps": self.num_warmup_steps, "power": self.power,
            "end_learning_rate": self.end_learning_rate}


class LAMB(lamb.LAMB):
  """Model Garden's LAMB with optional bias correction (gluon-nlp's ``bias_correction``)."""

  def __init__(self, *args, bias_correction: bool = True, **kwargs):
    super().__init__(*args, **kwargs)
    self.bias_correction = bias_correction

  def _prepare_local(self, var_device, var_dtype, apply_state):
    super()._prepare_local(var_device, var_dtype, apply_state)
    if not self.bias_correction:
      # m_hat = m / (1 - beta1^t) becomes m / 1: the uncorrected moments.
      coefficients = apply_state[(var_device, var_dtype)]
      coefficients["beta_1_power"] = tf.zeros([], var_dtype)
      coefficients["beta_2_power"] = tf.zeros([], var_dtype)

  def _resource_apply_dense(self, grad, var, apply_state=None):
    name = self._get_variable_name(var.name)
    if self.bias_correction or self._do_layer_adaptation(name):
      return super()._resource_apply_dense(grad, var, apply_state)
    # google's AdamWeightDecay (and LAMB's uncorrected, unadapted variables) in one fused
    # kernel: ResourceApplyAdam with beta powers 0 is m/(sqrt(v)+eps) scaled by lr, in one pass
    # over var, m, v and grad where Model Garden's element-wise ops make about a dozen (BERT-Mini
    # has 11M parameters, 7.8M of them the word embeddings). With bias correction it would move
    # epsilon inside the correction, so the corrected path stays Model Garden's.
    coefficients = ((apply_state or {}).get((var.device, var.dtype.base_dtype))
                    or self._fallback_apply_state(var.device, var.dtype.base_dtype))
    lr = coefficients["lr_t"]
    decay = []
    if self._do_use_weight_decay(name):
      # w -= lr * (adam + wd * w): the Adam part does not read w, so the decay of the old w can
      # be subtracted first.
      decay = [var.assign_sub(var * (lr * coefficients["weight_decay_rate"]),
                              use_locking=self._use_locking)]
    with tf.control_dependencies(decay):
      return tf.raw_ops.ResourceApplyAdam(
          var=var.handle, m=self.get_slot(var, "m").handle, v=self.get_slot(var, "v").handle,
          beta1_power=coefficients["beta_1_power"], beta2_power=coefficients["beta_2_power"],
          lr=lr, beta1=coefficients["beta_1_t"], beta2=coefficients["beta_2_t"],
          epsilon=coefficients["epsilon"], grad=grad, use_locking=self._use_locking)

  def get_config(self):
    return {**super().get_config(), "bias_correction": self.bias_correction}


def create_schedule(config: OptimizerConfig) -> WarmupPolynomialDecay:
  return WarmupPolynomialDecay(config.learning_rate, config.num_train_steps,
                               config.num_warmup_steps, config.decay_power,
                               config.end_learning_rate)


def create_optimizer(config: OptimizerConfig) -> LAMB:
  """google's AdamWeightDecay (``adamw``) or LAMB, on the warmup + polynomial schedule."""
  adamw = config.name == "adamw"
  bias_correction = (not adamw) if config.bias_correction is None else config.bias_correction
  return LAMB(
      learning_rate=create_schedule(config), beta_1=config.beta_1, beta_2=config.beta_2,
      epsilon=config.epsilon, weight_decay_rate=config.weight_decay_rate,
      exclude_from_weight_decay=list(WEIGHT_DECAY_EXCLUDE),
      # adamw: the trust ratio is off for every variable (regex ".*" matches all names).
      exclude_from_layer_adaptation=[".*"] if adamw else list(WEIGHT_DECAY_EXCLUDE),
      bias_correction=bias_correction, name="AdamWeightDecay" if adamw else "LAMB")


def phase_steps(baseline_batch: int, baseline_seq: int, baseline_steps: int, batch: int,
                seq: int, accumulation_steps: int = 1) -> int:
  """gluon-nlp's rule for a phase's step count at another batch size / sequence length:
  nsteps = baseline_batch * baseline_seq * baseline_steps / (batch * seq), where batch is the
  per-step batch *before* accumulation times the accumulation steps (the optimizer batch)."""
  effective = batch * accumulation_steps
  return max(1, round(baseline_batch * baseline_seq * baseline_steps / (effective * seq)))
