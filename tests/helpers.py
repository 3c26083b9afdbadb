"""Shared test helpers: tiny configs, random features, comparisons."""
import numpy as np
import tensorflow as tf

from bert_tf.configs import BertConfig

# DESIGN.md §4: odd sizes catch transposed or mixed-up dimensions.
BATCH, SEQ, VOCAB, HIDDEN, HEADS, INNER = 13, 7, 99, 32, 4, 37


def tiny_config(**overrides) -> BertConfig:
  values = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                num_attention_heads=HEADS, intermediate_size=INNER, max_position_embeddings=64,
                type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  values.update(overrides)
  return BertConfig(**values)


def random_features(config: BertConfig, batch=BATCH, seq=SEQ, predictions=3, seed=0,
                    padded=True):
  """google-format pretraining features with random ids and, if ``padded``, ragged lengths."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, config.vocab_size, size=(batch, seq), dtype=np.int32)
  lengths = (rng.integers(min(seq, max(2, seq // 2)), seq + 1, size=batch) if padded
             else np.full(batch, seq))
  mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
  segments = ((np.arange(seq)[None, :] >= (lengths // 2)[:, None]) & (mask == 1)).astype(np.int32)
  ids = ids * mask
  positions = np.stack([np.sort(rng.choice(np.arange(1, n), size=predictions, replace=False))
                        if n - 1 >= predictions else np.arange(1, predictions + 1) % seq
                        for n in lengths]).astype(np.int32)
  return {
      "input_ids": tf.constant(ids), "input_mask": tf.constant(mask),
      "segment_ids": tf.constant(segments), "masked_lm_positions": tf.constant(positions),
      "masked_lm_ids": tf.constant(rng.integers(0, config.vocab_size, (batch, predictions)),
                                   tf.int32),
      "masked_lm_weights": tf.constant((rng.random((batch, predictions)) > 0.2), tf.float32),
      "next_sentence_labels": tf.constant(rng.integers(0, 2, batch), tf.int32),
  }


def max_abs_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def assert_all_close(actual, expected, atol, what=""):
  diff = max_abs_diff(actual, expected)
  assert diff <= atol, f"{what}: max |difference| {diff:.3g} > {atol:.3g}"
  return diff


def write_pretraining_records(path, features) -> str:
  """Writes features (dict of [N, ...] arrays, google's names) as google-format TFRecords:
  int64 lists for ids/masks/positions/labels, a float list for masked_lm_weights."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    n = int(np.asarray(features["input_ids"]).shape[0])
    for i in range(n):
      feature = {}
      for name, values in features.items():
        row = np.asarray(values)[i].reshape(-1)
        if name == "masked_lm_weights":
          feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=row.tolist()))
        else:
          feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist()))
      example = tf.train.Example(features=tf.train.Features(feature=feature))
      writer.write(example.SerializeToString())
  return str(path)
