"""Encoder, heads and task models: shapes, masking, and parity with Model Garden."""
import math

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import configs
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer, activations
from bert_tf.modeling import losses

from bert_tf.testing.model_garden import (copy_encoder_weights, model_garden_encoder,
                                          model_garden_inputs)
from bert_tf.testing.numerics import assert_all_close
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import BATCH, HIDDEN, SEQ, VOCAB, tiny_config

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seq", [1, SEQ, 16])
def test_output_shapes_and_keys(seq):
  config = tiny_config()
  model = BertPretrainer(BertEncoder(config))
  features = pretraining_features(config, seq=seq, predictions=1 if seq < 3 else 3)
  out = model(features)
  assert set(out) >= {"sequence_output", "pooled_output", "encoder_outputs", "mlm_logits",
                      "nsp_logits"}
  assert out["sequence_output"].shape == (BATCH, seq, HIDDEN)
  assert out["pooled_output"].shape == (BATCH, HIDDEN)
  assert len(out["encoder_outputs"]) == config.num_hidden_layers
  assert out["mlm_logits"].shape == (BATCH, features["masked_lm_positions"].shape[1], VOCAB)
  assert out["nsp_logits"].shape == (BATCH, 2)
  classifier = BertClassifier(BertEncoder(config), num_labels=3)
  assert classifier(features)["logits"].shape == (BATCH, 3)


def test_padding_does_not_change_real_tokens():
  config = tiny_config()
  encoder = BertEncoder(config)
  f = pretraining_features(config, padded=False)
  mask = np.ones((BATCH, SEQ), np.int32)
  mask[:, 5:] = 0
  garbage = np.array(f["input_ids"]).copy()
  garbage[:, 5:] = (garbage[:, 5:] + 17) % VOCAB
  a = encoder({"input_ids": f["input_ids"], "input_mask": mask, "segment_ids": f["segment_ids"]})
  b = encoder({"input_ids": garbage, "input_mask": mask, "segment_ids": f["segment_ids"]})
  assert_all_close(a["sequence_output"][:, :5], b["sequence_output"][:, :5], 1e-6, "real tokens")
  assert_all_close(a["pooled_output"], b["pooled_output"], 1e-6, "pooled")


def test_mlm_head_reads_only_masked_positions_and_is_tied():
  config = tiny_config()
  model = BertPretrainer(BertEncoder(config))
  f = pretraining_features(config)
  out = model(f)
  seq = out["sequence_output"]
  position = f["masked_lm_positions"][:, 1:2]
  h = tf.gather(seq, position, batch_dims=1)  # [B, 1, H]
  mlm = model.masked_lm
  x = mlm.layer_norm(activations.gelu(mlm.transform(h)))
  expected = tf.matmul(x, model.encoder.get_embedding_table(), transpose_b=True) + mlm.output_bias
  assert_all_close(out["mlm_logits"][:, 1:2], expected, 1e-5, "MLM logits at position 1")
  # Tied: the head owns no copy of the embedding table.
  table = model.encoder.get_embedding_table()
  assert sum(v is table for v in model.trainable_variables) == 1


def test_activations_match_their_formulas():
  x = tf.constant(np.linspace(-6, 6, 101), tf.float32)
  tanh_gelu = 0.5 * x * (1 + tf.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
  erf_gelu = 0.5 * x * (1 + tf.math.erf(x / math.sqrt(2.0)))
  assert_all_close(activations.get_activation("gelu")(x), tanh_gelu, 1e-6, "gelu")
  assert_all_close(activations.get_activation("gelu_exact")(x), erf_gelu, 1e-6, "gelu_exact")
  with pytest.raises(ValueError, match="swish"):
    activations.get_activation("swish")


@pytest.mark.parametrize("config", [
    tiny_config(),
    tiny_config(hidden_act="gelu_exact", num_hidden_layers=3),
    tiny_config(hidden_act="relu"),
    configs.preset("mini", vocab_size=1000),
    configs.preset("base", vocab_size=2000),
], ids=["tiny-odd", "tiny-gelu_exact", "tiny-relu", "mini", "base"])
def test_parity_with_model_garden_encoder(config, record_property):
  ours = BertEncoder(config)
  mg = model_garden_encoder(config)
  copy_encoder_weights(ours, mg)
  features = pretraining_features(config, batch=4 if config.hidden_size > 256 else BATCH,
                                  seq=SEQ * 3)
  a = ours(features)
  b = mg(model_garden_inputs(features))
  seq_err = assert_all_close(a["sequence_output"], b["sequence_output"], 1e-5, "sequence_output")
  pool_err = assert_all_close(a["pooled_output"], b["pooled_output"], 1e-5, "pooled_output")
  for i, (x, y) in enumerate(zip(a["encoder_outputs"], b["encoder_outputs"])):
    assert_all_close(x, y, 1e-5, f"encoder_outputs[{i}]")
  record_property("max_abs_error", max(seq_err, pool_err))
  print(f"parity vs Model Garden BertEncoderV2 [{config.num_hidden_layers}L/{config.hidden_size}H"
        f" {config.hidden_act}]: sequence {seq_err:.2e}, pooled {pool_err:.2e}")


def test_cross_entropy_matches_tensorflow_value_and_gradient():
  # Ours with oneDNN on, TF's fused kernel with it off: the same loss and gradient either way.
  rng = np.random.default_rng(0)
  logits = tf.constant(rng.normal(0, 4, (37, 1000)), tf.float32)
  labels = tf.constant(rng.integers(0, 1000, 37), tf.int32)
  upstream = tf.constant(rng.normal(size=37), tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(logits)
    ours = losses.sparse_softmax_cross_entropy(labels, logits)
    reference = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  assert_all_close(ours, reference, 1e-5, "cross-entropy")
  assert_all_close(tape.gradient(ours, logits, upstream),
                   tape.gradient(reference, logits, upstream), 1e-6, "its gradient")

