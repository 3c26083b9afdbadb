"""Explicit layer building with Keras-style variable names."""
import tensorflow as tf


def build_in_scope(layer, input_shape=None):
  """Builds ``layer`` under its name scope, as Keras' lazy build would.

  The model builds every layer up front (so no variable is created inside a recomputed block);
  the name scope keeps variable names such as ``bert_encoder/layer_0/attention/query/kernel``,
  which weight-decay exclusions ("layer_norm", "bias") match against.
  """
  with tf.name_scope(layer.name):
    layer.build(input_shape)
