"""Random google-format pretraining features for the tools (NumPy only, no TensorFlow)."""
from __future__ import annotations

import numpy as np


def default_predictions(seq: int) -> int:
  """google's max_predictions_per_seq: 20 at seq 128, 80 at seq 512 (about 15% of tokens)."""
  return {128: 20, 512: 80}.get(seq, max(1, int(round(0.15 * seq))))


def random_pretraining_features(n: int, seq: int, predictions: int, vocab_size: int,
                                seed: int = 0) -> dict:
  """``n`` full-length examples (no padding: padding changes only the mask, not the cost) with
  google's feature names, ``predictions`` distinct sorted masked positions each (never [CLS])
  and two segments of half the sequence each."""
  if not 0 < predictions < seq:
    raise ValueError(f"predictions must be in [1, seq - 1]; got {predictions} at seq {seq}")
  rng = np.random.default_rng(seed)
  positions = rng.permuted(np.tile(np.arange(1, seq), (n, 1)), axis=1)[:, :predictions]
  return {
      "input_ids": rng.integers(1, vocab_size, (n, seq)).astype(np.int32),
      "input_mask": np.ones((n, seq), np.int32),
      "segment_ids": (np.arange(seq)[None, :] >= seq // 2).repeat(n, 0).astype(np.int32),
      "masked_lm_positions": np.sort(positions, axis=1).astype(np.int32),
      "masked_lm_ids": rng.integers(1, vocab_size, (n, predictions)).astype(np.int32),
      "masked_lm_weights": np.ones((n, predictions), np.float32),
      "next_sentence_labels": rng.integers(0, 2, (n, 1)).astype(np.int32)}
