"""Pretraining data: google's create_pretraining_data algorithm and TFRecord writing (reading:
``bert_tf.data.pretraining_input``).

Records carry google's feature names and dtypes (``input_ids``, ``input_mask``, ``segment_ids``,
``masked_lm_positions``, ``masked_lm_ids`` as int64, ``masked_lm_weights`` as float,
``next_sentence_labels`` as int64), so records made here feed google's ``run_pretraining.py``
and records made by google's script feed ours.

Creation follows tf-models-official's ``official.nlp.data.create_pretraining_data`` step for
step, with the same ``random.Random`` calls in the same order: within one chunk of documents the
output equals the reference's for the same seed (tested). What differs, and why it is written
here rather than reused:
  * streaming: documents are read and processed in chunks of ``documents_per_chunk`` (random
    next sentences come from the same chunk), so memory stays bounded on large corpora where
    the reference loads the whole corpus and every instance before writing one (with more
    than one worker, a chunk's dupe rounds are also split over the workers, each part with
    its own random seed: the same distribution, not the same records);
  * speed: tokenization is the in-graph ``bert_tf.tokenization`` (batched), instance creation
    runs on token ids in ``num_workers`` processes, and ``tf.train.Example`` protos are
    serialized by hand from precomputed varint bytes (building proto objects costs more than
    the rest of instance creation).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import itertools
import logging
import multiprocessing
import os
import random
import struct
from typing import Iterable, Iterator, Sequence

import numpy as np

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")


@dataclasses.dataclass(frozen=True)
class PretrainingDataConfig:
  """google's create_pretraining_data options (same names and defaults) plus scale options."""
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  random_seed: int = 12345
  dupe_factor: int = 10
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  do_whole_word_mask: bool = False
  num_workers: int = 0  # 0: all cores
  documents_per_chunk: int = 20000
  # True: draw every random number exactly as the reference does (same records for the same
  # seed on a one-chunk corpus with one worker; slower). False: masks drawn with numpy in
  # batches, the same distribution (tested against the reference).
  exact_reference_rng: bool = False

  def __post_init__(self):
    if self.max_seq_length < 5:
      raise ValueError(f"max_seq_length must be >= 5 ([CLS] a [SEP] b [SEP]), got {self.max_seq_length}")
    if self.max_predictions_per_seq < 0 or self.dupe_factor < 1 or self.documents_per_chunk < 1:
      raise ValueError("max_predictions_per_seq must be >= 0, dupe_factor and "
                       f"documents_per_chunk >= 1: got {self}")
    for name in ("masked_lm_prob", "short_seq_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def expand_file_patterns(file_patterns) -> list[str]:
  """google's --input_file: globs and comma-separated lists (str or list of str) -> paths.

  Raises FileNotFoundError naming a pattern that matches nothing.
  """
  import tensorflow as tf
  if isinstance(file_patterns, str):
    file_patterns = [file_patterns]
  files = []
  for pattern in file_patterns:
    for p in str(pattern).split(","):
      if p.strip():
        matched = sorted(tf.io.gfile.glob(p.strip()))
        if not matched:
          raise FileNotFoundError(f"no files match input pattern {p.strip()!r}")
        files.extend(matched)
  if not files:
    raise FileNotFoundError(f"no input files in {file_patterns!r}")
  return files


# ---------------------------------------------------------------------------------------------
# Reading the input: one sentence a line, blank lines between documents.


def read_documents(input_files: Sequence[str], tokenizer, batch_lines: int = 4096
                   ) -> Iterator[list[list[int]]]:
  """Streams tokenized documents from google-format text files.

  Args:
    input_files: paths (local or gs://); read in order, each line decoded as UTF-8 with
      invalid bytes dropped (as google does).
    tokenizer: a ``bert_tf.tokenization.BertTokenizer``.
    batch_lines: lines tokenized per in-graph call.

  Yields:
    documents, each a non-empty list of sentences, each a non-empty list of int token ids.
    As in google's script, a document never spans two files only if the file ends with a
    blank line; lines that tokenize to nothing are dropped.
  """
  import tensorflow as tf
  doc: list[list[int]] = []
  pending: list[bytes] = []  # b"" marks a document break

  def flush():
    nonlocal doc
    texts = [line for line in pending if line]
    ids = iter(tokenizer.encode_batch(texts) if texts else [])
    out = []
    for line in pending:
      if not line:
        if doc:
          out.append(doc)
        doc = []
      else:
        tokens = next(ids)
        if tokens:
          doc.append(tokens)
    pending.clear()
    return out

  for path in input_files:
    try:
      f = tf.io.gfile.GFile(path, "rb")
      with f:
        for raw in f:
          pending.append(raw.decode("utf-8", "ignore").strip().encode("utf-8"))
          if len(pending) >= batch_lines:
            yield from flush()
    except tf.errors.OpError as e:
      raise OSError(f"{path}: cannot read input file: {e.message}") from None
  yield from flush()
  if doc:
    yield doc


# ---------------------------------------------------------------------------------------------
# Instance creation on token ids (worker side: no TensorFlow import).

# Set once per worker process by _init_worker.
_W: dict = {}


@dataclasses.dataclass
class TrainingInstance:
  """One sentence pair. ``tokens`` and ``masked_lm_labels`` are token ids."""
  tokens: list
  segment_ids: list
  masked_lm_positions: list
  masked_lm_labels: list
  is_random_next: bool


def _init_worker(vocab_ids, is_subword, special_ids, cls_id, sep_id, mask_id, config):
  _W.update(vocab_ids=vocab_ids, is_subword=is_subword, special=frozenset(special_ids),
            cls=cls_id, sep=sep_id, mask=mask_id, config=config,
            varints=[_varint(i) for i in range(max(max(vocab_ids), config.max_seq_length) + 1)],
            tables=_serializer_tables(config))
  varints = _W["varints"]
  table = np.zeros([len(varints), 4], np.uint8)
  for i, v in enumerate(varints):
    table[i, :len(v)] = list(v)
  _W["varint_table"] = (table, np.array([len(v) for v in varints]))


def _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
  while len(tokens_a) + len(tokens_b) > max_num_tokens:
    trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    if rng.random() < 0.5:
      del trunc[0]
    else:
      trunc.pop()


def _truncate_fast(tokens_a, tokens_b, max_num_tokens, rng):
  """``_truncate_seq_pair`` in O(1): the same distribution, not the same random stream.

  The reference removes one token at a time from the longer side (from b on a tie), from the
  front or the back with probability 1/2 each. Which side loses how many is fixed by the
  lengths; the number taken from the front of a side is Binomial(removed, 1/2), drawn as the
  popcount of that many random bits.
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


def _shuffle(x: list, rng: random.Random) -> None:
  """``rng.shuffle(x)`` with the same result and random stream, about 3x faster.

  The masking shuffles every candidate list; this is random.shuffle with _randbelow inlined
  (checked against rng.shuffle when the module loads, else rng.shuffle is used).
  """
  getrandbits = rng.getrandbits
  for i in range(len(x) - 1, 0, -1):
    n = i + 1
    k = n.bit_length()
    j = getrandbits(k)
    while j >= n:
      j = getrandbits(k)
    x[i], x[j] = x[j], x[i]


def _check_shuffle():
  for n in (0, 1, 2, 3, 17, 128, 1000):
    a, b = list(range(n)), list(range(n))
    r1, r2 = random.Random(n), random.Random(n)
    _shuffle(a, r1)
    r2.shuffle(b)
    if a != b or r1.random() != r2.random():
      return False
  return True


if not _check_shuffle():  # a Python whose random.shuffle draws differently
  _shuffle = lambda x, rng: rng.shuffle(x)  # noqa: E731


def _masked_lm(tokens, rng):
  """google's create_masked_lm_predictions on ids (Model Garden's version, n-gram size 1).

  Same random calls in the same order as the reference, written for speed: this runs once
  per instance and dominated the run time.
  """
  cfg = _W["config"]
  cls, sep = _W["cls"], _W["sep"]
  num_to_predict = min(cfg.max_predictions_per_seq,
                       max(1, int(round(len(tokens) * cfg.masked_lm_prob))))
  if cfg.do_whole_word_mask:
    # Grams [begin, end): whole words (a token and its ## continuations); never [CLS]/[SEP].
    is_subword = _W["is_subword"]
    grams, start = [], None
    for i, t in enumerate(tokens):
      if start is not None and is_subword[t]:
        continue
      if start is not None:
        grams.append((start, i))
      start = None if t == cls or t == sep else i
    if start is not None:
      grams.append((start, len(tokens)))
    _shuffle(grams, rng)
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
    _shuffle(grams, rng)
    chosen = [(i, i + 1) for i in grams[:-num_to_predict - 1:-1]]
  output = list(tokens)
  positions = []
  mask_id, vocab_ids = _W["mask"], _W["vocab_ids"]
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


def _instances_from_document(all_documents, document_index, rng):
  """google's create_instances_from_document, on ids; same random calls in the same order."""
  cfg = _W["config"]
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
          _truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
        elif len(tokens_a) + len(tokens_b) > max_num_tokens:
          tokens_a, tokens_b = _truncate_fast(tokens_a, tokens_b, max_num_tokens, rng)
        tokens = [_W["cls"]] + tokens_a + [_W["sep"]] + tokens_b + [_W["sep"]]
        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
        if _W["config"].exact_reference_rng:
          tokens, positions, labels = _masked_lm(tokens, rng)
        else:
          positions = labels = None  # masked afterwards, a whole batch at once (_mask_and_serialize)
        instances.append(TrainingInstance(tokens, segment_ids, positions, labels, is_random_next))
      current_chunk, current_length = [], 0
    i += 1
  return instances


def _task_seed(random_seed: int, chunk_index: int, part: int) -> int:
  # Chunk 0 done whole (part -1) uses the seed itself: a corpus that fits one chunk, made by one
  # worker, reproduces the reference record for record.
  if chunk_index == 0 and part < 0:
    return random_seed
  return hash((random_seed, chunk_index, part)) & 0x7FFFFFFF


def create_instances(documents: list, rng: random.Random, dupe_factor: int
                     ) -> list[TrainingInstance]:
  """google's create_training_instances after tokenization, for one chunk of documents.

  With ``exact_reference_rng`` the instances come masked; otherwise unmasked
  (``masked_lm_positions`` None), for ``_mask_and_serialize``.
  """
  documents = [d for d in documents if d]
  rng.shuffle(documents)
  instances = []
  for _ in range(dupe_factor):
    for document_index in range(len(documents)):
      instances.extend(_instances_from_document(documents, document_index, rng))
  rng.shuffle(instances)
  return instances


def _mask_and_serialize(instances: list[TrainingInstance], gen: np.random.Generator
                        ) -> list[bytes]:
  """google's masking and record writing for many instances at once, with numpy.

  The same distribution as ``_masked_lm`` (a uniformly random set of
  min(max_predictions_per_seq, max(1, round(n * masked_lm_prob))) tokens, never [CLS]/[SEP];
  80% [MASK], 10% a random vocabulary entry, 10% kept), not the same random stream; the
  records are what ``serialize_instance`` writes for the masked instances.

  Returns:
    list of serialized tf.train.Example, one per instance, in order.
  """
  cfg, t = _W["config"], _W["tables"]
  if not instances:
    return []
  n, seq, preds = len(instances), cfg.max_seq_length, cfg.max_predictions_per_seq
  lengths = np.fromiter((len(inst.tokens) for inst in instances), np.int64, n)
  if lengths.max() > seq:
    raise AssertionError(f"instance of {lengths.max()} tokens exceeds max_seq_length {seq}")
  valid = np.arange(seq) < lengths[:, None]
  tokens = np.zeros([n, seq], np.int64)  # padded with 0, as google pads
  tokens[valid] = np.fromiter(itertools.chain.from_iterable(i.tokens for i in instances),
                              np.int64, int(lengths.sum()))
  is_sep = tokens == _W["sep"]
  candidate = valid & (tokens != _W["cls"]) & ~is_sep
  # np.round, like Python's round(), rounds halves to even.
  num_to_predict = np.minimum(preds, np.maximum(1, np.round(lengths * cfg.masked_lm_prob)))
  num_to_predict = num_to_predict.astype(np.int64)
  if cfg.do_whole_word_mask:
    chosen = _whole_word_choices(tokens, candidate, num_to_predict, gen)
  else:
    # A uniformly random subset: the num_to_predict smallest random keys among candidates.
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
  # One 80/10/10 draw per gram in the reference; per token here (the same for single tokens;
  # for whole words the per-token rates are the same, decisions within a word independent).
  action = gen.random([n, seq])
  vocab_ids = np.asarray(_W["vocab_ids"])
  random_ids = vocab_ids[gen.integers(0, len(vocab_ids), [n, seq])]
  masked = np.where(action < 0.8, _W["mask"], np.where(action < 0.9, tokens, random_ids))
  output = np.where(chosen, masked, tokens)
  # masked_lm_positions / _ids, ascending positions, padded with 0.
  rows, cols = np.nonzero(chosen)
  counts = np.bincount(rows, minlength=n)
  rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
  positions = np.zeros([n, max(preds, 1)], np.int64)
  labels = np.zeros_like(positions)
  positions[rows, rank] = cols
  labels[rows, rank] = tokens[rows, cols]
  # [CLS] a [SEP] b [SEP]: segment b is everything after the first [SEP].
  num_b = (lengths - 1 - np.argmax(is_sep, axis=1)).tolist()
  ids_bytes = _varint_rows(output)
  pos_bytes = _varint_rows(positions[:, :preds])
  lab_bytes = _varint_rows(labels[:, :preds])
  zeros, ones, headers = t["zeros"], t["ones"], t["headers"]
  records = []
  for row, (length, k, nb, inst) in enumerate(zip(lengths.tolist(), counts.tolist(), num_b,
                                                  instances)):
    ids, pos, lab = ids_bytes[row], pos_bytes[row], lab_bytes[row]
    body = b"".join((
        headers[b"input_ids", len(ids)], ids,
        t["mask"][length],
        t["segment_header"], zeros[length - nb], ones[nb], zeros[seq - length],
        headers[b"masked_lm_positions", len(pos)], pos,
        headers[b"masked_lm_ids", len(lab)], lab,
        t["weights"][k],
        t["nsp"][1 if inst.is_random_next else 0],
    ))
    records.append(b"\x0a" + _varint(len(body)) + body)
  return records


def _varint_rows(values: np.ndarray) -> list[bytes]:
  """Protobuf varint encoding of each row of a non-negative int array [rows, width]."""
  if values.size and values.max() >= 1 << 28:
    raise ValueError("ids of 2**28 and above are not supported")
  table, sizes = _W["varint_table"]
  if values.size and values.max() < len(sizes):  # ids and positions: one gather
    groups, size = table[values], sizes[values]
  else:
    size = 1 + (values >= 1 << 7) + (values >= 1 << 14) + (values >= 1 << 21)
    groups = np.stack([(values >> shift) & 0x7F | ((size > i + 1) << 7)
                       for i, shift in enumerate((0, 7, 14, 21))], axis=-1).astype(np.uint8)
  data = groups[np.arange(4) < size[..., None]].tobytes()  # row-major: rows stay contiguous
  ends = np.cumsum(size.sum(axis=1)).tolist()
  return [data[a:b] for a, b in zip([0] + ends[:-1], ends)]


def _whole_word_choices(tokens, candidate, num_to_predict, gen):
  """Whole-word masking: words in a random order, each taken if it still fits (reference)."""
  is_subword = np.asarray(_W["is_subword"])
  chosen = np.zeros(tokens.shape, bool)
  starts = candidate & ~is_subword[tokens]
  # A ## piece right after [CLS]/[SEP] starts a word too (the reference's _tokens_to_grams).
  starts[:, 1:] |= candidate[:, 1:] & ~candidate[:, :-1]
  starts[:, 0] |= candidate[:, 0]
  for row in range(tokens.shape[0]):
    begins = np.flatnonzero(starts[row])
    ends = np.append(begins[1:], 0)
    ends[-1:] = np.flatnonzero(candidate[row])[-1] + 1 if len(begins) else 0
    # A word ends where the next one begins or at the first non-candidate token.
    stops = np.flatnonzero(~candidate[row])
    ends = np.minimum(ends, stops[np.searchsorted(stops, begins)] if len(stops) else ends)
    budget = num_to_predict[row]
    for w in gen.permutation(len(begins)):
      size = ends[w] - begins[w]
      if size <= budget:
        chosen[row, begins[w]:ends[w]] = True
        budget -= size
        if not budget:
          break
  return chosen


def _process_task(args):
  """Worker: (chunk_index, part, documents, dupe rounds) -> serialized examples."""
  chunk_index, part, documents, rounds = args
  rng = random.Random(_task_seed(_W["config"].random_seed, chunk_index, part))
  # The cyclic garbage collector, triggered by the millions of small lists made here, would
  # rescan all of them again and again (it cost more than half the time); nothing here
  # makes reference cycles.
  enabled = gc.isenabled()
  gc.disable()
  try:
    instances = create_instances(documents, rng, rounds)
    if _W["config"].exact_reference_rng:
      return chunk_index, [serialize_instance(inst) for inst in instances]
    gen = np.random.default_rng(rng.getrandbits(64))
    # Slices keep the [batch, max_seq_length] temporaries small (cache, memory).
    return chunk_index, [record for start in range(0, len(instances), 2048)
                         for record in _mask_and_serialize(instances[start:start + 2048], gen)]
  finally:
    if enabled:
      gc.enable()


# ---------------------------------------------------------------------------------------------
# Hand-written tf.train.Example serialization (byte-identical content to the proto library's).


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte = n & 0x7F
    n >>= 7
    if n:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


_ONE_F, _ZERO_F = struct.pack("<f", 1.0), struct.pack("<f", 0.0)


def _entry_header(name: bytes, payload_len: int, float_list: bool = False) -> bytes:
  """The bytes of a Features map entry that precede a packed payload of ``payload_len``."""
  inner = b"\x0a" + _varint(payload_len)
  list_len = len(inner) + payload_len
  feature = (b"\x12" if float_list else b"\x1a") + _varint(list_len) + inner
  feature_len = len(feature) + payload_len
  entry = b"\x0a" + _varint(len(name)) + name + b"\x12" + _varint(feature_len) + feature
  return b"\x0a" + _varint(len(entry) + payload_len) + entry


class _Headers(dict):
  """(name, payload length) -> entry header, computed once each."""

  def __missing__(self, key):
    value = self[key] = _entry_header(*key)
    return value


def _serializer_tables(config: PretrainingDataConfig) -> dict:
  # Everything of a record that depends only on lengths, precomputed once per worker.
  seq, preds = config.max_seq_length, config.max_predictions_per_seq
  zeros = [b"\x00" * i for i in range(seq + 1)]
  ones = [b"\x01" * i for i in range(seq + 1)]
  return {
      "zeros": zeros, "ones": ones, "headers": _Headers(),
      "mask": [_entry_header(b"input_mask", seq) + ones[n] + zeros[seq - n]
               for n in range(seq + 1)],
      "segment_header": _entry_header(b"segment_ids", seq),
      "weights": [_entry_header(b"masked_lm_weights", 4 * preds, True) + _ONE_F * k +
                  _ZERO_F * (preds - k) for k in range(preds + 1)],
      "nsp": [_entry_header(b"next_sentence_labels", 1) + bytes([v]) for v in (0, 1)],
  }


def serialize_instance(inst: TrainingInstance) -> bytes:
  """A TrainingInstance -> serialized tf.train.Example with google's features (padded).

  Field for field what ``tf.train.Example(...).SerializeToString()`` holds (tested by parsing
  both); built from precomputed pieces, as the proto library took most of the time.
  """
  cfg, varints, t = _W["config"], _W["varints"], _W["tables"]
  seq, preds = cfg.max_seq_length, cfg.max_predictions_per_seq
  n, k = len(inst.tokens), len(inst.masked_lm_positions)
  if n > seq or k > preds:
    raise AssertionError(f"instance of {n} tokens / {k} predictions exceeds "
                         f"max_seq_length {seq} / max_predictions_per_seq {preds}")
  zeros, headers = t["zeros"], t["headers"]
  encode = varints.__getitem__
  ids = b"".join(map(encode, inst.tokens)) + zeros[seq - n]
  positions = b"".join([varints[p] if p < len(varints) else _varint(p)
                        for p in inst.masked_lm_positions]) + zeros[preds - k]
  labels = b"".join(map(encode, inst.masked_lm_labels)) + zeros[preds - k]
  nb = sum(inst.segment_ids)
  body = b"".join((
      headers[b"input_ids", len(ids)], ids,
      t["mask"][n],
      t["segment_header"], zeros[n - nb], t["ones"][nb], zeros[seq - n],
      headers[b"masked_lm_positions", len(positions)], positions,
      headers[b"masked_lm_ids", len(labels)], labels,
      t["weights"][k],
      t["nsp"][1 if inst.is_random_next else 0],
  ))
  return b"\x0a" + _varint(len(body)) + body


# ---------------------------------------------------------------------------------------------
# The whole job.


def _chunks(documents: Iterable, size: int) -> Iterator[tuple[int, list]]:
  chunk, index = [], 0
  for doc in documents:
    chunk.append(doc)
    if len(chunk) >= size:
      yield index, chunk
      chunk, index = [], index + 1
  if chunk:
    yield index, chunk


def _worker_args(tokenizer, config):
  vocab = tokenizer.vocab
  # google draws random replacements with rng.choice(list(vocab.keys())); the ids in that
  # order consume the same random numbers and give the same tokens.
  vocab_ids = list(vocab.values())
  size = max(vocab_ids) + 1
  is_subword = [False] * size
  for token, i in vocab.items():
    is_subword[i] = token.startswith("##")
  for token in ("[CLS]", "[SEP]", "[MASK]"):
    if token not in vocab:
      raise ValueError(f"{tokenizer.vocab_file}: the vocabulary has no {token} token")
  return (vocab_ids, is_subword, [vocab["[CLS]"], vocab["[SEP]"]], vocab["[CLS]"],
          vocab["[SEP]"], vocab["[MASK]"], config)


def create_pretraining_data(input_files: Sequence[str], output_files: Sequence[str], tokenizer,
                            config: PretrainingDataConfig) -> dict:
  """Reads google-format text, writes pretraining TFRecords with google's features.

  Args:
    input_files: text files, one sentence a line, blank lines between documents.
    output_files: TFRecord paths; instances are written round-robin, as google does.
    tokenizer: a ``bert_tf.tokenization.BertTokenizer``.
    config: a ``PretrainingDataConfig``.

  Returns:
    dict with "documents", "instances", "masked_lm_tokens" and "random_next" counts.
  """
  import tensorflow as tf
  if not input_files:
    raise ValueError("no input files")
  if not output_files:
    raise ValueError("no output files")
  for path in input_files:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"input file not found: {path}")
  worker_args = _worker_args(tokenizer, config)
  num_workers = config.num_workers or os.cpu_count() or 1
  stats = dict(documents=0, instances=0)
  writers = [tf.io.TFRecordWriter(path) for path in output_files]
  documents = read_documents(input_files, tokenizer)

  def counted(docs):
    for d in docs:
      stats["documents"] += 1
      yield d

  chunks = _chunks(counted(documents), config.documents_per_chunk)
  next_writer = 0
  pool = None
  try:
    if num_workers == 1:
      # One task per chunk with all its dupe rounds: google's exact random stream.
      _init_worker(*worker_args)
      tasks = ((index, -1, docs, config.dupe_factor) for index, docs in chunks)
      results = map(_process_task, tasks)
      parts_per_chunk = 1
    else:
      # A chunk's dupe rounds are split over the workers (each part with its own seed), so a
      # corpus of one chunk still uses every core; the parts are shuffled together below.
      parts_per_chunk = min(num_workers, config.dupe_factor)
      rounds = [len(range(p, config.dupe_factor, parts_per_chunk)) for p in range(parts_per_chunk)]
      tasks = ((index, p, docs, rounds[p]) for index, docs in chunks
               for p in range(parts_per_chunk))
      # spawn, not fork: the parent's TensorFlow threads are running. Workers import only
      # this module (numpy, no TensorFlow) plus the caller's __main__ module, as spawn does:
      # keep heavy imports of a calling script inside its main() (see create_pretraining_data.py).
      pool = concurrent.futures.ProcessPoolExecutor(
          num_workers, mp_context=multiprocessing.get_context("spawn"),
          initializer=_init_worker, initargs=worker_args)
      results = _bounded_map(pool, _process_task, tasks, 2 * num_workers)
    pending, got = [], 0
    for chunk_index, records in results:
      pending.extend(records)
      got += 1
      if got < parts_per_chunk:
        continue
      if parts_per_chunk > 1:
        random.Random(_task_seed(config.random_seed, chunk_index, -2)).shuffle(pending)
      for record in pending:
        writers[next_writer].write(record)
        next_writer = (next_writer + 1) % len(writers)
      stats["instances"] += len(pending)
      pending, got = [], 0
      logging.info("wrote %d instances from %d documents", stats["instances"], stats["documents"])
  finally:
    for w in writers:
      w.close()
    if pool is not None:
      pool.shutdown(cancel_futures=True)
  return stats


def _bounded_map(pool, fn, items, max_pending):
  """pool.map that keeps at most ``max_pending`` chunks in flight (bounded memory), in order."""
  pending = []
  for item in items:
    pending.append(pool.submit(fn, item))
    if len(pending) >= max_pending:
      yield pending.pop(0).result()
  for future in pending:
    yield future.result()
