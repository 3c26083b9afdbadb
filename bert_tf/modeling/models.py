"""Task models that take an encoder: pretraining (MLM + NSP) and sequence classification."""
from __future__ import annotations

import tf_keras

import tensorflow as tf

from bert_tf.modeling import dropout as dropout_lib
from bert_tf.modeling.building import build_in_scope
from bert_tf.modeling.encoder import BertEncoder
from bert_tf.modeling.heads import ClassifierHead, MaskedLMHead, NextSentenceHead


class BertPretrainer(tf_keras.Model):
  """Encoder + masked-LM head + next-sentence head.

  Inputs: dict with ``input_ids``, ``input_mask``, ``segment_ids`` [B, S] and
  ``masked_lm_positions`` [B, P] (google's feature names). Outputs: the encoder's dict plus
  ``mlm_logits`` float32 [B, P, vocab_size] and ``nsp_logits`` float32 [B, 2].
  """

  def __init__(self, encoder: BertEncoder, **kwargs):
    kwargs.setdefault("name", "bert_pretrainer")
    super().__init__(**kwargs)
    config = encoder.bert_config
    self.encoder = encoder
    self.masked_lm = MaskedLMHead(encoder.get_embedding_table(), config.hidden_act,
                                  config.initializer_range, name="masked_lm")
    self.next_sentence = NextSentenceHead(config.hidden_size, config.initializer_range,
                                          name="next_sentence")
    with tf.name_scope(self.name):
      build_in_scope(self.masked_lm)
      build_in_scope(self.next_sentence)
    self.built = True

  def call(self, inputs, training=False, dropout_seed=None):
    outputs = dict(self.encoder(inputs, training=training, dropout_seed=dropout_seed))
    outputs["mlm_logits"] = self.masked_lm(outputs["sequence_output"],
                                           inputs["masked_lm_positions"])
    outputs["nsp_logits"] = self.next_sentence(outputs["pooled_output"])
    return outputs


class BertClassifier(tf_keras.Model):
  """Encoder + dropout + linear layer on the pooled output (google's run_classifier head).

  Outputs: the encoder's dict plus ``logits`` float32 [B, num_labels].
  """

  def __init__(self, encoder: BertEncoder, num_labels: int, dropout_rate: float | None = None,
               **kwargs):
    kwargs.setdefault("name", "bert_classifier")
    super().__init__(**kwargs)
    config = encoder.bert_config
    self.encoder = encoder
    self.num_labels = num_labels
    rate = config.hidden_dropout_prob if dropout_rate is None else dropout_rate
    self.classifier = ClassifierHead(num_labels, config.hidden_size, config.initializer_range,
                                     dropout_rate=rate, name="classifier")
    with tf.name_scope(self.name):
      build_in_scope(self.classifier)
    self.built = True

  def call(self, inputs, training=False, dropout_seed=None):
    seed = None
    if training and self.classifier.dropout_rate > 0:
      seed = dropout_seed if dropout_seed is not None else \
          self.encoder.dropout_generator.make_seeds(1)[:, 0]
    encoder_seed = None if seed is None else dropout_lib.site_seed(seed, 0)
    outputs = dict(self.encoder(inputs, training=training, dropout_seed=encoder_seed))
    head_seed = None if seed is None else dropout_lib.site_seed(seed, 1)
    outputs["logits"] = self.classifier(outputs["pooled_output"], seed=head_seed,
                                        training=training)
    return outputs
