"""Output heads: masked LM (tied to the word embeddings), next sentence, classification.

Each head returns float32 logits whatever the compute dtype: the losses' log-softmax needs
float32 range.
"""
import tensorflow as tf
import tf_keras

from bert_tf.modeling import activations
from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope


def gather_positions(sequence, positions):
  """sequence [B, S, H], positions int [B, P] -> [B, P, H]."""
  return tf.gather(sequence, tf.cast(positions, tf.int32), batch_dims=1)


class MaskedLMHead(tf_keras.layers.Layer):
  """google's ``cls/predictions``: dense + activation + LayerNorm, then the transposed word
  embedding table plus a per-token output bias, computed only at the masked positions."""

  def __init__(self, embedding_table, hidden_act, initializer_range, **kwargs):
    super().__init__(**kwargs)
    self.embedding_table = embedding_table  # the encoder's float32 variable, shared (tied)
    vocab_size, hidden_size = embedding_table.shape
    self.transform = tf_keras.layers.Dense(
        hidden_size, kernel_initializer=tf_keras.initializers.TruncatedNormal(
            stddev=initializer_range), name="transform")
    self.layer_norm = tf_keras.layers.LayerNormalization(
        epsilon=1e-12, dtype="float32", name="transform_layer_norm")
    self._activation = activations.get_activation(hidden_act)
    self._hidden_act = hidden_act
    self._initializer_range = initializer_range

  def build(self, input_shape=None):
    # Head weights are float32 variables read as float32 (experimental_autocast=False): logits
    # and their bias are added in float32.
    vocab_size, hidden_size = self.embedding_table.shape
    build_in_scope(self.transform, [None, None, hidden_size])
    build_in_scope(self.layer_norm, [None, None, hidden_size])
    self.output_bias = self.add_weight(
        "output_bias", shape=[vocab_size], initializer="zeros", dtype=tf.float32,
        experimental_autocast=False)
    super().build(input_shape)

  def call(self, sequence_output, masked_lm_positions):
    """-> float32 logits [batch_size, max_predictions_per_seq, vocab_size]."""
    vocab_size, hidden_size = self.embedding_table.shape
    batch, predictions = tf.shape(masked_lm_positions)[0], tf.shape(masked_lm_positions)[1]
    x = gather_positions(sequence_output, masked_lm_positions)
    x = self._activation(self.transform(x))
    x = tf.cast(self.layer_norm(tf.cast(x, tf.float32)), self.compute_dtype)
    table = tf.cast(self.embedding_table, self.compute_dtype)
    # A rank-2 product [B*P, H] x [V, H]^T: with [B, P, H] it would be a broadcasting batched
    # matmul whose gradient for the table materialises [B, V, H] and then sums it over B.
    logits = tf.matmul(tf.reshape(x, [-1, hidden_size]), table, transpose_b=True)
    logits = tf.nn.bias_add(tf.cast(logits, tf.float32), self.output_bias)
    return tf.reshape(logits, [batch, predictions, vocab_size])


class _LinearHead(tf_keras.layers.Layer):
  """logits = x W^T + b with google's ``output_weights`` layout [num_outputs, hidden_size]."""

  def __init__(self, num_outputs, hidden_size, initializer_range, **kwargs):
    super().__init__(**kwargs)
    self.num_outputs = num_outputs
    self.hidden_size = hidden_size
    self.initializer_range = initializer_range

  def build(self, input_shape=None):
    self.output_weights = self.add_weight(
        "output_weights", shape=[self.num_outputs, self.hidden_size],
        initializer=tf_keras.initializers.TruncatedNormal(stddev=self.initializer_range),
        dtype=tf.float32, experimental_autocast=False)
    self.output_bias = self.add_weight(
        "output_bias", shape=[self.num_outputs], initializer="zeros", dtype=tf.float32,
        experimental_autocast=False)
    super().build(input_shape)

  def _logits(self, x):
    weights = tf.cast(self.output_weights, self.compute_dtype)
    logits = tf.matmul(tf.cast(x, self.compute_dtype), weights, transpose_b=True)
    return tf.cast(logits, tf.float32) + self.output_bias


class NextSentenceHead(_LinearHead):
  """google's ``cls/seq_relationship``: pooled_output [B, H] -> float32 logits [B, 2]."""

  def __init__(self, hidden_size, initializer_range, **kwargs):
    super().__init__(2, hidden_size, initializer_range, **kwargs)

  def call(self, pooled_output):
    return self._logits(pooled_output)


class ClassifierHead(_LinearHead):
  """google run_classifier's head: dropout(pooled_output) -> float32 logits [B, num_labels]."""

  def __init__(self, num_labels, hidden_size, initializer_range, dropout_rate=0.1, **kwargs):
    super().__init__(num_labels, hidden_size, initializer_range, **kwargs)
    self.dropout_rate = dropout_rate

  def call(self, pooled_output, seed=None, training=False):
    x = dropout_lib.dropout(pooled_output, self.dropout_rate, seed, training)
    return self._logits(x)
