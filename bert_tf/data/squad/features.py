"""SQuAD examples -> features exactly as google's ``convert_examples_to_features``: the question
truncated to ``max_query_length`` pieces, the context in spans of at most ``max_seq_length -
len(question) - 3`` pieces moved by ``doc_stride``, ``[CLS] question [SEP] span [SEP]``, each
context piece marked with its word (``token_to_orig_map``) and whether this span gives it the
most context (``token_is_max_context``); training positions refined by ``_improve_answer_span``,
0 ([CLS]) for impossible answers and spans without the answer.

Tokenisation is batched: every distinct question, context word and answer goes through
``BertTokenizer.tokenize_batch`` once (google tokenises each whitespace word alone, so a word's
pieces do not depend on its neighbours). Ids are kept ragged (``classifier.Features``: ids,
offsets, segment-0 lengths) and padded when a batch is assembled.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional, Sequence

import numpy as np

from bert_tf.data.classifier import Features
from bert_tf.data.squad.reading import SquadExample

UNIQUE_ID_BASE = 1000000000  # google's first unique_id

DocSpan = collections.namedtuple("DocSpan", ["start", "length"])


@dataclasses.dataclass
class SpanFeature:
  """What post-processing needs of one feature (google's ``InputFeatures`` minus the ids)."""
  unique_id: int
  example_index: int
  doc_span_index: int
  tokens: list
  token_to_orig_map: dict
  token_is_max_context: dict
  is_impossible: bool


@dataclasses.dataclass
class SquadFeatures:
  """Every feature of a set. ``ids`` holds the token ids (ragged; ``labels`` there are the
  start positions), ``start_positions`` / ``end_positions`` int32 [F] (0 when not training),
  ``example_index`` int32 [F]; ``spans`` the per-feature metadata (kept for prediction)."""
  ids: Features
  start_positions: np.ndarray
  end_positions: np.ndarray
  example_index: np.ndarray
  spans: Optional[list] = None

  def __len__(self):
    return len(self.ids)

  @property
  def lengths(self) -> np.ndarray:
    return self.ids.lengths

  def padded(self, i: int, max_seq_length: int) -> dict:
    """Feature ``i`` as google's padded lists: input_ids, input_mask, segment_ids."""
    start, end = self.ids.offsets[i], self.ids.offsets[i + 1]
    n, first = int(end - start), int(self.ids.first_lengths[i])
    pad = [0] * (max_seq_length - n)
    return {"input_ids": self.ids.ids[start:end].tolist() + pad, "input_mask": [1] * n + pad,
            "segment_ids": [0] * first + [1] * (n - first) + pad}


def doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[DocSpan]:
  """google's sliding window over ``num_tokens`` context pieces."""
  spans, start_offset = [], 0
  while start_offset < num_tokens:
    length = min(num_tokens - start_offset, max_tokens_for_doc)
    spans.append(DocSpan(start_offset, length))
    if start_offset + length == num_tokens:
      break
    start_offset += min(length, doc_stride)
  return spans


def check_is_max_context(spans: Sequence[DocSpan], cur_span_index: int, position: int) -> bool:
  """Whether span ``cur_span_index`` gives piece ``position`` its maximum context: the
  largest min(left, right) context, ties to the longer span, then the first."""
  best_score, best_span_index = None, None
  for span_index, span in enumerate(spans):
    end = span.start + span.length - 1
    if position < span.start or position > end:
      continue
    score = min(position - span.start, end - position) + 0.01 * span.length
    if best_score is None or score > best_score:
      best_score, best_span_index = score, span_index
  return cur_span_index == best_span_index


def improve_answer_span(doc_tokens, input_start, input_end, tok_answer_text):
  """The narrowest piece span whose text equals the tokenised answer (google's rule:
  "(1895-1943)." -> "1895"), else the span as given."""
  for new_start in range(input_start, input_end + 1):
    for new_end in range(input_end, new_start - 1, -1):
      if " ".join(doc_tokens[new_start:new_end + 1]) == tok_answer_text:
        return new_start, new_end
  return input_start, input_end


def _tokenize_all(tokenizer, texts, chunk: int = 8192) -> dict:
  distinct = list(dict.fromkeys(texts))
  pieces = {}
  for i in range(0, len(distinct), chunk):
    part = distinct[i:i + chunk]
    pieces.update(zip(part, tokenizer.tokenize_batch(part)))
  return pieces


def _answer_span(example, all_doc_tokens, orig_to_tok_index, answer_pieces):
  if example.is_impossible:
    return -1, -1
  tok_start = orig_to_tok_index[example.start_position]
  if example.end_position < len(example.doc_tokens) - 1:
    tok_end = orig_to_tok_index[example.end_position + 1] - 1
  else:
    tok_end = len(all_doc_tokens) - 1
  return improve_answer_span(all_doc_tokens, tok_start, tok_end,
                             " ".join(answer_pieces[example.orig_answer_text]))


def _positions(span: DocSpan, answer: tuple, is_impossible: bool, doc_offset: int) -> tuple:
  """Training start/end inside the feature: 0 ([CLS]) unless this span holds the answer."""
  tok_start, tok_end = answer
  if is_impossible or not (tok_start >= span.start and tok_end <= span.start + span.length - 1):
    return 0, 0
  return tok_start - span.start + doc_offset, tok_end - span.start + doc_offset


def convert_examples_to_features(examples: Sequence[SquadExample], tokenizer,
                                 max_seq_length: int, doc_stride: int, max_query_length: int,
                                 is_training: bool, keep_spans: bool = True) -> SquadFeatures:
  """google's ``convert_examples_to_features`` for every example; unique ids count from
  1000000000 in order. ``keep_spans=False`` drops the per-feature metadata (training does not
  need it)."""
  if max_seq_length <= max_query_length + 3:
    raise ValueError(f"max_seq_length ({max_seq_length}) must be greater than "
                     f"max_query_length ({max_query_length}) + 3")
  answers = [e.orig_answer_text for e in examples if is_training and not e.is_impossible]
  pieces = _tokenize_all(tokenizer, [e.question_text for e in examples] + answers +
                         [w for e in _distinct_docs(examples) for w in e.doc_tokens])
  vocab = tokenizer.vocab
  rows, firsts, starts, ends, example_index, spans = [], [], [], [], [], []
  doc_cache = {}
  for index, example in enumerate(examples):
    query_tokens = pieces[example.question_text][:max_query_length]
    key = id(example.doc_tokens)
    if key not in doc_cache:  # the questions of one paragraph share its doc_tokens list
      tok_to_orig_index, orig_to_tok_index, all_doc_tokens = [], [], []
      for i, token in enumerate(example.doc_tokens):
        orig_to_tok_index.append(len(all_doc_tokens))
        for sub_token in pieces[token]:
          tok_to_orig_index.append(i)
          all_doc_tokens.append(sub_token)
      doc_cache = {key: (tok_to_orig_index, orig_to_tok_index, all_doc_tokens)}
    tok_to_orig_index, orig_to_tok_index, all_doc_tokens = doc_cache[key]
    answer = (_answer_span(example, all_doc_tokens, orig_to_tok_index, pieces)
              if is_training else None)
    windows = doc_spans(len(all_doc_tokens), max_seq_length - len(query_tokens) - 3,
                        doc_stride)
    for span_index, span in enumerate(windows):
      tokens = ["[CLS]", *query_tokens, "[SEP]"]
      doc_offset = len(tokens)
      tokens += all_doc_tokens[span.start:span.start + span.length] + ["[SEP]"]
      rows.append(np.fromiter((vocab[t] for t in tokens), np.int32, count=len(tokens)))
      firsts.append(doc_offset)
      start, end = (_positions(span, answer, example.is_impossible, doc_offset)
                    if is_training else (0, 0))
      starts.append(start)
      ends.append(end)
      example_index.append(index)
      if keep_spans:
        positions = range(span.start, span.start + span.length)
        spans.append(SpanFeature(
            unique_id=UNIQUE_ID_BASE + len(rows) - 1, example_index=index,
            doc_span_index=span_index, tokens=tokens,
            token_to_orig_map={doc_offset + i: tok_to_orig_index[p]
                               for i, p in enumerate(positions)},
            token_is_max_context={doc_offset + i: check_is_max_context(windows, span_index, p)
                                  for i, p in enumerate(positions)},
            is_impossible=example.is_impossible))
  lengths = np.array([len(r) for r in rows], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  ids = np.concatenate(rows) if rows else np.zeros(0, np.int32)
  starts = np.array(starts, np.int32)
  return SquadFeatures(Features(ids, offsets, np.array(firsts, np.int32), starts), starts,
                       np.array(ends, np.int32), np.array(example_index, np.int32),
                       spans if keep_spans else None)


def examples_without_features(examples: Sequence[SquadExample],
                              features: SquadFeatures) -> list[int]:
  """Indexes of the examples that got no feature: their context has words, but none leaves a
  word piece (only control or zero-width characters, which the tokenizer drops). google's code
  gives them no feature either; prediction could not answer them."""
  covered = set(features.example_index.tolist())
  return [i for i in range(len(examples)) if i not in covered]


def _distinct_docs(examples):
  seen = {}
  for e in examples:
    seen.setdefault(id(e.doc_tokens), e)
  return seen.values()
