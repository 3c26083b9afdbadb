"""BERT's input embeddings: word + position + token type, then LayerNorm and dropout."""
import tensorflow as tf
import tf_keras

from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope


class BertEmbeddings(tf_keras.layers.Layer):
  """Sum of word, learned absolute position and token-type embeddings.

  Tables are float32 variables under every policy. The sum and the LayerNorm run in float32
  (for numeric stability, as google's fp16 forks do); the output is cast to the compute dtype.
  """

  def __init__(self, vocab_size, hidden_size, max_position_embeddings, type_vocab_size,
               dropout_rate, initializer_range, **kwargs):
    super().__init__(**kwargs)
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.dropout_rate = dropout_rate
    self.initializer_range = initializer_range
    self.layer_norm = tf_keras.layers.LayerNormalization(
        axis=-1, epsilon=1e-12, dtype="float32", name="layer_norm")

  def build(self, input_shape=None):
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=self.initializer_range)
    # experimental_autocast=False: under a mixed policy Keras would hand out these tables
    # already cast to float16, and the embedding sum below is meant to be float32.
    # Variables are created explicitly here (not lazily on first call) so that a block wrapped
    # in tf.recompute_grad never creates variables inside a custom gradient.
    self.word_embeddings = self.add_weight(
        "word_embeddings", shape=[self.vocab_size, self.hidden_size], initializer=init(),
        dtype=tf.float32, experimental_autocast=False)
    self.position_embeddings = self.add_weight(
        "position_embeddings", shape=[self.max_position_embeddings, self.hidden_size],
        initializer=init(), dtype=tf.float32, experimental_autocast=False)
    self.token_type_embeddings = self.add_weight(
        "token_type_embeddings", shape=[self.type_vocab_size, self.hidden_size],
        initializer=init(), dtype=tf.float32, experimental_autocast=False)
    build_in_scope(self.layer_norm, [None, None, self.hidden_size])
    super().build(input_shape)

  def call(self, input_ids, segment_ids, seed=None, training=False):
    """input_ids, segment_ids: int Tensors [batch_size, seq_length] -> [B, S, H] compute dtype."""
    seq_length = tf.shape(input_ids)[1]
    tf.debugging.assert_less_equal(
        seq_length, self.max_position_embeddings,
        message="sequence length exceeds max_position_embeddings")
    x = tf.gather(self.word_embeddings, input_ids)
    x += tf.gather(self.token_type_embeddings, segment_ids)
    x += self.position_embeddings[tf.newaxis, :seq_length, :]
    x = tf.cast(self.layer_norm(x), self.compute_dtype)
    return dropout_lib.dropout(x, self.dropout_rate, seed, training)

  def get_config(self):
    return {**super().get_config(), "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "max_position_embeddings": self.max_position_embeddings,
            "type_vocab_size": self.type_vocab_size, "dropout_rate": self.dropout_rate,
            "initializer_range": self.initializer_range}
