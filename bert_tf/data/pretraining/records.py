"""Hand-written tf.train.Example serialization of pretraining instances (worker side: no
TensorFlow import).

The bytes hold, field for field, what ``tf.train.Example(...).SerializeToString()`` holds
(tested by parsing both), with google's feature names and dtypes. They are assembled from
pieces precomputed per length (``RecordSerializer``), as building proto objects cost more
than the rest of instance creation. Both masking paths end in ``RecordSerializer.record``.
"""
from __future__ import annotations

import struct

import numpy as np

from bert_tf.data.pretraining.context import PretrainingContext

FEATURE_NAMES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                 "masked_lm_ids", "masked_lm_weights", "next_sentence_labels")

_ONE_F, _ZERO_F = struct.pack("<f", 1.0), struct.pack("<f", 0.0)


def varint(n: int) -> bytes:
  """Protobuf varint encoding of a non-negative int."""
  out = bytearray()
  while True:
    byte = n & 0x7F
    n >>= 7
    if n:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _entry_header(name: bytes, payload_len: int, float_list: bool = False) -> bytes:
  """The bytes of a Features map entry that precede a packed payload of ``payload_len``."""
  inner = b"\x0a" + varint(payload_len)
  list_len = len(inner) + payload_len
  feature = (b"\x12" if float_list else b"\x1a") + varint(list_len) + inner
  feature_len = len(feature) + payload_len
  entry = b"\x0a" + varint(len(name)) + name + b"\x12" + varint(feature_len) + feature
  return b"\x0a" + varint(len(entry) + payload_len) + entry


class _Headers(dict):
  """(name, payload length) -> entry header, computed once each."""

  def __missing__(self, key):
    value = self[key] = _entry_header(*key)
    return value


class RecordSerializer:
  """Serialized tf.train.Examples of one record shape, from varint-encoded token ids.

  Everything of a record that depends only on lengths is precomputed here, once per worker.

  Args:
    max_seq_length: length of input_ids / input_mask / segment_ids (padded with 0).
    max_predictions_per_seq: length of masked_lm_positions / _ids / _weights.
    max_id: the largest token id (its varint bytes are precomputed up to here).
  """

  def __init__(self, max_seq_length: int, max_predictions_per_seq: int, max_id: int):
    self.max_seq_length, self.max_predictions_per_seq = max_seq_length, max_predictions_per_seq
    seq, preds = max_seq_length, max_predictions_per_seq
    self._varints = [varint(i) for i in range(max(max_id, seq) + 1)]
    self._zeros = [b"\x00" * i for i in range(seq + 1)]
    self._ones = [b"\x01" * i for i in range(seq + 1)]
    self._headers = _Headers()
    self._mask = [_entry_header(b"input_mask", seq) + self._ones[n] + self._zeros[seq - n]
                  for n in range(seq + 1)]
    self._segment_header = _entry_header(b"segment_ids", seq)
    self._weights = [_entry_header(b"masked_lm_weights", 4 * preds, True) + _ONE_F * k +
                     _ZERO_F * (preds - k) for k in range(preds + 1)]
    self._nsp = [_entry_header(b"next_sentence_labels", 1) + bytes([v]) for v in (0, 1)]
    # The same pieces as byte tables for serialize_batch, which assembles a whole batch of
    # records with numpy gathers: [rows, widest] uint8, zero-padded, and each row's length.
    self._tables = {
        "varint": _varint_table(self._varints),
        "mask": _padded(self._mask), "weights": _padded(self._weights), "nsp": _padded(self._nsp),
        "segment": _padded([self._segment_header]),
        **{name: _padded([_entry_header(name.encode(), size) for size in range(4 * width + 1)])
           for name, width in (("input_ids", seq), ("masked_lm_positions", preds),
                               ("masked_lm_ids", preds))}}

  @classmethod
  def for_context(cls, context: PretrainingContext) -> "RecordSerializer":
    """For the records a ``PretrainingContext`` describes."""
    return cls(context.config.max_seq_length, context.config.max_predictions_per_seq,
               max(context.vocab_ids))

  def record(self, ids: bytes, length: int, num_b: int, positions: bytes, labels: bytes,
             num_predictions: int, is_random_next: bool) -> bytes:
    """One serialized tf.train.Example with google's features.

    Args:
      ids: varints of the max_seq_length input ids (padding included).
      length: real tokens; num_b: of them, the segment-b tail ([SEP] included).
      positions, labels: varints of the max_predictions_per_seq masked positions and their
        original ids (padding included).
      num_predictions: real masked positions (their masked_lm_weights are 1).
      is_random_next: the next-sentence label.
    """
    zeros, headers = self._zeros, self._headers
    body = b"".join((
        headers[b"input_ids", len(ids)], ids,
        self._mask[length],
        self._segment_header, zeros[length - num_b], self._ones[num_b],
        zeros[self.max_seq_length - length],
        headers[b"masked_lm_positions", len(positions)], positions,
        headers[b"masked_lm_ids", len(labels)], labels,
        self._weights[num_predictions],
        self._nsp[1 if is_random_next else 0],
    ))
    return b"\x0a" + varint(len(body)) + body

  def serialize_instance(self, inst) -> bytes:
    """A masked ``TrainingInstance`` -> its record (padded)."""
    seq, preds = self.max_seq_length, self.max_predictions_per_seq
    n, k = len(inst.tokens), len(inst.masked_lm_positions)
    if n > seq or k > preds:
      raise AssertionError(f"instance of {n} tokens / {k} predictions exceeds "
                           f"max_seq_length {seq} / max_predictions_per_seq {preds}")
    varints, zeros = self._varints, self._zeros
    encode = varints.__getitem__
    ids = b"".join(map(encode, inst.tokens)) + zeros[seq - n]
    positions = b"".join([varints[p] if p < len(varints) else varint(p)
                          for p in inst.masked_lm_positions]) + zeros[preds - k]
    labels = b"".join(map(encode, inst.masked_lm_labels)) + zeros[preds - k]
    return self.record(ids, n, sum(inst.segment_ids), positions, labels, k,
                       inst.is_random_next)

  def serialize_batch(self, batch) -> list[bytes]:
    """A ``masking.MaskedBatch`` -> its records, in order (the bytes ``record`` makes)."""
    t = self._tables
    lengths, counts = np.asarray(batch.lengths), np.asarray(batch.counts)
    rows, seq = len(lengths), self.max_seq_length
    segment = (np.arange(seq) >= (lengths - np.asarray(batch.num_b))[:, None]) & (
        np.arange(seq) < lengths[:, None])
    header = t["segment"][0][np.zeros(rows, np.int64)]
    body = [*self._entry("input_ids", batch.input_ids),
            _gathered(t["mask"], lengths),
            (np.concatenate([header, segment.view(np.uint8)], axis=1), None,
             np.full(rows, header.shape[1] + seq)),
            *self._entry("masked_lm_positions", batch.positions),
            *self._entry("masked_lm_ids", batch.labels),
            _gathered(t["weights"], counts),
            _gathered(t["nsp"], np.asarray(batch.is_random_next, np.int64))]
    size = sum(n for _, _, n in body)
    tag = (np.full([rows, 1], 0x0A, np.uint8), None, np.ones(rows, np.int64))
    return _join_rows([tag, _varints(size[:, None], t["varint"])] + body)

  def _entry(self, name: str, values: np.ndarray) -> list:
    """A features-map entry of packed varints: [header piece, payload piece]."""
    payload = _varints(values, self._tables["varint"])
    return [_gathered(self._tables[name], payload[2]), payload]


# serialize_batch works on "pieces": (uint8 [rows, width]; bool [rows, width], which bytes are
# real, or None for all of them; int64 [rows], the real bytes per row), one piece per part of a
# record; a record is its row of each piece, in order, real bytes only.


def _padded(rows: list[bytes]):
  """Byte strings -> (uint8 [len(rows), longest] zero-padded, bool [same] real, lengths)."""
  sizes = np.array([len(row) for row in rows], np.int64)
  table = np.zeros([len(rows), max(1, sizes.max())], np.uint8)
  for i, row in enumerate(rows):
    table[i, :len(row)] = np.frombuffer(row, np.uint8)
  return table, np.arange(table.shape[1]) < sizes[:, None], sizes


def _gathered(table, index: np.ndarray):
  """The piece of table rows ``index`` (int [rows])."""
  data, real, sizes = table
  return data[index], None if real.all() else real[index], sizes[index]


def _varint_table(varints: list[bytes]):
  """Varint bytes and real-byte flags of every id, each packed in one uint32 (gathered with
  one ``take`` per batch: faster than gathering rows of 4 bytes)."""
  data, real, sizes = _padded(varints)
  if data.shape[1] > 4:
    raise ValueError("ids of 2**28 and above are not supported")
  pad = [(0, 0), (0, 4 - data.shape[1])]
  return (np.pad(data, pad).view(np.uint32)[:, 0], np.pad(real, pad).view(np.uint32)[:, 0],
          sizes)


def _varints(values: np.ndarray, table):
  """The piece of each row of a non-negative int array [rows, width], varint-encoded."""
  data, real, sizes = table
  rows = len(values)
  if values.size and values.max() >= len(sizes):  # beyond the table: computed
    if values.max() >= 1 << 28:
      raise ValueError("ids of 2**28 and above are not supported")
    size = 1 + (values >= 1 << 7) + (values >= 1 << 14) + (values >= 1 << 21)
    groups = np.stack([(values >> shift) & 0x7F | ((size > i + 1) << 7)
                       for i, shift in enumerate((0, 7, 14, 21))], axis=-1).astype(np.uint8)
    flags = np.arange(4) < size[..., None]
    return groups.reshape(rows, -1), flags.reshape(rows, -1), size.sum(axis=1)
  return (data.take(values).view(np.uint8).reshape(rows, -1),
          real.take(values).view(bool).reshape(rows, -1), sizes.take(values).sum(axis=1))


def _join_rows(pieces) -> list[bytes]:
  """Each row's real bytes of all pieces, in order: one bytes object per row."""
  data = np.concatenate([d for d, _, _ in pieces], axis=1)
  real = np.concatenate([np.ones(d.shape, bool) if r is None else r for d, r, _ in pieces],
                        axis=1)
  # Row-major, so each row's bytes stay together (compress: 5x faster than data[real]).
  flat = np.compress(real.ravel(), data.ravel()).tobytes()
  ends = np.cumsum(sum(n for _, _, n in pieces)).tolist()
  return [flat[a:b] for a, b in zip([0] + ends[:-1], ends)]
