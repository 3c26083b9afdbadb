"""The BERT encoder: embeddings, N post-LN transformer blocks, pooler."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from bert_tf.configs import RECOMPUTE_MODES, BertConfig
from bert_tf.modeling import attention as attention_lib
from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope
from bert_tf.modeling.embeddings import BertEmbeddings
from bert_tf.modeling.transformer import TransformerBlock

# none: keep every activation. full: each transformer block under tf.recompute_grad (keeps
# only block inputs). selective: the attention core (the O(S^2) scores/probs) and the FFN
# activation are recomputed: both cheap to recompute and large to keep.

# Model Garden's input names, accepted as aliases of google's feature names.
_INPUT_ALIASES = {"input_word_ids": "input_ids", "input_type_ids": "segment_ids"}


def _canonical_inputs(inputs):
  if not isinstance(inputs, dict):
    raise TypeError("BertEncoder expects a dict with 'input_ids' and optionally "
                    f"'input_mask' and 'segment_ids'; got {type(inputs).__name__}")
  inputs = {_INPUT_ALIASES.get(k, k): v for k, v in inputs.items()}
  if "input_ids" not in inputs:
    raise KeyError(f"BertEncoder inputs need 'input_ids'; got keys {sorted(inputs)}")
  ids = inputs["input_ids"]
  mask = inputs.get("input_mask")
  segments = inputs.get("segment_ids")
  return ids, tf.ones_like(ids) if mask is None else mask, \
      tf.zeros_like(ids) if segments is None else segments


class BertEncoder(tf_keras.Model):
  """BERT encoder returning ``sequence_output``, ``pooled_output`` and ``encoder_outputs``.

  Args:
    config: a ``BertConfig``.
    recompute: one of ``RECOMPUTE_MODES``.
    seed: seed of the dropout generator used when ``call`` gets no ``dropout_seed``
      (``None``: non-deterministic).

  Call with a dict of int Tensors ``input_ids``, ``input_mask``, ``segment_ids``, each
  [batch_size, seq_length]. Returns a dict:
    sequence_output: [batch_size, seq_length, hidden_size], compute dtype, last block.
    pooled_output: [batch_size, hidden_size], tanh(dense(first token)).
    encoder_outputs: list of num_hidden_layers Tensors [batch_size, seq_length, hidden_size].
  """

  def __init__(self, config: BertConfig, recompute: str = "none", seed: int | None = None,
               **kwargs):
    kwargs.setdefault("name", "bert_encoder")
    super().__init__(**kwargs)
    if recompute not in RECOMPUTE_MODES:
      raise ValueError(f"recompute is {recompute!r}; expected one of {RECOMPUTE_MODES}")
    self.bert_config = config
    self.recompute = recompute
    self.seed = seed
    self.embeddings = BertEmbeddings(
        config.vocab_size, config.hidden_size, config.max_position_embeddings,
        config.type_vocab_size, config.hidden_dropout_prob, config.initializer_range,
        name="embeddings")
    self.blocks = [
        TransformerBlock(
            config.hidden_size, config.num_attention_heads, config.intermediate_size,
            config.hidden_act, config.hidden_dropout_prob, config.attention_probs_dropout_prob,
            config.initializer_range, recompute_attention_core=(recompute == "selective"),
            name=f"layer_{i}")
        for i in range(config.num_hidden_layers)]
    self.pooler = tf_keras.layers.Dense(
        config.hidden_size, activation="tanh",
        kernel_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=config.initializer_range), name="pooler")
    self._uses_dropout = (config.hidden_dropout_prob > 0 or
                          config.attention_probs_dropout_prob > 0)
    # Draws one seed per training call when the caller passes none; its state is checkpointed
    # with the model, so a resumed run continues the same dropout stream.
    self.dropout_generator = (tf.random.Generator.from_non_deterministic_state() if seed is None
                              else tf.random.Generator.from_seed(seed))
    self.build(None)

  def build(self, input_shape=None):
    # Every variable exists after construction: checkpoints can be restored before the first
    # call, and no variable is ever created inside a recomputed (custom-gradient) block.
    with tf.name_scope(self.name):
      build_in_scope(self.embeddings)
      for block in self.blocks:
        build_in_scope(block)
      build_in_scope(self.pooler, [None, self.bert_config.hidden_size])
    self.built = True

  def get_embedding_table(self):
    """The float32 word-embedding variable [vocab_size, hidden_size] (tied to the MLM output)."""
    return self.embeddings.word_embeddings

  def call(self, inputs, training=False, dropout_seed=None):
    """See the class docstring. ``dropout_seed``: optional int [2] Tensor for this call."""
    input_ids, input_mask, segment_ids = _canonical_inputs(inputs)
    training = bool(training)
    seed = None
    if training and self._uses_dropout:
      seed = dropout_seed if dropout_seed is not None else \
          self.dropout_generator.make_seeds(1)[:, 0]
    site = lambda i: None if seed is None else dropout_lib.site_seed(seed, i)

    bias = attention_lib.attention_bias(input_mask)  # float32 [B, 1, 1, S]
    x = self.embeddings(input_ids, segment_ids, site(0), training=training)
    encoder_outputs = []
    for i in range(len(self.blocks)):
      x = self.run_block(i, x, bias, site(i + 1), training)
      encoder_outputs.append(x)
    pooled = self.pooler(x[:, 0, :])
    return {"sequence_output": x, "pooled_output": pooled, "encoder_outputs": encoder_outputs}

  def run_block(self, i: int, x, bias, seed, training: bool):
    """Block ``i`` on ``x`` (the encoder's loop and the pipeline's stages both run blocks
    here). Under full recompute only the block input is kept for backprop; the block re-runs
    (same dropout seed, hence the same masks) during the backward pass."""
    block = self.blocks[i]
    if self.recompute == "full" and training:
      return tf.recompute_grad(lambda h: block(h, bias, seed, training=True))(x)
    return block(x, bias, seed, training=training)

  def get_config(self):
    return {"config": self.bert_config.to_dict(), "recompute": self.recompute,
            "seed": self.seed, "name": self.name}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    return cls(BertConfig.from_dict(config.pop("config")), **config)
