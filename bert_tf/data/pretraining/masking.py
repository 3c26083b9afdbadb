"""Masked-LM masking, two ways (worker side: no TensorFlow import).

``masked_lm``: google's create_masked_lm_predictions on one instance, with the reference's
random calls in the same order (``exact_reference_rng``). ``mask_batch``: the same
distribution for many instances at once with numpy (the default; the reference's per-token
Python loop dominated the run time).
"""
from __future__ import annotations

import dataclasses
import random

import numpy as np

from bert_tf.data.pretraining.context import PretrainingContext


def fast_shuffle(x: list, rng: random.Random) -> None:
  """``rng.shuffle(x)`` with the same result and random stream, about 3x faster.

  The masking shuffles every candidate list; this is CPython's random.shuffle with
  _randbelow inlined (a unit test checks it against rng.shuffle).
  """
  getrandbits = rng.getrandbits
  for i in range(len(x) - 1, 0, -1):
    n = i + 1
    k = n.bit_length()
    j = getrandbits(k)
    while j >= n:
      j = getrandbits(k)
    x[i], x[j] = x[j], x[i]


def masked_lm(tokens: list, rng: random.Random, context: PretrainingContext
              ) -> tuple[list, list, list]:
  """google's create_masked_lm_predictions on ids (Model Garden's version, n-gram size 1).

  Same random calls in the same order as the reference, written for speed: this runs once
  per instance and dominated the run time.

  Returns:
    (masked tokens, ascending masked positions, the original ids at those positions).
  """
  cfg = context.config
  cls, sep = context.cls_id, context.sep_id
  num_to_predict = min(cfg.max_predictions_per_seq,
                       max(1, int(round(len(tokens) * cfg.masked_lm_prob))))
  if cfg.do_whole_word_mask:
    # Grams [begin, end): whole words (a token and its ## continuations); never [CLS]/[SEP].
    is_subword = context.is_subword
    grams, start = [], None
    for i, t in enumerate(tokens):
      if start is not None and is_subword[t]:
        continue
      if start is not None:
        grams.append((start, i))
      start = None if t == cls or t == sep else i
    if start is not None:
      grams.append((start, len(tokens)))
    fast_shuffle(grams, rng)
    # Model Garden's _masking_ngrams loop: pop from the end, skip a gram that would
    # overshoot, stop when full.
    chosen, masked = [], 0
    while masked < num_to_predict and grams:
      begin, end = grams.pop()
      if masked + end - begin > num_to_predict:
        continue
      chosen.append((begin, end))
      masked += end - begin
  else:
    # Single-token grams: the loop above takes the last num_to_predict after the shuffle.
    grams = [i for i, t in enumerate(tokens) if t != cls and t != sep]
    fast_shuffle(grams, rng)
    chosen = [(i, i + 1) for i in grams[:-num_to_predict - 1:-1]]
  output = list(tokens)
  positions = []
  mask_id, vocab_ids = context.mask_id, context.vocab_ids
  random_ = rng.random
  for begin, end in chosen:
    # One 80/10/10 decision per gram, a random id per token (as the reference).
    if random_() < 0.8:
      for idx in range(begin, end):
        output[idx] = mask_id
    elif random_() >= 0.5:
      for idx in range(begin, end):
        output[idx] = rng.choice(vocab_ids)
    positions.extend(range(begin, end))
  positions.sort()
  return output, positions, [tokens[p] for p in positions]


@dataclasses.dataclass
class MaskedBatch:
  """Instances masked together, as arrays (n instances; padding is 0, as google pads).

  Attributes:
    input_ids: int64 [n, max_seq_length], the masked tokens.
    lengths: n ints, real tokens per instance.
    num_b: n ints, tokens of segment b ([SEP] included), the tail of the real tokens.
    positions: int64 [n, max_predictions_per_seq], masked positions ascending, then 0.
    labels: int64 [n, max_predictions_per_seq], the original ids at ``positions``, then 0.
    counts: n ints, masked positions per instance.
    is_random_next: n bools, the next-sentence labels.
  """
  input_ids: np.ndarray
  lengths: list
  num_b: list
  positions: np.ndarray
  labels: np.ndarray
  counts: list
  is_random_next: list


def _random_token_choices(candidate: np.ndarray, num_to_predict: np.ndarray, preds: int,
                          gen: np.random.Generator) -> np.ndarray:
  """A uniformly random subset of each row's candidates of num_to_predict tokens (or all of
  them): the num_to_predict smallest random keys. bool [n, seq]."""
  n, seq = candidate.shape
  keys = np.where(candidate, gen.random([n, seq], np.float32), 2.0)
  width = max(min(preds, seq - 1), 1)
  # The `width` smallest keys (argpartition: linear), then those few in order.
  order = np.argpartition(keys, width - 1, axis=1)[:, :width]
  order = np.take_along_axis(order, np.argsort(np.take_along_axis(keys, order, axis=1),
                                               axis=1), axis=1)
  take = (np.arange(width) < num_to_predict[:, None]) & (
      np.take_along_axis(keys, order, axis=1) < 2.0)
  chosen = np.zeros([n, seq], bool)
  np.put_along_axis(chosen, order, take, axis=1)
  return chosen


def _whole_word_choices(tokens, candidate, num_to_predict, gen, is_subword):
  """Whole-word masking as the reference does it, for all rows at once: each row's words in a
  random order, each taken if it still fits the row's budget. The loop runs over ranks in
  that order (a few dozen), each step over every row, not over rows. bool [n, seq]."""
  n, seq = tokens.shape
  starts = candidate & ~is_subword[tokens]
  # A ## piece right after [CLS]/[SEP] starts a word too (the reference's _tokens_to_grams).
  starts[:, 1:] |= candidate[:, 1:] & ~candidate[:, :-1]
  starts[:, 0] |= candidate[:, 0]
  rows, begins = np.nonzero(starts)  # every word, row-major
  if not len(rows):
    return np.zeros(tokens.shape, bool)
  # A word ends where the next one of its row begins or at the next non-candidate token.
  next_stop = np.where(candidate, seq, np.arange(seq))
  next_stop = np.minimum.accumulate(next_stop[:, ::-1], axis=1)[:, ::-1]
  same_row = np.append(rows[1:] == rows[:-1], False)
  ends = np.minimum(np.where(same_row, np.append(begins[1:], seq), seq),
                    next_stop[rows, begins])
  sizes = ends - begins
  # Each row's words in a uniformly random order: argsort of random keys, row by row.
  per_row = np.bincount(rows, minlength=n)
  col = np.arange(len(rows)) - (np.cumsum(per_row) - per_row)[rows]  # index within its row
  keys = np.full([n, per_row.max()], 2.0, np.float32)  # padding sorts last
  keys[rows, col] = gen.random(len(rows), np.float32)
  order = np.argsort(keys, axis=1)
  size_by_rank = np.full(keys.shape, seq + 1, np.int32)  # padding never fits
  size_by_rank[rows, col] = sizes
  size_by_rank = np.take_along_axis(size_by_rank, order, axis=1)
  budget = num_to_predict.astype(np.int64).copy()
  taken_by_rank = np.zeros(keys.shape, bool)
  for r in range(keys.shape[1]):
    fits = size_by_rank[:, r] <= budget
    taken_by_rank[:, r] = fits
    budget -= np.where(fits, size_by_rank[:, r], 0)
    if not budget.any():
      break
  taken = np.zeros(keys.shape, bool)
  np.put_along_axis(taken, order, taken_by_rank, axis=1)
  taken = taken[rows, col]
  # Each candidate token belongs to the last word that begins at or before it.
  word_of = np.cumsum(starts.ravel(), dtype=np.int32).reshape(n, seq) - 1
  return candidate & taken[np.maximum(word_of, 0)]


def _assemble(batch, context: PretrainingContext, seq: int):
  """[CLS] a [SEP] b [SEP] of each instance of an ``InstanceSpans``, padded with 0 (as google
  pads): (int64 tokens [n, seq], int64 lengths [n], int64 num_b [n], segment b's tokens
  with its [SEP])."""
  a0, a1, b0, b1 = batch.spans.T
  la, lb = a1 - a0, b1 - b0
  lengths = la + lb + 3
  if len(lengths) and lengths.max() > seq:
    raise AssertionError(f"instance of {lengths.max()} tokens exceeds max_seq_length {seq}")
  col = np.arange(seq)
  # Column c holds laid-out token c + start: a's from column 1, b's from column la + 2. One
  # gather, then [CLS], the two [SEP]s and the padding written over (fewer [n, seq]
  # temporaries than selecting a's and b's columns apart: 0.06 -> 0.04 s for 42k).
  start = np.where(col <= la[:, None], (a0 - 1)[:, None], (b0 - la - 2)[:, None])
  source = batch.tokens if len(batch.tokens) else np.zeros(1, np.int64)
  tokens = source.take(np.clip(col + start, 0, len(source) - 1))
  tokens[col >= lengths[:, None]] = 0
  tokens[:, 0] = context.cls_id
  rows = np.arange(len(lengths))
  tokens[rows, la + 1] = context.sep_id
  tokens[rows, lengths - 1] = context.sep_id
  return tokens, lengths, lb + 1


def mask_batch(batch, gen: np.random.Generator, context: PretrainingContext) -> MaskedBatch:
  """google's masking for many unmasked instances (an ``instances.InstanceSpans``) at once.

  The same distribution as ``masked_lm`` (a uniformly random set of
  min(max_predictions_per_seq, max(1, round(n * masked_lm_prob))) tokens, never [CLS]/[SEP];
  80% [MASK], 10% a random vocabulary entry, 10% kept), not the same random stream.
  """
  cfg = context.config
  n, seq, preds = len(batch), cfg.max_seq_length, cfg.max_predictions_per_seq
  tokens, lengths, num_b = _assemble(batch, context, seq)
  valid = np.arange(seq) < lengths[:, None]
  candidate = valid & (tokens != context.cls_id) & (tokens != context.sep_id)
  # np.round, like Python's round(), rounds halves to even.
  num_to_predict = np.minimum(preds, np.maximum(1, np.round(lengths * cfg.masked_lm_prob)))
  num_to_predict = num_to_predict.astype(np.int64)
  if cfg.do_whole_word_mask:
    chosen = _whole_word_choices(tokens, candidate, num_to_predict, gen,
                                 np.asarray(context.is_subword))
  else:
    chosen = _random_token_choices(candidate, num_to_predict, preds, gen)
  # masked_lm_positions / _ids, ascending positions, padded with 0.
  rows, cols = np.nonzero(chosen)
  counts = np.bincount(rows, minlength=n)
  rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
  positions = np.zeros([n, max(preds, 1)], np.int64)
  labels = np.zeros_like(positions)
  positions[rows, rank] = cols
  labels[rows, rank] = original = tokens[rows, cols]
  # One 80/10/10 draw per gram in the reference; per token here (the same for single tokens;
  # for whole words the per-token rates are the same, decisions within a word independent).
  # Drawn for the chosen tokens only: a tenth of the tokens.
  action = gen.random(len(rows))
  random_ids = _vocab_array(context)[gen.integers(0, len(context.vocab_ids), len(rows))]
  tokens[rows, cols] = np.where(action < 0.8, context.mask_id,
                                np.where(action < 0.9, original, random_ids))
  return MaskedBatch(tokens, lengths.tolist(), num_b.tolist(), positions[:, :preds],
                     labels[:, :preds], counts.tolist(), batch.is_random_next.tolist())


_VOCAB_ARRAYS: dict = {}


def _vocab_array(context: PretrainingContext) -> np.ndarray:
  """``context.vocab_ids`` as an array, converted once per context (30k ids: 1 ms a batch)."""
  key = id(context.vocab_ids)
  if key not in _VOCAB_ARRAYS:
    _VOCAB_ARRAYS.clear()
    _VOCAB_ARRAYS[key] = (context.vocab_ids, np.asarray(context.vocab_ids))
  return _VOCAB_ARRAYS[key][1]
