"""A BERT task model split into pipeline stages: variables placed on their stage's device, and
one forward function per stage that reuses the model's own layers.

The model is built once, whole, by the task (so variable names and checkpoints are those of a
non-pipelined model); a variable creator scope puts each variable on the device of the stage
that owns its module. TensorFlow has no per-layer device placement for an already-written
Keras model, hence the creator scope (it sees each variable's name scope).
"""
from __future__ import annotations

import contextlib
import re

import tensorflow as tf

from bert_tf.modeling import attention as attention_lib
from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.models import BertClassifier, BertPretrainer

_LAYER = re.compile(r"(?:^|/)bert_encoder[^/]*/layer_(\d+)(?:/|$)")
_EMBEDDINGS = re.compile(r"(?:^|/)bert_encoder[^/]*/embeddings(?:/|$)")
_MODEL = re.compile(r"^bert_(?:encoder|pretrainer|classifier)")


def owner_stage(scope: str, layouts) -> int | None:
  """The stage owning a variable created under name scope ``scope`` (None: not the model's)."""
  if not _MODEL.match(scope):
    return None
  layer = _LAYER.search(scope)
  if layer:
    return next(s for s, l in enumerate(layouts) if int(layer.group(1)) in l.layers)
  if _EMBEDDINGS.search(scope):
    return next(s for s, l in enumerate(layouts) if l.embeddings)
  return next(s for s, l in enumerate(layouts) if l.heads)   # pooler, heads


_ACTIVE = []   # (layouts, devices) of the placement scopes entered, innermost last


@contextlib.contextmanager
def placement(layouts, devices):
  """Within: model variables are created on ``devices[owner_stage]``; the rest as usual. The
  innermost scope decides (an outer creator runs inside an inner one and would win)."""
  def creator(next_creator, **kwargs):
    layouts_, devices_ = _ACTIVE[-1]
    stage = owner_stage(tf.get_current_name_scope(), layouts_)
    if stage is None:
      return next_creator(**kwargs)
    with tf.device(devices_[stage]):
      return next_creator(**kwargs)

  _ACTIVE.append((layouts, devices))
  try:
    with tf.variable_creator_scope(creator):
      yield
  finally:
    _ACTIVE.pop()


class StagedModel:
  """Per-stage forward functions over a ``BertPretrainer`` or ``BertClassifier``.

  ``forward(s, x, features, seed, training)``: stage 0 takes the features, later stages the
  previous stage's hidden states [B, S, H]; the heads stage returns the model's output dict
  (``mlm_logits`` / ``nsp_logits`` or ``logits``), others the hidden states. ``seed`` is the
  micro-batch's dropout seed, split over sites as the whole model's ``call`` splits it, so a
  staged forward equals the model's.
  """

  def __init__(self, model, layouts):
    if not isinstance(model, (BertPretrainer, BertClassifier)):
      raise TypeError(f"pipeline stages are defined for BertPretrainer and BertClassifier, "
                      f"not {type(model).__name__}")
    self.model, self.layouts = model, layouts
    self.encoder = model.encoder
    self.num_stages = len(layouts)
    stage_of = {}
    for v in model.trainable_variables:
      stage_of[v.ref()] = owner_stage(v.name.rsplit(":", 1)[0].rsplit("/", 1)[0], layouts)
    self.stage_of = stage_of
    self.variables = [[v for v in model.trainable_variables if stage_of[v.ref()] == s]
                      for s in range(self.num_stages)]
    # The tied MLM output reads the embedding table on the heads stage too.
    self.read_variables = [list(vs) for vs in self.variables]
    if isinstance(model, BertPretrainer):
      table = self.encoder.get_embedding_table()
      last = self.num_stages - 1
      if stage_of[table.ref()] != last:
        self.read_variables[last].append(table)

  def _seeds(self, seed, training):
    """(encoder seed, head seed) as the model's ``call`` derives them."""
    if not training or seed is None:
      return None, None
    if isinstance(self.model, BertClassifier):
      return dropout_lib.site_seed(seed, 0), dropout_lib.site_seed(seed, 1)
    return seed, None

  def forward(self, s, x, features, seed, training=True):
    layout, encoder = self.layouts[s], self.encoder
    encoder_seed, head_seed = self._seeds(seed, training)
    uses_dropout = training and encoder._uses_dropout and encoder_seed is not None
    site = lambda i: dropout_lib.site_seed(encoder_seed, i) if uses_dropout else None  # noqa
    if layout.embeddings:
      x = encoder.embeddings(features["input_ids"], features["segment_ids"], site(0),
                             training=training)
    if layout.layers:
      bias = attention_lib.attention_bias(features["input_mask"])
    for i in layout.layers:
      x = encoder.run_block(i, x, bias, site(i + 1), training)
    if not layout.heads:
      return x
    pooled = encoder.pooler(x[:, 0, :])
    if isinstance(self.model, BertPretrainer):
      return {"sequence_output": x, "pooled_output": pooled,
              "mlm_logits": self.model.masked_lm(x, features["masked_lm_positions"]),
              "nsp_logits": self.model.next_sentence(pooled)}
    return {"sequence_output": x, "pooled_output": pooled,
            "logits": self.model.classifier(pooled, seed=head_seed, training=training)}
