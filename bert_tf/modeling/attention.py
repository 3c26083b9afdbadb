"""Multi-head self-attention, with the attention core optionally recomputed.

Shape legend: B batch, S sequence, F "from" (query) positions, T "to" (key) positions,
N heads, D head size, H hidden size = N * D.
"""
import math

import tensorflow as tf
import tf_keras

from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope


def attention_bias(input_mask, dtype=tf.float32):
  """input_mask: int Tensor [B, T], 1 = real token -> additive float Tensor [B, 1, 1, T].

  Padding gets -10000 as in google's modeling.py: exp(-10000) is 0 in float32, and the value
  stays finite in float16.
  """
  mask = tf.cast(input_mask, dtype)
  return (1.0 - mask)[:, tf.newaxis, tf.newaxis, :] * -10000.0


class SelfAttention(tf_keras.layers.Layer):
  """Query/key/value projections and scaled dot-product attention (no output projection).

  With ``recompute_core=True`` the core (scores, softmax, dropout, weighted sum: the
  O(S^2) tensors) runs under ``tf.recompute_grad``; its dropout replays the same mask.
  """

  def __init__(self, num_heads, head_size, dropout_rate, initializer_range,
               recompute_core=False, **kwargs):
    super().__init__(**kwargs)
    self.num_heads = num_heads
    self.head_size = head_size
    self.dropout_rate = dropout_rate
    self.initializer_range = initializer_range
    self.recompute_core = recompute_core
    hidden = num_heads * head_size
    dense = lambda name: tf_keras.layers.Dense(
        hidden, kernel_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=initializer_range), name=name)
    self.query = dense("query")
    self.key = dense("key")
    self.value = dense("value")

  def build(self, input_shape):
    hidden = self.num_heads * self.head_size
    for layer in (self.query, self.key, self.value):
      build_in_scope(layer, [None, None, hidden])
    super().build(input_shape)

  def _core(self, query, key, value, bias, seed, training):
    """query/key/value: [B, N, S, D] compute dtype -> context [B, N, F, D]."""
    # Heads-major layout and plain batched matmuls: on CPU (oneDNN) this runs forward and
    # backward about twice as fast as the equivalent einsums over [B, S, N, D], which
    # transpose their operands internally on every call.
    scores = tf.matmul(query, key, transpose_b=True)  # [B, N, F, T]
    # Softmax in float32: fp16 exponentials of unnormalised scores overflow easily.
    scores = tf.cast(scores, tf.float32) + bias
    probs = tf.nn.softmax(scores, axis=-1)
    probs = dropout_lib.dropout(probs, self.dropout_rate, seed, training)
    return tf.matmul(tf.cast(probs, value.dtype), value)

  def call(self, x, bias, seed=None, training=False):
    """x: [B, S, H] compute dtype; bias: float32 [B, 1, 1, S] -> context [B, S, H]."""
    batch, seq = tf.shape(x)[0], tf.shape(x)[1]
    split = lambda t: tf.transpose(
        tf.reshape(t, [batch, seq, self.num_heads, self.head_size]), [0, 2, 1, 3])
    # Scaling the query (S*H values) is cheaper than scaling the scores (N*S*S values).
    query = split(self.query(x) * tf.cast(1.0 / math.sqrt(self.head_size), x.dtype))
    key = split(self.key(x))
    value = split(self.value(x))
    core = lambda q, k, v: self._core(q, k, v, bias, seed, training)
    if self.recompute_core and training:
      # bias and seed enter by closure: graph-mode custom gradients take no keyword
      # arguments, and neither needs a gradient.
      core = tf.recompute_grad(core)
    context = tf.transpose(core(query, key, value), [0, 2, 1, 3])  # [B, F, N, D]
    return tf.reshape(context, [batch, seq, self.num_heads * self.head_size])

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads, "head_size": self.head_size,
            "dropout_rate": self.dropout_rate, "initializer_range": self.initializer_range,
            "recompute_core": self.recompute_core}
