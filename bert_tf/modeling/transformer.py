"""One post-LayerNorm transformer block, as in google's ``transformer_model``."""
import tensorflow as tf
import tf_keras

from bert_tf.modeling import activations
from bert_tf.modeling import attention as attention_lib
from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope


class TransformerBlock(tf_keras.layers.Layer):
  """attention -> dense -> dropout -> LN(+x) -> dense+act -> dense -> dropout -> LN(+a).

  Residual sums and LayerNorms run in float32 under mixed precision (the LayerNorm variance of
  fp16 activations loses precision); results are cast back to the compute dtype.
  """

  def __init__(self, hidden_size, num_heads, intermediate_size, hidden_act, hidden_dropout,
               attention_dropout, initializer_range, recompute_attention_core=False, **kwargs):
    super().__init__(**kwargs)
    self.hidden_size = hidden_size
    self.num_heads = num_heads
    self.intermediate_size = intermediate_size
    self.hidden_act = hidden_act
    self.hidden_dropout = hidden_dropout
    self.attention_dropout = attention_dropout
    self.initializer_range = initializer_range
    self.recompute_attention_core = recompute_attention_core
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=initializer_range)
    self.attention = attention_lib.SelfAttention(
        num_heads, hidden_size // num_heads, attention_dropout, initializer_range,
        recompute_core=recompute_attention_core, name="attention")
    self.attention_output = tf_keras.layers.Dense(
        hidden_size, kernel_initializer=init(), name="attention_output")
    self.attention_layer_norm = tf_keras.layers.LayerNormalization(
        epsilon=1e-12, dtype="float32", name="attention_layer_norm")
    self.intermediate = tf_keras.layers.Dense(
        intermediate_size, kernel_initializer=init(), name="intermediate")
    self.output_dense = tf_keras.layers.Dense(
        hidden_size, kernel_initializer=init(), name="output")
    self.output_layer_norm = tf_keras.layers.LayerNormalization(
        epsilon=1e-12, dtype="float32", name="output_layer_norm")
    self._activation = activations.get_activation(hidden_act)

  def build(self, input_shape=None):
    h, i = self.hidden_size, self.intermediate_size
    for layer, width in ((self.attention, h), (self.attention_output, h),
                         (self.attention_layer_norm, h), (self.intermediate, h),
                         (self.output_dense, i), (self.output_layer_norm, h)):
      build_in_scope(layer, [None, None, width])
    super().build(input_shape)

  def call(self, x, bias, seed=None, training=False):
    """x: [B, S, H] compute dtype; bias: float32 [B, 1, 1, S]; seed: int [2] or None."""
    seeds = [None] * 3 if seed is None else [dropout_lib.site_seed(seed, i) for i in range(3)]
    context = self.attention(x, bias, seeds[0], training=training)
    a = self.attention_output(context)
    a = dropout_lib.dropout(a, self.hidden_dropout, seeds[1], training)
    a = self.attention_layer_norm(tf.cast(a, tf.float32) + tf.cast(x, tf.float32))
    a = tf.cast(a, self.compute_dtype)
    activation = self._activation
    if self.recompute_attention_core and training:
      # Selective recompute also re-runs the activation in the backward pass: autodiff of
      # the tanh GELU keeps four [B, S, intermediate] tensors (its input, tanh, 0.5x, 1 + tanh)
      # besides the output the next dense layer needs; recomputed, only the input is kept
      # (BERT-Base, seq 512: 19 MB less per example and layer) for a few elementwise passes.
      activation = tf.recompute_grad(activation)
    h = activation(self.intermediate(a))
    out = self.output_dense(h)
    out = dropout_lib.dropout(out, self.hidden_dropout, seeds[2], training)
    out = self.output_layer_norm(tf.cast(out, tf.float32) + tf.cast(a, tf.float32))
    return tf.cast(out, self.compute_dtype)

  def get_config(self):
    return {**super().get_config(), "hidden_size": self.hidden_size,
            "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
            "hidden_act": self.hidden_act, "hidden_dropout": self.hidden_dropout,
            "attention_dropout": self.attention_dropout,
            "initializer_range": self.initializer_range,
            "recompute_attention_core": self.recompute_attention_core}
