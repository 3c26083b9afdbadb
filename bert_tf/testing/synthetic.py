"""Random features in the layouts the library reads: google's pretraining feature names, and
ragged token-id features for classification."""
import numpy as np
import tensorflow as tf

from bert_tf.configs import BertConfig
from bert_tf.data import classifier as data
from bert_tf.testing.tiny import BATCH, SEQ


def pretraining_features(config: BertConfig, batch=BATCH, seq=SEQ, predictions=3, seed=0,
                         padded=True) -> dict:
  """google-format pretraining features (dict of int32/float32 tensors, leading dim ``batch``)
  with random ids and, if ``padded``, ragged lengths: segment 1 is each row's second half, the
  ``predictions`` masked positions are distinct, sorted and inside the real tokens."""
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


def classifier_features(seed: int, count: int, vocab_size: int = 100, max_len: int = 24):
  """``count`` random MRPC-style pairs ([CLS] a [SEP] b [SEP], ids 2 and 3) of varied length,
  so token-budget batches vary in size; binary labels."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(6, max_len + 1, count)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  ids = rng.integers(5, vocab_size, int(offsets[-1])).astype(np.int32)
  ids[offsets[:-1]] = 2  # [CLS]
  first = np.array([rng.integers(2, n - 2) for n in lengths], np.int32)
  ids[offsets[:-1] + first - 1] = 3  # [SEP] after the first segment
  ids[offsets[1:] - 1] = 3
  labels = rng.integers(0, 2, count).astype(np.int32)
  return data.Features(ids=ids, offsets=offsets, first_lengths=first, labels=labels)
