"""Sentence-pair instances from tokenized documents: google's create_training_instances and
create_instances_from_document on token ids, with the same ``random.Random`` calls in the same
order (worker side: no TensorFlow import).

The algorithm runs on spans: every tokens_a and tokens_b google builds is a run of whole
sentences of one document, cut at both ends by truncation, so it is a [begin, end) range of
the corpus's tokens laid end to end. Only lengths and offsets pass through the per-instance
Python loop; the tokens are gathered afterwards, with numpy on the fast path
(``create_spans``) or as lists for the reference's per-instance masking
(``create_instances``).
"""
from __future__ import annotations

import bisect
import dataclasses
import itertools
import random

import numpy as np

from bert_tf.data.pretraining import masking
from bert_tf.data.pretraining.context import PretrainingContext


@dataclasses.dataclass
class TrainingInstance:
  """One sentence pair [CLS] a [SEP] b [SEP]. ``tokens`` and ``masked_lm_labels`` are token
  ids; ``masked_lm_positions`` and ``masked_lm_labels`` are None until masked."""
  tokens: list
  segment_ids: list
  masked_lm_positions: list
  masked_lm_labels: list
  is_random_next: bool


@dataclasses.dataclass
class InstanceSpans:
  """Unmasked instances as spans of ``tokens`` (n instances, in their final order).

  Attributes:
    tokens: int64 [total tokens], the chunk's documents laid end to end.
    spans: int64 [n, 4], each instance's tokens_a and tokens_b as [a_begin, a_end, b_begin,
      b_end) offsets into ``tokens``.
    is_random_next: bool [n], the next-sentence labels.
  """
  tokens: np.ndarray
  spans: np.ndarray
  is_random_next: np.ndarray

  def __len__(self):
    return len(self.spans)

  def __getitem__(self, rows: slice) -> "InstanceSpans":
    return InstanceSpans(self.tokens, self.spans[rows], self.is_random_next[rows])


def _truncate_exact(a0, a1, b0, b1, max_num_tokens, rng):
  """google's truncate_seq_pair on spans: one token at a time off the longer side (b on a
  tie), from the front or the back with probability 1/2 each; the same random calls."""
  while a1 - a0 + b1 - b0 > max_num_tokens:
    if a1 - a0 > b1 - b0:
      if rng.random() < 0.5:
        a0 += 1
      else:
        a1 -= 1
    elif rng.random() < 0.5:
      b0 += 1
    else:
      b1 -= 1
  return a0, a1, b0, b1


def _truncate_fast(a0, a1, b0, b1, max_num_tokens, rng):
  """``_truncate_exact`` in O(1): the same distribution, not the same random stream.

  Which side loses how many tokens is fixed by the lengths; the number taken from the front
  of a side is Binomial(removed, 1/2), drawn as the popcount of that many random bits.
  """
  la, lb = a1 - a0, b1 - b0
  excess = la + lb - max_num_tokens
  if excess <= 0:
    return a0, a1, b0, b1
  if la > lb:
    first = min(excess, la - lb)
    rest = excess - first
    ra, rb = first + rest // 2, rest - rest // 2  # equal again: b first, then a, ...
  else:
    first = min(excess, lb - la)
    rest = excess - first
    ra, rb = rest // 2, first + rest - rest // 2
  fa = rng.getrandbits(ra).bit_count() if ra else 0
  fb = rng.getrandbits(rb).bit_count() if rb else 0
  return a0 + fa, a1 - (ra - fa), b0 + fb, b1 - (rb - fb)


def _on_lists(truncate, tokens_a, tokens_b, max_num_tokens, rng):
  a0, a1, b0, b1 = truncate(0, len(tokens_a), 0, len(tokens_b), max_num_tokens, rng)
  return tokens_a[a0:a1], tokens_b[b0:b1]


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """google's truncate_seq_pair, in place (the list form of ``_truncate_exact``)."""
  tokens_a[:], tokens_b[:] = _on_lists(_truncate_exact, tokens_a, tokens_b, max_num_tokens, rng)


def truncate_fast(tokens_a, tokens_b, max_num_tokens, rng):
  """The list form of ``_truncate_fast``: returns (tokens_a, tokens_b), new lists."""
  return _on_lists(_truncate_fast, tokens_a, tokens_b, max_num_tokens, rng)


def _randint(getrandbits, low: int, high: int) -> int:
  """``rng.randint(low, high)`` with the same result and random stream (CPython's
  _randbelow inlined: three Python calls fewer, and this runs several times an instance)."""
  n = high - low + 1
  k = n.bit_length()
  r = getrandbits(k)
  while r >= n:
    r = getrandbits(k)
  return low + r


def _spans(starts, rng, dupe_factor, config):
  """google's create_instances_from_document for every document and dupe round, on spans.

  Args:
    starts: per document, the offsets of its sentences in the laid-out tokens and the offset
      of its end ([s_0, ..., s_n] for n sentences).

  Yields:
    (a_begin, a_end, b_begin, b_end, is_random_next) per instance, truncated; the same random
    calls as the reference in the same order, so a consumer may draw the instance's masks
    from ``rng`` between two yields, as the reference does.
  """
  max_num_tokens = config.max_seq_length - 3
  truncate = _truncate_exact if config.exact_reference_rng else _truncate_fast
  last_doc = len(starts) - 1
  bits = rng.getrandbits
  for _ in range(dupe_factor):
    for document_index, doc in enumerate(starts):
      n = len(doc) - 1
      target = max_num_tokens
      if rng.random() < config.short_seq_prob:
        target = _randint(bits, 2, max_num_tokens)
      begin, i = 0, 0  # the current chunk: sentences begin..i
      while i < n:
        if i == n - 1 or doc[i + 1] - doc[begin] >= target:
          size = i + 1 - begin
          a_end = _randint(bits, 1, size - 1) if size >= 2 else 1
          a0, a1 = doc[begin], doc[begin + a_end]
          if size == 1 or rng.random() < 0.5:
            is_random_next = True
            for _ in range(10):
              other = _randint(bits, 0, last_doc)
              if other != document_index:
                break
            other = starts[other]
            first = _randint(bits, 0, len(other) - 2)
            # Whole sentences from `first` until tokens_b reaches target - len(tokens_a).
            end = bisect.bisect_left(other, other[first] + target - (a1 - a0), first + 1)
            b0, b1 = other[first], other[min(end, len(other) - 1)]
            i -= size - a_end  # put the unused sentences back
          else:
            is_random_next = False
            b0, b1 = a1, doc[i + 1]
          yield truncate(a0, a1, b0, b1, max_num_tokens, rng) + (is_random_next,)
          begin = i + 1
        i += 1


def _layout(documents, rng):
  """Drops empty documents, shuffles them as google does; (tokens list, sentence starts)."""
  documents = [d for d in documents if d]
  rng.shuffle(documents)
  starts, offset = [], 0
  for doc in documents:
    lengths = list(itertools.accumulate(map(len, doc), initial=offset))
    starts.append(lengths)
    offset = lengths[-1]
  tokens = list(itertools.chain.from_iterable(itertools.chain.from_iterable(documents)))
  return tokens, starts


def create_instances(documents: list, rng: random.Random, dupe_factor: int,
                     context: PretrainingContext) -> list[TrainingInstance]:
  """google's create_training_instances after tokenization, for one chunk of documents.

  Args:
    documents: lists of sentences, each a list of int token ids; empty documents are dropped.
    rng: the chunk's random stream (shuffles, lengths, random next sentences, and with
      ``exact_reference_rng`` the masks).
    dupe_factor: passes over the documents.
    context: a ``PretrainingContext``.

  Returns:
    the instances in shuffled order: masked with ``exact_reference_rng``, otherwise unmasked
    (``masked_lm_positions`` None).
  """
  tokens, starts = _layout(documents, rng)
  cls, sep = [context.cls_id], [context.sep_id]
  exact = context.config.exact_reference_rng
  instances = []
  for a0, a1, b0, b1, is_random_next in _spans(starts, rng, dupe_factor, context.config):
    ids = cls + tokens[a0:a1] + sep + tokens[b0:b1] + sep
    positions = labels = None
    if exact:
      ids, positions, labels = masking.masked_lm(ids, rng, context)
    segment_ids = [0] * (a1 - a0 + 2) + [1] * (b1 - b0 + 1)
    instances.append(TrainingInstance(ids, segment_ids, positions, labels, is_random_next))
  rng.shuffle(instances)
  return instances


def create_spans(documents: list, rng: random.Random, dupe_factor: int,
                 context: PretrainingContext) -> InstanceSpans:
  """``create_instances`` for the fast path: the same instances (for the same random
  stream, with O(1) truncation unless ``exact_reference_rng``) as spans, shuffled with numpy
  (the same distribution as google's shuffle, not the same order)."""
  tokens, starts = _layout(documents, rng)
  rows = list(_spans(starts, rng, dupe_factor, context.config))
  table = np.array(rows, np.int64).reshape(-1, 5)
  table = table[np.random.default_rng(rng.getrandbits(64)).permutation(len(table))]
  return InstanceSpans(np.array(tokens, np.int64), table[:, :4], table[:, 4].astype(bool))
