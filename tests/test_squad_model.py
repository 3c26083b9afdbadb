"""The SQuAD span model: shapes on the odd-sized config, google's head math, float32 logits
under fp16, the pooler frozen (google's run gives it no gradient)."""
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import precision
from bert_tf.modeling import BertEncoder
from bert_tf.modeling.squad import BertSpanLabeler
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import BATCH, HIDDEN, SEQ, tiny_config

pytestmark = pytest.mark.unit


def test_logits_are_google_head_on_the_sequence_output():
  model = BertSpanLabeler(BertEncoder(tiny_config()))
  out = model(pretraining_features(tiny_config()))
  assert out["logits"].shape == (BATCH, SEQ, 2)
  assert out["start_logits"].shape == out["end_logits"].shape == (BATCH, SEQ)
  # google: logits = sequence_output W^T + b, W [2, hidden], start = [..., 0], end = [..., 1]
  weights = model.span_head.output_weights.numpy()
  assert weights.shape == (2, HIDDEN)
  expected = out["sequence_output"].numpy() @ weights.T + model.span_head.output_bias.numpy()
  np.testing.assert_allclose(out["start_logits"], expected[..., 0], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out["end_logits"], expected[..., 1], rtol=1e-5, atol=1e-5)
  trainable = {v.ref() for v in model.trainable_variables}
  assert model.encoder.pooler.kernel.ref() not in trainable
  assert model.span_head.output_weights.ref() in trainable


def test_fp16_keeps_float32_variables_and_logits():
  precision.set_policy("fp16")
  model = BertSpanLabeler(BertEncoder(tiny_config()))
  out = model(pretraining_features(tiny_config()), training=True,
              dropout_seed=tf.constant([1, 2], tf.int64))
  assert out["logits"].dtype == tf.float32 and out["sequence_output"].dtype == tf.float16
  assert all(v.dtype == tf.float32 for v in model.variables)
