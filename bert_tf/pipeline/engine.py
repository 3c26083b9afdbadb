"""The pipeline step: a static schedule unrolled into one ``tf.function``, every stage's
forward, backward and update under that stage's device.

Why by hand: TensorFlow has no pipeline-parallel runtime, and its defaults put the work of a
model spread over devices back on device 0 (a single tape computes the whole backward pass on
the default device; an optimizer applied outside a device scope does its update math there; see
../shared/PIPELINE.md §2.2). So each micro-batch gets one tape per stage, chained with
``output_gradients``, and each stage one optimizer built and applied under its device. Each
stage's ops carry a control dependency on the stage's previous op, so stages follow their
schedule (1f1b's in-flight bound) instead of whatever order the executor picks.

Numerics equal the engine's non-pipelined step with K = m accumulation micro-batches: the same
task losses divided by the same global normalisers, the same dropout seeds, gradients summed in
micro-batch order, global-norm clipping over all stages, the same optimizer per variable.

fp16: the last stage multiplies the loss by the loss scale; every stage unscales its own summed
gradients; the global norm over all stages then decides for all of them: a non-finite norm
turns every stage's gradients into NaN (clipping does that itself; without clipping it is
added), so every stage's LossScaleOptimizer skips the step and halves its scale. The stages'
scales are copies that start equal and take the same decision every step: one scale.

Timing: every op is bracketed by ``tf.timestamp()`` on its stage's device (trainer.StageTimes
says what the spans measure); ``run`` returns the step metrics followed by, per stage, the
seconds of its F, B and U ops.
"""
from __future__ import annotations

import tensorflow as tf

from bert_tf.pipeline import schedule as schedule_lib
from bert_tf.training import step as step_lib


def _identity_sum(values):
  return values   # one pipeline = one data-parallel replica: nothing to all-reduce


class PipelineStep:
  """``run(batches) -> summed step metrics`` for ``len(batches)`` optimizer steps.

  Args:
    task: the engine's task (normalisers, micro_batch_loss, step_metrics).
    replicas: per stage replica r, a ``stages.StagedModel`` whose stage variables sit on that
      replica's device; replica 0 is the trained model (variables W, "M"), the others copies
      refreshed from it after every update (parallel pipelines: micro-batch i runs on replica
      i mod R, gradients are summed in-graph on replica 0's devices).
    stashes: 2bw: per replica, ``stages.StagedModel`` of a second copy on that replica's
      devices (the stash "S", W(t-1)); else None.
    optimizers: one optimizer per stage, built under the stage's (replica 0) device.
    devices: devices[s][r], the device of stage s, replica r.
    state: ``step.TrainState``.
    kind: schedule name; num_microbatches: m; seed: the run's dropout seed; clip_norm: global.
    loss_scaling: fp16 (the optimizers are LossScaleOptimizers).
  """

  KINDS = ("F", "B", "U")

  def __init__(self, task, replicas, stashes, optimizers, devices, state, *, kind: str,
               num_microbatches: int, seed: int, clip_norm: float, loss_scaling: bool = False):
    self.loss_scaling = loss_scaling
    self.task, self.replicas, self.stashes = task, replicas, stashes
    self.staged = replicas[0]
    self.optimizers, self.devices, self.state = optimizers, devices, state
    self.kind, self.m, self.seed, self.clip_norm = kind, num_microbatches, seed, clip_norm
    self.p, self.R = self.staged.num_stages, len(replicas)
    if num_microbatches % self.R:
      raise ValueError(f"{num_microbatches} micro-batches do not split over {self.R} replicas")
    self.num_timings = 3 * self.p

  def _order(self, T):
    """(stage, replica, op) in build order: one replica pipeline's program order over its
    m / R micro-batches, each forward and backward for every replica in turn, each update
    once (replica 0's variables, then copied to the others). Each replica follows the
    schedule; an update comes after every replica's backwards it needs (all of the batch's,
    which precede it in the program order) and, in 2bw, before the forwards that read its
    result, as without replicas. Gradients are summed in micro-batch order 0, 1, 2, ..."""
    order = schedule_lib.program_order(
        schedule_lib.make_schedule(self.kind, self.p, self.m // self.R, T))
    return [(s, r, op) for s, op in order
            for r in (range(self.R) if op.kind != "U" else [0])]

  # Plain Python over a static schedule: autograph has nothing to convert, only time to spend.
  @tf.autograph.experimental.do_not_convert
  def run(self, batches):
    """``batches``: list of T dicts of [m, micro_batch, ...] tensors, one per step."""
    T = len(batches)
    step0 = self.state.global_step.read_value()
    with tf.device(self.devices[-1][0]):   # labels and losses live on the last stage
      normalisers = [self.task.normalisers(b, _identity_sum) for b in batches]
    self._batches, self._normalisers, self._step0 = batches, normalisers, step0
    self._saved, self._acts, self._dys = {}, {}, {}
    self._acc = [dict() for _ in range(T)]     # per batch: variable ref -> summed gradient
    self._sums = [None] * T
    self._grads, self._grad_norm, self._updates, self._metrics = {}, {}, [0] * T, []
    last, spans = {}, [[[] for _ in self.KINDS] for _ in range(self.p)]
    for s, r, op in self._order(T):
      with tf.device(self.devices[s][r]):
        with tf.control_dependencies(last.get((s, r), []) + self._inputs(s, r, op)):
          began = tf.timestamp()
        with tf.control_dependencies([began]):
          if op.kind == "F":
            out = self._forward(s, r, op)
          elif op.kind == "B":
            out = self._backward(s, r, op)
          else:
            out = self._update(s, op)
        out = tf.nest.flatten(out)
        with tf.control_dependencies(out):
          spans[s][self.KINDS.index(op.kind)].append(tf.timestamp() - began)
      last[(s, r)] = out
    with tf.device(self.devices[-1][0]):
      times = tf.cast(tf.stack([tf.add_n(k) if k else tf.constant(0.0, tf.float64)
                                for stage in spans for k in stage]), tf.float32)
    with tf.control_dependencies([t for ts in last.values() for t in ts]):
      return tf.concat([tf.add_n(self._metrics), times], axis=0)

  def _inputs(self, s, r, op):
    """What the op waits for from other stages (its timing starts when they are there)."""
    i = op.mb * self.R + r
    if op.kind == "F" and s > 0:
      return [self._acts[(s - 1, r, op.batch, i)]]
    if op.kind == "B" and s < self.p - 1:
      return [self._dys[(s + 1, r, op.batch, i)]]
    return []

  def _features(self, t, i):
    return {name: value[i] for name, value in self._batches[t].items()}

  def _seed(self, t, i):
    return step_lib.dropout_seed(self.seed, self._step0 + t, self.m, i, tf.constant(0))

  def _forward(self, s, r, op):
    t, i = op.batch, op.mb * self.R + r    # i: the micro-batch within the whole step
    staged = (self.stashes[r] if (op.buffer == "S" and self.stashes is not None)
              else self.replicas[r])
    x = self._acts.pop((s - 1, r, t, i)) if s > 0 else None
    with tf.GradientTape() as tape:
      if x is not None:
        tape.watch(x)
      if s < self.p - 1:
        y = staged.forward(s, x, self._features(t, i), self._seed(t, i))
        self._acts[(s, r, t, i)] = y
      else:
        # The task's own loss, its model replaced by the heads stage fed with x.
        def heads(features, training, dropout_seed):
          return staged.forward(s, x, features, dropout_seed, training)
        y, sums = self.task.micro_batch_loss(heads, self._batches[t], i, self._normalisers[t],
                                             self._seed(t, i))
        self._sums[t] = sums if self._sums[t] is None else self._sums[t] + sums
        if self.loss_scaling:   # the one scale, as every stage's optimizer holds it
          y = self.optimizers[-1].get_scaled_loss(y)
    self._saved[(s, r, t, i)] = (tape, x, y, staged)
    return y

  def _backward(self, s, r, op):
    t, i = op.batch, op.mb * self.R + r
    tape, x, y, staged = self._saved.pop((s, r, t, i))
    dy = self._dys.pop((s + 1, r, t, i)) if s < self.p - 1 else None
    sources = ([x] if x is not None else []) + staged.read_variables[s]
    grads = tape.gradient(y, sources, output_gradients=dy)
    if x is not None:
      self._dys[(s, r, t, i)], grads = grads[0], grads[1:]
    acc, outputs = self._acc[t], [g for g in grads if g is not None]
    # Gradients of the stash (2bw) or of a replica belong to the same position in the
    # trained model; they are summed on its devices.
    for v, g in zip(self.staged.read_variables[s], grads):
      if g is None:   # not reached by the loss (e.g. the pooler under some heads)
        continue
      owner = self.staged.stage_of[v.ref()]
      with tf.device(self.devices[owner][0]):
        # Embedding gathers give IndexedSlices; the sums want dense tensors.
        g = tf.convert_to_tensor(g)
        acc[v.ref()] = g if v.ref() not in acc else acc[v.ref()] + g
    if x is not None:
      outputs.append(self._dys[(s, r, t, i)])
    return outputs

  def _stage_grads(self, t, s):
    """Stage s's summed gradients of batch t and their variables, unscaled (fp16), on the
    stage's device."""
    if (t, s) not in self._grads:
      pairs = [(self._acc[t][v.ref()], v) for v in self.staged.variables[s]
               if v.ref() in self._acc[t]]
      grads = [g for g, _ in pairs]
      if self.loss_scaling and grads:
        with tf.device(self.devices[s][0]):
          grads = self.optimizers[s].get_unscaled_gradients(grads)
      self._grads[(t, s)] = (grads, [v for _, v in pairs])
    return self._grads[(t, s)]

  def _global_norm(self, t):
    """sqrt(sum over all stages of |g|^2), each stage's part computed on its device."""
    if t not in self._grad_norm:
      parts = []
      for s in range(self.p):
        grads = self._stage_grads(t, s)[0]
        with tf.device(self.devices[s][0]):
          parts.append(tf.add_n([tf.nn.l2_loss(g) for g in grads]) if grads else 0.0)
      self._grad_norm[t] = tf.sqrt(tf.add_n(parts) * 2.0)
    return self._grad_norm[t]

  def _update(self, s, op):
    t = op.batch
    norm = self._global_norm(t)
    grads, variables = self._stage_grads(t, s)
    if self.clip_norm > 0 and grads:
      # A non-finite norm makes every clipped gradient NaN: all stages skip (fp16).
      grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
    elif self.loss_scaling:   # the same without clipping: norm - norm is 0, or NaN
      grads = [g + tf.cast(norm - norm, g.dtype) for g in grads]
    outputs = [norm]
    if self.stashes is not None:   # 2bw: S <- M, then M <- M - update(grad at the older W)
      for r, stash in enumerate(self.stashes):
        with tf.device(self.devices[s][r]):
          outputs += [w.assign(v) for w, v in zip(stash.variables[s], self.staged.variables[s])]
    if grads:
      with tf.control_dependencies(outputs):
        update = step_lib.apply_update(self.optimizers[s], grads, variables)
      outputs += [] if update is None else [update]
    for r in range(1, self.R):   # the same update on every replica: copy the new weights
      with tf.device(self.devices[s][r]), tf.control_dependencies(outputs):
        outputs = outputs + [w.assign(v) for w, v in zip(self.replicas[r].variables[s],
                                                          self.staged.variables[s])]
    self._updates[t] += 1
    if self._updates[t] == self.p:   # the batch's last stage update: count the step
      with tf.device(self.devices[-1][0]):
        finite = tf.math.is_finite(norm) & tf.math.is_finite(self._sums[t][0])
      skipped = self.state.record(finite)
      self._metrics.append(self.task.step_metrics(self._sums[t], self._normalisers[t], norm,
                                                  skipped))
      outputs.append(self._metrics[-1])
    return outputs
