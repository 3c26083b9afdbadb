"""Hand-written tf.train.Example serialization of pretraining instances (worker side: no
TensorFlow import).

The bytes hold, field for field, what ``tf.train.Example(...).SerializeToString()`` holds
(tested by parsing both), with google's feature names and dtypes. They are assembled from
pieces precomputed per length (``RecordSerializer``), as building proto objects cost more
than the rest of instance creation. Both masking paths end in
``RecordSerializer.serialize_batch``.
"""
from __future__ import annotations

import struct

import numpy as np

from bert_tf.data.pretraining.context import PretrainingContext
from bert_tf.data.pretraining.masking import MaskedBatch

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
    ones, zeros = b"\x01", b"\x00"
    # The pieces of a record that depend only on lengths, as byte tables for serialize_batch,
    # which assembles a whole batch of records with numpy gathers: [rows, widest] uint8,
    # zero-padded, and each row's length.
    self._tables = {
        "varint": _varint_table([varint(i) for i in range(max(max_id, seq) + 1)]),
        "mask": _padded([_entry_header(b"input_mask", seq) + ones * n + zeros * (seq - n)
                         for n in range(seq + 1)]),
        "weights": _padded([_entry_header(b"masked_lm_weights", 4 * preds, True) + _ONE_F * k +
                            _ZERO_F * (preds - k) for k in range(preds + 1)]),
        "nsp": _padded([_entry_header(b"next_sentence_labels", 1) + bytes([v]) for v in (0, 1)]),
        "segment": _padded([_entry_header(b"segment_ids", seq)]),
        **{name: _padded([_entry_header(name.encode(), size) for size in range(4 * width + 1)])
           for name, width in (("input_ids", seq), ("masked_lm_positions", preds),
                               ("masked_lm_ids", preds))}}

  @classmethod
  def for_context(cls, context: PretrainingContext) -> "RecordSerializer":
    """For the records a ``PretrainingContext`` describes."""
    return cls(context.config.max_seq_length, context.config.max_predictions_per_seq,
               max(context.vocab_ids))

  def serialize_instances(self, instances) -> list[bytes]:
    """Masked ``TrainingInstance``s (the exact path's) -> their records (padded), through
    ``serialize_batch``: the two masking paths share one serializer."""
    seq, preds, n = self.max_seq_length, self.max_predictions_per_seq, len(instances)
    ids, positions, labels = (np.zeros([n, width], np.int64) for width in (seq, preds, preds))
    for i, inst in enumerate(instances):
      length, k = len(inst.tokens), len(inst.masked_lm_positions)
      if length > seq or k > preds:
        raise AssertionError(f"instance of {length} tokens / {k} predictions exceeds "
                             f"max_seq_length {seq} / max_predictions_per_seq {preds}")
      ids[i, :length], positions[i, :k], labels[i, :k] = (
          inst.tokens, inst.masked_lm_positions, inst.masked_lm_labels)
    return self.serialize_batch(MaskedBatch(
        ids, [len(inst.tokens) for inst in instances],
        [sum(inst.segment_ids) for inst in instances], positions, labels,
        [len(inst.masked_lm_positions) for inst in instances],
        [inst.is_random_next for inst in instances])) if n else []

  def serialize_instance(self, inst) -> bytes:
    """One masked ``TrainingInstance`` -> its record."""
    return self.serialize_instances([inst])[0]

  def serialize_batch(self, batch) -> list[bytes]:
    """A ``masking.MaskedBatch`` -> its records, in order."""
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
