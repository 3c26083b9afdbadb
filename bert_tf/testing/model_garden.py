"""Model Garden (tf-models-official) as the independent reference implementation.

``copy_encoder_weights`` puts our encoder's weights into Model Garden's ``BertEncoderV2`` by
walking Model Garden's layers (not through our google-name table), so a mistake in our table
cannot hide itself in the parity tests.
"""
import tensorflow as tf
import tf_keras

from bert_tf.configs import BertConfig

_MG_ACTIVATIONS = {
    "gelu": lambda x: tf_keras.activations.gelu(x, approximate=True),
    "gelu_exact": lambda x: tf_keras.activations.gelu(x, approximate=False),
    "relu": tf_keras.activations.relu, "tanh": tf_keras.activations.tanh,
}


def model_garden_encoder(config: BertConfig):
  from official.nlp.modeling import networks
  encoder = networks.BertEncoderV2(
      vocab_size=config.vocab_size, hidden_size=config.hidden_size,
      num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
      max_sequence_length=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, inner_dim=config.intermediate_size,
      inner_activation=_MG_ACTIVATIONS[config.hidden_act],
      output_dropout=config.hidden_dropout_prob,
      attention_dropout=config.attention_probs_dropout_prob)
  ids = tf.zeros([1, 4], tf.int32)
  encoder({"input_word_ids": ids, "input_mask": tf.ones_like(ids), "input_type_ids": ids})
  return encoder


def model_garden_inputs(features):
  return {"input_word_ids": features["input_ids"], "input_mask": features["input_mask"],
          "input_type_ids": features["segment_ids"]}


def copy_encoder_weights(ours, mg) -> None:
  """Assigns every trainable variable of Model Garden's encoder from ours; asserts none is left."""
  cfg = ours.bert_config
  n, d, h = cfg.num_attention_heads, cfg.head_size, cfg.hidden_size
  assigned = []

  def put(target, value, shape=None):
    target.assign(tf.reshape(value, shape) if shape else value)
    assigned.append(target.ref())

  put(mg._embedding_layer.embeddings, ours.embeddings.word_embeddings)
  put(mg._position_embedding_layer._position_embeddings, ours.embeddings.position_embeddings)
  put(mg._type_embedding_layer.embeddings, ours.embeddings.token_type_embeddings)
  put(mg._embedding_norm_layer.gamma, ours.embeddings.layer_norm.gamma)
  put(mg._embedding_norm_layer.beta, ours.embeddings.layer_norm.beta)
  for block, mg_block in zip(ours.blocks, mg._transformer_layers, strict=True):
    mha = mg_block._attention_layer
    for ours_dense, mg_dense in ((block.attention.query, mha._query_dense),
                                 (block.attention.key, mha._key_dense),
                                 (block.attention.value, mha._value_dense)):
      put(mg_dense.kernel, ours_dense.kernel, [h, n, d])
      put(mg_dense.bias, ours_dense.bias, [n, d])
    put(mha._output_dense.kernel, block.attention_output.kernel, [n, d, h])
    put(mha._output_dense.bias, block.attention_output.bias)
    for ours_ln, mg_ln in ((block.attention_layer_norm, mg_block._attention_layer_norm),
                           (block.output_layer_norm, mg_block._output_layer_norm)):
      put(mg_ln.gamma, ours_ln.gamma)
      put(mg_ln.beta, ours_ln.beta)
    put(mg_block._intermediate_dense.kernel, block.intermediate.kernel)
    put(mg_block._intermediate_dense.bias, block.intermediate.bias)
    put(mg_block._output_dense.kernel, block.output_dense.kernel)
    put(mg_block._output_dense.bias, block.output_dense.bias)
  put(mg._pooler_layer.kernel, ours.pooler.kernel)
  put(mg._pooler_layer.bias, ours.pooler.bias)
  left = [v.name for v in mg.trainable_variables if v.ref() not in set(assigned)]
  assert not left, f"Model Garden variables not assigned: {left}"
