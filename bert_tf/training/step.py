"""The one train-step core, for every task, backend, precision and accumulation setting.

A step on one replica: the task's global normalisers (known before any forward pass), K
micro-batches each under its own tape (dropout seeded by seed, step, micro-batch and replica),
gradients summed over the micro-batches, then all-reduced over replicas, unscaled (fp16),
clipped by global norm, applied, and the step's finiteness recorded.

Normalisation is global, so a step is the same computation on one device, on N replicas and
with K accumulation micro-batches: every micro-batch divides its loss by the normaliser of the
whole global batch, and replica gradients are summed. Hence "2 replicas = 1 device on the same
global batch" and "K x B accumulated = one batch of K*B" hold to rounding.
"""
from __future__ import annotations

import tensorflow as tf


class TrainState:
  """Step counters saved with every checkpoint (created inside the strategy scope)."""

  def __init__(self):
    counter = lambda name: tf.Variable(  # noqa: E731
        0, dtype=tf.int64, trainable=False, name=name,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.global_step = counter("global_step")
    self.skipped_steps = counter("skipped_steps")          # fp16 overflow (or non-finite) steps
    self.consecutive_skips = counter("consecutive_skips")  # ... in a row, for the abort rule

  def checkpoint_objects(self) -> dict:
    return {"global_step": self.global_step, "skipped_steps": self.skipped_steps,
            "consecutive_skips": self.consecutive_skips}

  def record(self, finite) -> tf.Tensor:
    """Advances the step and the skip counters; returns 1.0 for a skipped step, else 0.0."""
    skipped = tf.cast(tf.logical_not(finite), tf.int64)
    self.global_step.assign_add(1)
    self.skipped_steps.assign_add(skipped)
    self.consecutive_skips.assign(skipped * (self.consecutive_skips + skipped))
    return tf.cast(skipped, tf.float32)


def dropout_seed(seed: int, step, k_steps: int, k, replica_id):
  """A distinct stateless seed per (step, micro-batch, replica): the same on a resume."""
  seed = tf.stack([tf.constant(seed, tf.int64), step * k_steps + tf.cast(k, tf.int64)])
  return tf.random.experimental.stateless_fold_in(seed, replica_id)


def accumulate(micro_step, k_steps: int):
  """Sums ``micro_step(k) -> (grads, sums)`` over k in [0, K) inside the replica function."""
  grads, sums = micro_step(0)
  if k_steps > 1:
    # tf.range keeps one copy of the micro-step in the graph whatever K is.
    for k in tf.range(1, k_steps):
      more_grads, more_sums = micro_step(k)
      grads = [a + b for a, b in zip(grads, more_grads)]
      sums += more_sums
  return grads, sums


def reduce_and_apply(runtime, optimizer, loss_scaling: bool, clip_norm: float, grads, sums,
                     variables):
  """The end of every train step: all-reduce, unscale (fp16), clip, apply.

  Returns the reduced ``sums``, the global gradient norm and whether the step was finite.
  """
  grads, sums = runtime.all_reduce_sum((grads, sums))
  if loss_scaling:
    grads = optimizer.get_unscaled_gradients(grads)
  if clip_norm > 0:
    grads, grad_norm = tf.clip_by_global_norm(grads, clip_norm)
  else:
    grad_norm = tf.linalg.global_norm(grads)
  finite = tf.math.is_finite(grad_norm) & tf.math.is_finite(sums[0])
  # fp16: LossScaleOptimizer skips a non-finite step (weights and slots untouched) and halves
  # the scale; every replica sees the same all-reduced gradients, so all skip.
  # After every gradient: the update's gradient-free parts (beta1 * m, beta2 * v, the weight
  # decay term, for every variable) would otherwise run as soon as the step starts and stay
  # alive through the forward and backward passes, 3x the parameters' size on top of the
  # activations (BERT-Base: 1.2 GiB).
  with tf.control_dependencies([grad_norm]):
    apply_update(optimizer, grads, variables)
  return sums, grad_norm, finite


def apply_update(optimizer, grads, variables):
  """The one place gradients are applied (pipeline stages call it under their own device)."""
  return optimizer.apply_gradients(zip(grads, variables), experimental_aggregate_gradients=False)


def make_replica_step(task, model, optimizer, runtime, state: TrainState, *, seed: int,
                      k_steps: int, clip_norm: float, loss_scaling: bool,
                      seed_fn=dropout_seed):
  """``batch -> metrics`` for ``strategy.run``: one optimizer step on one replica.

  ``batch`` holds [K, micro_batch, ...] tensors. The task supplies the global normalisers,
  each micro-batch's loss and the step's metric vector (see ``engine.Task``). ``seed_fn``:
  ``dropout_seed``'s signature (elastic training keys it on the global micro-batch index).
  """

  def replica_step(batch):
    variables = model.trainable_variables
    replica_id = runtime.replica_index()
    normalisers = task.normalisers(batch, runtime.all_reduce_sum)
    step = state.global_step.read_value()
    connected = []  # per variable: does the loss reach it? (known when the graph is traced)

    def micro_step(k):
      micro_seed = seed_fn(seed, step, k_steps, k, replica_id)
      with tf.GradientTape() as tape:
        loss, sums = task.micro_batch_loss(model, batch, k, normalisers, micro_seed)
        scaled = optimizer.get_scaled_loss(loss) if loss_scaling else loss
      grads = tape.gradient(scaled, variables)
      connected[:] = [g is not None for g in grads]
      # Embedding gathers give IndexedSlices; accumulation and all-reduce want dense tensors.
      return [tf.convert_to_tensor(g) for g in grads if g is not None], sums

    grads, sums = accumulate(micro_step, k_steps)
    # A variable the loss does not reach (the pooler under a span or tagging head) is left
    # alone, as google's optimizer skips None gradients: no update, no weight decay.
    trained = [v for v, c in zip(variables, connected) if c]
    sums, grad_norm, finite = reduce_and_apply(runtime, optimizer, loss_scaling, clip_norm,
                                               grads, sums, trained)
    skipped = state.record(finite)
    return task.step_metrics(sums, normalisers, grad_norm, skipped)

  return replica_step
