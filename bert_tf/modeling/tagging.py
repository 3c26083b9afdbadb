"""Token classification: a linear layer over every position of ``sequence_output``, after
dropout (the BERT paper's NER head: no CRF, the first sub-token of each word is classified)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope
from bert_tf.modeling.encoder import BertEncoder
from bert_tf.modeling.heads import _LinearHead


class TaggingHead(_LinearHead):
  """dropout(sequence_output [B, S, H]) -> float32 logits [B, S, num_labels]; weights in
  google's layout (``output_weights`` [num_labels, H], ``output_bias``)."""

  def __init__(self, num_labels, hidden_size, initializer_range, dropout_rate=0.1, **kwargs):
    super().__init__(num_labels, hidden_size, initializer_range, **kwargs)
    self.dropout_rate = dropout_rate

  def call(self, sequence_output, seed=None, training=False):
    x = dropout_lib.dropout(sequence_output, self.dropout_rate, seed, training)
    batch, length = tf.shape(x)[0], tf.shape(x)[1]
    # [B*S, H] x [L, H]^T as one rank-2 product.
    logits = self._logits(tf.reshape(x, [-1, self.hidden_size]))
    return tf.reshape(logits, [batch, length, self.num_outputs])


class BertTagger(tf_keras.Model):
  """Encoder + ``TaggingHead``. Outputs: the encoder's dict plus ``logits`` float32
  [B, S, num_labels]."""

  def __init__(self, encoder: BertEncoder, num_labels: int, dropout_rate: float | None = None,
               **kwargs):
    kwargs.setdefault("name", "bert_tagger")
    super().__init__(**kwargs)
    config = encoder.bert_config
    self.encoder = encoder
    # The pooler does not feed the tags: frozen, so the train step (which wants a gradient for
    # every trainable variable) does not see it, and weight decay leaves it as loaded.
    encoder.pooler.trainable = False
    self.num_labels = num_labels
    rate = config.hidden_dropout_prob if dropout_rate is None else dropout_rate
    self.tagger = TaggingHead(num_labels, config.hidden_size, config.initializer_range,
                              dropout_rate=rate, name="tagger")
    with tf.name_scope(self.name):
      build_in_scope(self.tagger)
    self.built = True

  def call(self, inputs, training=False, dropout_seed=None):
    seed = None
    if training and self.tagger.dropout_rate > 0:
      seed = dropout_seed if dropout_seed is not None else \
          self.encoder.dropout_generator.make_seeds(1)[:, 0]
    outputs = dict(self.encoder(inputs, training=training, dropout_seed=None if seed is None
                                else dropout_lib.site_seed(seed, 0)))
    outputs["logits"] = self.tagger(outputs["sequence_output"], training=training,
                                    seed=None if seed is None else dropout_lib.site_seed(seed, 1))
    return outputs
