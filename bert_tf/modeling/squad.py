"""SQuAD's span model: the encoder's sequence output -> start and end logits per token, with
google run_squad's head (``cls/squad/output_weights`` [2, hidden], ``cls/squad/output_bias``
[2], no dropout before it)."""
from __future__ import annotations

import tensorflow as tf
import tf_keras

from bert_tf.modeling.building import build_in_scope
from bert_tf.modeling.encoder import BertEncoder
from bert_tf.modeling.heads import _LinearHead


class SpanHead(_LinearHead):
  """sequence_output [B, S, H] -> float32 logits [B, S, 2] (start, end), google's layout."""

  def __init__(self, hidden_size, initializer_range, **kwargs):
    super().__init__(2, hidden_size, initializer_range, **kwargs)

  def call(self, sequence_output):
    shape = tf.shape(sequence_output)
    # One rank-2 matmul [B*S, H] x [2, H]^T, as google's create_model.
    logits = self._logits(tf.reshape(sequence_output, [-1, self.hidden_size]))
    return tf.reshape(logits, [shape[0], shape[1], 2])


class BertSpanLabeler(tf_keras.Model):
  """Encoder + span head.

  Inputs: dict with ``input_ids``, ``input_mask``, ``segment_ids`` [B, S]. Outputs: the
  encoder's dict plus ``logits`` float32 [B, S, 2] and its halves ``start_logits`` and
  ``end_logits`` float32 [B, S]. The encoder's pooler is frozen (unused, as in google's).
  """

  def __init__(self, encoder: BertEncoder, **kwargs):
    kwargs.setdefault("name", "bert_span_labeler")
    super().__init__(**kwargs)
    config = encoder.bert_config
    self.encoder = encoder
    # google's run_squad reads the sequence output only: the pooler gets no gradient and keeps
    # its pretrained weights (google's optimizer skips variables without a gradient).
    encoder.pooler.trainable = False
    self.span_head = SpanHead(config.hidden_size, config.initializer_range, name="squad")
    with tf.name_scope(self.name):
      build_in_scope(self.span_head)
    self.built = True

  def call(self, inputs, training=False, dropout_seed=None):
    outputs = dict(self.encoder(inputs, training=training, dropout_seed=dropout_seed))
    logits = self.span_head(outputs["sequence_output"])
    outputs.update(logits=logits, start_logits=logits[:, :, 0], end_logits=logits[:, :, 1])
    return outputs
