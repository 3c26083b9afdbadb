"""Training-memory estimator: parameters, gradients, optimizer state and activations per layer.

``estimate(config, batch, seq, ...)`` returns a ``MemoryEstimate`` for one training step of
``BertPretrainer`` (MLM + NSP heads, AdamW/LAMB) for a recompute mode and dtype;
``format_breakdown`` prints it, ``plot`` draws estimates side by side as a PNG (matplotlib).
``kept_for_backward`` is the check behind the activation terms: it traces the model's forward
and gradient and lists the forward tensors the gradient consumes, i.e. what the tape keeps
alive from the forward pass until the backward pass.

Activation terms, per example, for the tanh-GELU post-LN block of ``bert_tf.modeling`` (c =
bytes of the compute dtype: 4 fp32, 2 fp16/bf16; LayerNorm/softmax run in float32; dropout
masks are bool; S sequence, H hidden, I intermediate, N heads), as ``kept_for_backward``
lists them:

  none       S*H x (6c + 16 + 2 masks): block input, q/k/v (head-major copies), context,
             first LayerNorm output (c); the two LayerNorms' input and normalised value (f32)
             + N*S*S x (4 + 1 + 4 | c): softmax output, dropout mask, dropped probabilities
             (f32, or their c cast under mixed precision)
             + S*I x 5c: GELU input, tanh, 0.5x, 1 + tanh, output
  selective  the attention core and the GELU are recomputed: no N*S*S term, S*I x 2c
  full       each block keeps only its input (S*H x c); the block being back-propagated is
             recomputed, so one block's "none" activations enter the working set (the larger
             of them and the backward temporaries, which replace them as the backward goes)

Static terms: float32 parameters, float32 gradients (plus the dense word-embedding gradient
built from gather slices), clipped gradients (new tensors), optimizer slots (2 per variable
for AdamW and LAMB) and the update's temporaries for the largest variable. The peak is the
larger of the forward/backward peak (activations + working set) and the update peak (all
gradients + clipped copies); ``runtime_bytes`` adds what the framework itself holds (on CPU
the resident set of TensorFlow's libraries, graphs and allocator slack: about 1.3 GiB here,
measured by ``benchmarks/bench_memory.py``; 0 for a GPU allocator peak).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from bert_tf.configs import BertConfig

GIB = 2 ** 30
COMPUTE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
OPTIMIZER_SLOTS = {"adamw": 2, "lamb": 2, "sgd": 0}
RECOMPUTE_MODES = ("none", "selective", "full")


def num_parameters(config: BertConfig) -> dict:
  """Trainable parameters of ``BertPretrainer(BertEncoder(config))`` by part."""
  h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
  embeddings = (v + config.max_position_embeddings + config.type_vocab_size) * h + 2 * h
  block = (4 * h * h + 4 * h) + (2 * h * i + i + h) + 2 * 2 * h  # attention, FFN, 2 LNs
  pooler = h * h + h
  mlm = h * h + h + 2 * h + v  # transform + LayerNorm + output bias (table tied)
  nsp = 2 * h + 2
  return {"embeddings": embeddings, "layers": block * config.num_hidden_layers,
          "pooler": pooler, "heads": mlm + nsp,
          "total": embeddings + block * config.num_hidden_layers + pooler + mlm + nsp}


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  """Bytes of one training step's peak, by component (see the module docstring)."""
  batch: int
  seq: int
  predictions: int
  dtype: str
  recompute: str
  parameters: int
  gradients: int
  optimizer_state: int
  update_temporaries: int        # clipped copies + the largest variable's update temporaries
  activations: dict              # kept for backward, by layer: embeddings, layer_i, heads
  working: int                   # transient: backward temporaries (+ the recomputed block)
  runtime: int = 0

  @property
  def kept_activations(self) -> int:
    return sum(self.activations.values())

  @property
  def forward_backward_peak(self) -> int:
    return (self.parameters + self.optimizer_state + self.kept_activations + self.working
            + self.gradients_at_backward_start)

  @property
  def gradients_at_backward_start(self) -> int:
    # The MLM head is back-propagated first: its gradient for the tied [V, H] word table
    # exists from the start of the backward pass to the update.
    return self._table_gradient

  @property
  def update_peak(self) -> int:
    return (self.parameters + self.optimizer_state + self.gradients
            + self.update_temporaries)

  @property
  def total(self) -> int:
    return max(self.forward_backward_peak, self.update_peak) + self.runtime

  @property
  def peak_phase(self) -> str:
    return "forward/backward" if self.forward_backward_peak >= self.update_peak else "update"

  _table_gradient: int = 0


def _per_block(config: BertConfig, seq: int, c: int, dropout: bool, recompute: str) -> int:
  """Bytes per example a block keeps for backward (float32 LayerNorm/softmax)."""
  s, h, i, n = seq, config.hidden_size, config.intermediate_size, config.num_attention_heads
  f, mask = 4, 1 if dropout else 0
  if recompute == "full":
    return s * h * c
  bsh = s * h * (6 * c + 4 * f + 2 * mask)
  bsi = s * i * (2 if recompute == "selective" else 5) * c
  bnss = 0 if recompute == "selective" else \
      n * s * s * (f + mask + ((f if mask else 0) if c == f else c))
  return bsh + bsi + bnss


def _backward_temporaries(config: BertConfig, seq: int, c: int) -> int:
  """Per example: gradient tensors alive while one block is back-propagated (f32 softmax
  gradient and its product, two S*I and a few S*H gradients)."""
  s, h, i, n = seq, config.hidden_size, config.intermediate_size, config.num_attention_heads
  return 2 * n * s * s * 4 + 2 * s * i * c + 4 * s * h * 4


def estimate(config: BertConfig, batch: int, seq: int, predictions: Optional[int] = None,
             dtype: str = "fp32", recompute: str = "none", optimizer: str = "adamw",
             dropout: Optional[bool] = None, runtime_bytes: int = 0,
             num_replicas: int = 1, update_ordered: bool = True) -> MemoryEstimate:
  """Peak memory of one ``Pretrainer`` training step on one replica.

  Args:
    config: the encoder's config. batch: global batch (divided by ``num_replicas``).
    seq: sequence length. predictions: masked positions per sequence (default ~15% of seq).
    dtype: fp32 | fp16 | bf16. recompute: none | selective | full. optimizer: adamw | lamb.
    dropout: whether dropout is active (default: the config's rates > 0).
    runtime_bytes: the framework's own share, added to ``total``.
    update_ordered: the update runs after all gradients (``training.Pretrainer`` does so since
      the memory work). False models an unordered update, whose gradient-free temporaries
      (beta1 * m, beta2 * v, decay * w: 3x the parameters) TensorFlow's executor computes at
      the start of the step and holds through the forward and backward passes.
  """
  if recompute not in RECOMPUTE_MODES:
    raise ValueError(f"recompute is {recompute!r}; expected one of {RECOMPUTE_MODES}")
  if dtype not in COMPUTE_BYTES:
    raise ValueError(f"dtype is {dtype!r}; expected one of {sorted(COMPUTE_BYTES)}")
  if batch % num_replicas:
    raise ValueError(f"batch {batch} is not divisible by {num_replicas} replicas")
  b = batch // num_replicas
  c, f = COMPUTE_BYTES[dtype], 4
  p = predictions if predictions is not None else max(1, round(0.15 * seq))
  if dropout is None:
    dropout = config.hidden_dropout_prob > 0 or config.attention_probs_dropout_prob > 0
  mask = 1 if dropout else 0
  h, v = config.hidden_size, config.vocab_size
  n_params = num_parameters(config)["total"]
  table = v * h * 4

  # Each block's count includes its input (the embeddings' output for block 0); the last
  # block's output is not kept (the heads' gather and slice need only its shape).
  activations = {"embeddings": b * seq * h * (2 * f + mask)}
  for layer in range(config.num_hidden_layers):
    activations[f"layer_{layer}"] = b * _per_block(config, seq, c, dropout, recompute)
  # MLM head at the masked positions: transform input, GELU (5), LayerNorm (2 f32 + output),
  # and the cross-entropy's saved softmax - one-hot [B*P, V] in float32.
  activations["heads"] = b * p * (h * (7 * c + 2 * f) + v * f)
  working = b * _backward_temporaries(config, seq, c)
  if recompute == "full":
    # The block being back-propagated is recomputed first; its backward then frees those
    # tensors while it makes the gradient temporaries, so the two overlap little.
    working = max(working, b * _per_block(config, seq, c, dropout, "none"))
  working += b * p * v * f  # the logits' gradient
  if not update_ordered:
    working += 3 * n_params * 4
  slots = OPTIMIZER_SLOTS[optimizer]
  return MemoryEstimate(
      batch=batch, seq=seq, predictions=p, dtype=dtype, recompute=recompute,
      parameters=n_params * 4, gradients=n_params * 4 + table,
      optimizer_state=slots * n_params * 4,
      update_temporaries=n_params * 4 + 3 * table,
      activations=activations, working=working, runtime=runtime_bytes,
      _table_gradient=table)


def format_breakdown(estimates: Sequence[MemoryEstimate], unit: int = GIB) -> str:
  """Markdown table: one column per estimate, one row per component (GiB)."""
  head = [f"{e.recompute} b{e.batch} s{e.seq} {e.dtype}" for e in estimates]
  rows = [("parameters", lambda e: e.parameters), ("gradients", lambda e: e.gradients),
          ("optimizer state", lambda e: e.optimizer_state),
          ("update temporaries (clip + apply)", lambda e: e.update_temporaries),
          ("activations kept: embeddings", lambda e: e.activations["embeddings"]),
          ("activations kept: transformer blocks",
           lambda e: sum(v for k, v in e.activations.items() if k.startswith("layer_"))),
          ("activations kept: per block", lambda e: e.activations["layer_0"]),
          ("activations kept: MLM/NSP heads", lambda e: e.activations["heads"]),
          ("backward working set", lambda e: e.working),
          ("forward/backward peak", lambda e: e.forward_backward_peak),
          ("update peak", lambda e: e.update_peak),
          ("runtime (framework)", lambda e: e.runtime),
          ("**estimated peak**", lambda e: e.total)]
  lines = ["| component (GiB) | " + " | ".join(head) + " |",
           "|---|" + "---:|" * len(estimates)]
  for name, fn in rows:
    lines.append(f"| {name} | " + " | ".join(f"{fn(e) / unit:.3f}" for e in estimates) + " |")
  return "\n".join(lines)


def plot(estimates: Sequence[MemoryEstimate], path: str, title: str = "",
         measured: Optional[Sequence[Optional[float]]] = None) -> str:
  """Stacked bars (one per estimate) of the peak's components, in GiB; ``measured`` (GiB,
  optional) is drawn as a marker on each bar. Writes a PNG to ``path`` and returns it."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  parts = [("parameters", "#4c72b0", lambda e: e.parameters),
           ("optimizer state", "#55a868", lambda e: e.optimizer_state),
           ("gradients (+ update temporaries at the update peak)", "#c44e52",
            lambda e: (e.gradients + e.update_temporaries if e.peak_phase == "update"
                       else e.gradients_at_backward_start)),
           ("activations kept (blocks)", "#8172b2",
            lambda e: 0 if e.peak_phase == "update" else
            sum(v for k, v in e.activations.items() if k.startswith("layer_"))),
           ("activations kept (embeddings + heads)", "#ccb974",
            lambda e: 0 if e.peak_phase == "update" else
            e.activations["embeddings"] + e.activations["heads"]),
           ("backward working set", "#64b5cd",
            lambda e: 0 if e.peak_phase == "update" else e.working),
           ("runtime (framework)", "#999999", lambda e: e.runtime)]
  fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(estimates) + 5), 5))
  x = range(len(estimates))
  bottom = [0.0] * len(estimates)
  for name, color, fn in parts:
    values = [fn(e) / GIB for e in estimates]
    ax.bar(x, values, bottom=bottom, color=color, label=name, width=0.6)
    bottom = [b + v for b, v in zip(bottom, values)]
  if measured:
    pts = [(i, m) for i, m in enumerate(measured) if m is not None]
    if pts:
      ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="black", marker="_", s=900,
                 linewidths=3, label="measured peak", zorder=3)
  ax.set_xticks(list(x))
  ax.set_xticklabels([f"{e.recompute}\nbatch {e.batch}\nseq {e.seq}\n{e.dtype}"
                      for e in estimates], fontsize=8)
  ax.set_ylabel("GiB")
  ax.set_title(title or "Estimated training-step peak memory by component", fontsize=9)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


# --- what the gradient keeps: traced, not estimated ------------------------------------------

_ALIASING_OPS = ("Reshape", "Identity", "ExpandDims", "Squeeze", "StopGradient")


def kept_for_backward(model, features, loss_fn) -> list:
  """Forward tensors that the gradient of ``loss_fn(model(features, training=True))`` consumes.

  Traces forward + ``tf.GradientTape.gradient`` into one graph (no execution), marks as
  backward every op downstream of the tape's gradient ops, and returns, for each forward
  tensor read by a backward op, ``(name, shape, dtype, bytes)`` sorted by size. Views that
  share their input's buffer (Reshape, Identity, ...) are followed back to the tensor that owns
  the buffer, so an activation read through three reshapes counts once. Variables and
  constants are left out (they are parameters, not activations).

  Args:
    model: a Keras model called as ``model(features, training=True, dropout_seed=seed)``.
    features: dict of Tensors with static shapes.
    loss_fn: ``(outputs, features) -> scalar loss``.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  specs = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in features.items()}

  @tf.function
  def step(batch):
    with tf.GradientTape() as tape:
      outputs = model(batch, training=True, dropout_seed=tf.constant([1, 2], tf.int64))
      loss = loss_fn(outputs, batch)
    return tape.gradient(loss, model.trainable_variables)

  graph = step.get_concrete_function(specs).graph
  roots = [op for op in graph.get_operations() if "gradient_tape/" in op.name]
  backward, stack = set(), list(roots)
  while stack:
    op = stack.pop()
    if op in backward:
      continue
    backward.add(op)
    stack.extend(c for t in op.outputs for c in t.consumers())
    stack.extend(op._control_outputs)  # pylint: disable=protected-access
  skip = {"Const", "ReadVariableOp", "Placeholder", "VarHandleOp", "Shape", "ResourceGather"}

  def owner(t):
    while t.op.type in _ALIASING_OPS and t.op.inputs:
      t = t.op.inputs[0]
    return t

  kept = {}
  for op in backward:
    for t in op.inputs:
      t = owner(t)
      if t.op in backward or t.op.type in skip or t.dtype == tf.resource:
        continue
      if not t.shape.is_fully_defined():
        continue
      kept[t.name] = (t.name, tuple(t.shape.as_list()), t.dtype.name,
                      int(np.prod(t.shape.as_list())) * t.dtype.size)
  return sorted(kept.values(), key=lambda r: -r[3])


def max_batch(config: BertConfig, seq: int, budget_bytes: int, upper: int = 1 << 14,
              **kwargs) -> int:
  """Largest batch whose ``estimate(...).total`` fits ``budget_bytes`` (0 if none does)."""
  lo, hi = 0, upper + 1
  while hi - lo > 1:  # total is non-decreasing in the batch
    mid = (lo + hi) // 2
    if estimate(config, mid, seq, **kwargs).total <= budget_bytes:
      lo = mid
    else:
      hi = mid
  return lo
