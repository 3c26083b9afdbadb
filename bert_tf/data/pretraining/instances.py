"""Sentence-pair instances from tokenized documents: google's create_training_instances and
create_instances_from_document on token ids, with the same ``random.Random`` calls in the same
order (worker side: no TensorFlow import).
"""
from __future__ import annotations

import dataclasses
import random

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


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """google's truncate_seq_pair, in place: one token at a time off the longer side (b on a
  tie), from the front or the back with probability 1/2 each."""
  while len(tokens_a) + len(tokens_b) > max_num_tokens:
    trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del trunc[0]
    else:
      trunc.pop()


def truncate_fast(tokens_a, tokens_b, max_num_tokens, rng):
  """``truncate_seq_pair`` in O(1): the same distribution, not the same random stream.

  Which side loses how many tokens is fixed by the lengths; the number taken from the front
  of a side is Binomial(removed, 1/2), drawn as the popcount of that many random bits.

  Returns:
    (tokens_a, tokens_b), new lists.
  """
  la, lb = len(tokens_a), len(tokens_b)
  excess = la + lb - max_num_tokens
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
  return tokens_a[fa:la - (ra - fa)], tokens_b[fb:lb - (rb - fb)]


def _instances_from_document(all_documents, document_index, rng, context: PretrainingContext):
  """google's create_instances_from_document, on ids; same random calls in the same order."""
  cfg = context.config
  document = all_documents[document_index]
  max_num_tokens = cfg.max_seq_length - 3
  target_seq_length = max_num_tokens
  if rng.random() < cfg.short_seq_prob:
    target_seq_length = rng.randint(2, max_num_tokens)
  instances = []
  current_chunk, current_length, i = [], 0, 0
  while i < len(document):
    segment = document[i]
    current_chunk.append(segment)
    current_length += len(segment)
    if i == len(document) - 1 or current_length >= target_seq_length:
      if current_chunk:
        a_end = 1
        if len(current_chunk) >= 2:
          a_end = rng.randint(1, len(current_chunk) - 1)
        tokens_a = [t for seg in current_chunk[:a_end] for t in seg]
        tokens_b = []
        if len(current_chunk) == 1 or rng.random() < 0.5:
          is_random_next = True
          target_b_length = target_seq_length - len(tokens_a)
          for _ in range(10):
            random_document_index = rng.randint(0, len(all_documents) - 1)
            if random_document_index != document_index:
              break
          random_document = all_documents[random_document_index]
          random_start = rng.randint(0, len(random_document) - 1)
          for j in range(random_start, len(random_document)):
            tokens_b.extend(random_document[j])
            if len(tokens_b) >= target_b_length:
              break
          i -= len(current_chunk) - a_end  # put the unused segments back
        else:
          is_random_next = False
          for j in range(a_end, len(current_chunk)):
            tokens_b.extend(current_chunk[j])
        if cfg.exact_reference_rng:
          truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
        elif len(tokens_a) + len(tokens_b) > max_num_tokens:
          tokens_a, tokens_b = truncate_fast(tokens_a, tokens_b, max_num_tokens, rng)
        tokens = [context.cls_id] + tokens_a + [context.sep_id] + tokens_b + [context.sep_id]
        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
        if cfg.exact_reference_rng:
          tokens, positions, labels = masking.masked_lm(tokens, rng, context)
        else:
          positions = labels = None  # masked afterwards, a batch at once (masking.mask_batch)
        instances.append(TrainingInstance(tokens, segment_ids, positions, labels, is_random_next))
      current_chunk, current_length = [], 0
    i += 1
  return instances


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
    (``masked_lm_positions`` None) for ``masking.mask_batch``.
  """
  documents = [d for d in documents if d]
  rng.shuffle(documents)
  instances = []
  for _ in range(dupe_factor):
    for document_index in range(len(documents)):
      instances.extend(_instances_from_document(documents, document_index, rng, context))
  rng.shuffle(instances)
  return instances
