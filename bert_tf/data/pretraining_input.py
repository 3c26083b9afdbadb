"""Reading pretraining TFRecords (google's feature names, from either side's writer): a tf.data
pipeline with sharding across workers, corrupt-file reporting or skipping, and optional
dynamic masking. Writing is in ``bert_tf.data.pretraining``."""
from __future__ import annotations

import dataclasses
import logging

from bert_tf.data.pretraining.files import expand_file_patterns


@dataclasses.dataclass(frozen=True)
class DynamicMasking:
  """Masks on the fly (new masks every epoch) from records of whole sentence pairs.

  Token-level masking with google's rates: ``masked_lm_prob`` of the real tokens, at most
  ``max_predictions_per_seq``, never ``special_ids``; 80% [MASK], 10% random id, 10% kept.
  The records' own masked_lm_* features, if any, are ignored (positions already masked in
  them would be masked again, so make such records with ``--max_predictions_per_seq=0``).
  """
  mask_id: int
  vocab_size: int
  special_ids: tuple = (0, 101, 102)  # [PAD], [CLS], [SEP] in google's English vocabs
  masked_lm_prob: float = 0.15

  @classmethod
  def from_vocab(cls, vocab: dict, masked_lm_prob: float = 0.15) -> "DynamicMasking":
    return cls(mask_id=vocab["[MASK]"], vocab_size=max(vocab.values()) + 1,
               special_ids=tuple(vocab[t] for t in ("[PAD]", "[CLS]", "[SEP]") if t in vocab),
               masked_lm_prob=masked_lm_prob)


def _apply_dynamic_masking(batch, random_seed, masking: DynamicMasking, max_predictions_per_seq):
  """Masks one batch; ``random_seed``: int64 [2] from a rerandomizing Dataset.random."""
  import tensorflow as tf
  seeds = tf.random.experimental.stateless_split(random_seed, 3)
  ids = batch["input_ids"]  # [B, S] int32
  shape = tf.shape(ids)
  candidate = tf.cast(batch["input_mask"], tf.bool)
  for special in masking.special_ids:
    candidate &= ids != special
  num_real = tf.reduce_sum(tf.cast(batch["input_mask"], tf.float32), axis=1)
  num_to_predict = tf.minimum(
      max_predictions_per_seq,
      tf.maximum(1, tf.cast(tf.round(num_real * masking.masked_lm_prob), tf.int32)))  # [B]
  num_to_predict = tf.minimum(num_to_predict,
                              tf.reduce_sum(tf.cast(candidate, tf.int32), axis=1))
  # A random order of the candidates: the first num_to_predict are masked.
  scores = tf.where(candidate, tf.random.stateless_uniform(tf.shape(ids), seeds[0]), -1.0)
  _, order = tf.math.top_k(scores, k=max_predictions_per_seq)  # [B, P]
  slot = tf.range(max_predictions_per_seq)[tf.newaxis, :]
  valid = slot < num_to_predict[:, tf.newaxis]  # [B, P]
  # Sorted positions, padding (0) at the end, as google writes them.
  positions = tf.sort(tf.where(valid, order, shape[1]), axis=1)
  valid = positions < shape[1]
  positions = tf.where(valid, positions, 0)
  labels = tf.where(valid, tf.gather(ids, positions, batch_dims=1), 0)
  action = tf.random.stateless_uniform(tf.shape(positions), seeds[1])
  random_ids = tf.random.stateless_uniform(tf.shape(positions), seeds[2], 0, masking.vocab_size,
                                           tf.int32)
  replacement = tf.where(action < 0.8, masking.mask_id,
                         tf.where(action < 0.9, random_ids, labels))
  rows = tf.broadcast_to(tf.range(shape[0])[:, tf.newaxis], tf.shape(positions))
  updates = tf.boolean_mask(tf.stack([rows, positions], -1), valid)
  new_ids = tf.tensor_scatter_nd_update(ids, updates, tf.boolean_mask(replacement, valid))
  batch = dict(batch)
  batch.update(input_ids=new_ids, masked_lm_positions=positions, masked_lm_ids=labels,
               masked_lm_weights=tf.cast(valid, tf.float32))
  return batch


def _count_skipped_file():
  from bert_tf.training import reporting  # no TensorFlow import at module level here
  reporting.count_input("corrupt_files_skipped")


def _file_records(path, size, skip_corrupt, corrupt_counter):
  """Records of one file; a corrupt one fails naming the file, or ends the file (counted).

  TFRecordDataset's own error ("corrupted record at 128") names no file, and a damaged file
  cannot be read past the damage. So errors are swallowed per file and the bytes read are
  compared with the file size when the file ends.
  """
  import tensorflow as tf
  records = tf.data.TFRecordDataset(path).ignore_errors()
  marked = records.map(lambda r: (r, False)).concatenate(
      tf.data.Dataset.from_tensors((tf.constant(b""), True)))

  def account(read, item):
    record, is_end = item
    read = read + tf.where(is_end, tf.constant(0, tf.int64),
                           tf.cast(tf.strings.length(record), tf.int64) + 16)
    return read, (record, is_end, read)

  def check(record, is_end, read):
    damaged = is_end & (read != size)
    message = tf.strings.format(
        "corrupt TFRecord file {}: only {} of its {} bytes could be read", (path, read, size))
    if skip_corrupt:
      def count():
        tf.print("WARNING: skipping the rest of", message)
        if corrupt_counter is not None:
          corrupt_counter.assign_add(1)
        # Counted in the process too: the training metrics report it (reporting.input_counts).
        tf.numpy_function(_count_skipped_file, [], [])
        return tf.constant(True)
      tf.cond(damaged, count, lambda: tf.constant(False))
      return record, is_end
    with tf.control_dependencies([tf.debugging.Assert(tf.logical_not(damaged), [message])]):
      return tf.identity(record), is_end

  # (record, path, is_end): the end markers are dropped after the interleave (see
  # _fail_if_nothing_readable).
  return (marked.scan(tf.constant(0, tf.int64), account)
          .map(check).map(lambda record, is_end: (record, path, is_end)))


def _fail_if_nothing_readable(ds, num_files: int):
  """With --skip_corrupt_records, files damaged from their first record yield nothing; if
  all are, a repeated pass over them would spin forever. More consecutive file ends than two
  passes' worth with no record between them is an error naming the last file."""
  import tensorflow as tf
  limit = 2 * num_files + 2

  def count(run, item):
    record, path, is_end = item
    run = tf.where(is_end, run + 1, tf.constant(0, tf.int64))
    return run, (record, path, is_end, run)

  def check(record, path, is_end, run):
    message = tf.strings.format(
        "no readable pretraining record in two passes over the " + str(num_files) +
        " input file(s) with --skip_corrupt_records: every file is damaged from its first "
        "record (the last: {})", (path,))
    with tf.control_dependencies([tf.debugging.Assert(run < limit, [message])]):
      return tf.identity(record), path, is_end

  return ds.scan(tf.constant(0, tf.int64), count).map(check)


def _shard(files: list, input_context, num_shards, shard_index) -> tuple[list, tuple | None]:
  """(this worker's files, (num_shards, index) to shard by record or None); see
  ``make_pretraining_dataset``."""
  if input_context is not None and num_shards is not None:
    raise ValueError("pass either input_context or num_shards/shard_index, not both")
  if input_context is not None:
    num_shards, shard_index = input_context.num_input_pipelines, input_context.input_pipeline_id
  record_shard = None
  if num_shards is not None and num_shards > 1:
    if not 0 <= (shard_index or 0) < num_shards:
      raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    if len(files) >= num_shards:
      files = files[shard_index::num_shards]
    else:
      record_shard = (num_shards, shard_index)
      logging.warning("%d input file(s) for %d workers: sharding by record, so every worker "
                      "reads all of them; write at least one file per worker (--output_file "
                      "a,b,...) to shard by file instead", len(files), num_shards)
  return files, record_shard


def _check_ids(batch: dict, paths, vocab_size: int):
  """Every token id (input_ids, masked_lm_ids) below ``vocab_size``, or an error naming the
  file, the id and the config; one max per batch (a GPU's gather would return zeros)."""
  import tensorflow as tf
  checks = []
  for name in ("input_ids", "masked_lm_ids"):
    if name not in batch:
      continue
    ids = batch[name]
    row_max = tf.reduce_max(tf.concat([ids, tf.zeros_like(ids[:, :1])], axis=1), axis=1)
    row_min = tf.reduce_min(tf.concat([ids, tf.zeros_like(ids[:, :1])], axis=1), axis=1)
    bad_rows = (row_max >= vocab_size) | (row_min < 0)
    first = tf.argmax(tf.cast(bad_rows, tf.int32))
    worst = tf.where(row_max[first] >= vocab_size, row_max[first], row_min[first])
    checks.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad_rows)), [
        tf.strings.format("pretraining records in {} hold " + name + " {}, outside [0, "
                          f"vocab_size={vocab_size}) of the model config: records made with "
                          "another vocab, or the wrong bert_config?", (paths[first], worst))]))
  return checks


def _batch_parser(max_seq_length: int, max_predictions_per_seq: int, masked: bool,
                  vocab_size: int | None = None, next_sentence_labels: bool = True):
  """A function: (batch of serialized records (string [B]), their files [B]) -> dict of dense
  features, int32 (masked_lm_weights float32), checking each length against the flag that
  sets it and, given ``vocab_size``, every id against it. Without ``next_sentence_labels``
  that feature is not parsed: records may hold it or not."""
  import tensorflow as tf
  spec = {"input_ids": tf.int64, "input_mask": tf.int64, "segment_ids": tf.int64}
  if next_sentence_labels:
    spec["next_sentence_labels"] = tf.int64
  if masked:
    spec.update(masked_lm_positions=tf.int64, masked_lm_ids=tf.int64,
                masked_lm_weights=tf.float32)
  lengths = {"input_ids": max_seq_length, "input_mask": max_seq_length,
             "segment_ids": max_seq_length, "next_sentence_labels": 1,
             "masked_lm_positions": max_predictions_per_seq,
             "masked_lm_ids": max_predictions_per_seq, "masked_lm_weights": max_predictions_per_seq}
  flag = {name: "--max_seq_length" if n == "max_seq_length" else "--max_predictions_per_seq"
          for name, n in (("input_ids", "max_seq_length"), ("input_mask", "max_seq_length"),
                          ("segment_ids", "max_seq_length"), ("masked_lm_positions", ""),
                          ("masked_lm_ids", ""), ("masked_lm_weights", ""))}
  flag["next_sentence_labels"] = "the expected length"

  def parse(records, paths):
    # Parsed as ragged so a length mismatch can be reported with both numbers; a
    # FixedLenFeature would only say "Can't parse serialized Example".
    parsed = tf.io.parse_example(records, {k: tf.io.RaggedFeature(v) for k, v in spec.items()})
    out = {}
    checks = []
    for name, ragged in parsed.items():
      expected = lengths[name]
      row_lengths = ragged.row_lengths()
      bad = tf.reduce_any(row_lengths != expected)
      found = tf.reduce_max(tf.where(row_lengths != expected, row_lengths, -1))
      checks.append(tf.debugging.Assert(tf.logical_not(bad), [tf.strings.format(
          "pretraining records have " + name + " of length {}, but " + flag[name] + " is {}",
          (found, expected))]))
      out[name] = ragged
    with tf.control_dependencies(checks):
      batch = {name: tf.identity(ragged.to_tensor(shape=[None, lengths[name]]))
               for name, ragged in out.items()}
    if vocab_size is not None:
      with tf.control_dependencies(_check_ids(batch, paths, vocab_size)):
        batch = {name: tf.identity(value) for name, value in batch.items()}
    return {k: tf.cast(v, tf.int32) if v.dtype == tf.int64 else v for k, v in batch.items()}

  return parse


def make_pretraining_dataset(file_patterns, batch_size: int, max_seq_length: int,
                             max_predictions_per_seq: int, is_training: bool,
                             input_context=None, num_shards: int | None = None,
                             shard_index: int | None = None, seed: int | None = None,
                             skip_corrupt: bool = False, dynamic_masking: DynamicMasking | None = None,
                             corrupt_counter=None, vocab_size: int | None = None,
                             next_sentence_labels: bool = True, shuffle_buffer: int = 10000,
                             cycle_length: int = 8, drop_remainder: bool | None = None):
  """A tf.data pipeline of pretraining batches from google-format TFRecords.

  Args:
    file_patterns: str (globs and comma lists, as google's --input_file) or list of them.
    batch_size: per-replica batch size (that is, of the dataset returned).
    max_seq_length: int, must equal the records' input_ids length.
    max_predictions_per_seq: int, must equal the records' masked_lm_* length (unless
      ``dynamic_masking``, where it is the number of predictions made).
    is_training: shuffle files and records, repeat forever; otherwise one ordered pass.
    input_context: a ``tf.distribute.InputContext``; files are sharded by its pipeline id.
    num_shards, shard_index: explicit sharding (e.g. Horovod size/rank); exclusive with
      ``input_context``. By file when there are at least as many files as shards; otherwise
      by record (every worker reads every file in a fixed order and keeps every N-th record:
      disjoint and complete, at N times the reading; file order is then not shuffled).
    seed: int, for file order, record shuffling and dynamic masking.
    skip_corrupt: False: a corrupt file raises InvalidArgumentError naming it. True: the
      unreadable rest of the file is skipped, a warning printed and ``corrupt_counter``
      (an int64 tf.Variable, if given) incremented.
    dynamic_masking: a ``DynamicMasking`` to mask on the fly instead of reading masks.
    vocab_size: the model's; every batch's ids are checked against it (an error names the
      file and the id).
    next_sentence_labels: read that feature (False: masked LM alone; records without it are
      read too).

  Returns:
    tf.data.Dataset of dicts: input_ids, input_mask, segment_ids int32 [batch, max_seq_length];
    masked_lm_positions, masked_lm_ids int32 and masked_lm_weights float32
    [batch, max_predictions_per_seq]; next_sentence_labels int32 [batch, 1] (if read).
  """
  import tensorflow as tf
  files, record_shard = _shard(expand_file_patterns(file_patterns), input_context, num_shards,
                               shard_index)
  sizes = [tf.io.gfile.stat(f).length for f in files]
  if not any(sizes):  # no records at all: training would spin forever, eval average nothing
    raise ValueError(f"no pretraining records: {len(files)} input file(s) of this worker are "
                     f"empty (0 bytes): {', '.join(files[:10])}"
                     + (f" and {len(files) - 10} more" if len(files) > 10 else ""))

  ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(sizes, tf.int64)))
  if is_training and record_shard is None:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = ds.interleave(
      lambda path, size: _file_records(path, size, skip_corrupt, corrupt_counter),
      cycle_length=min(cycle_length, len(files)), block_length=1,
      num_parallel_calls=tf.data.AUTOTUNE,
      # By-record sharding needs the same record order on every worker.
      deterministic=record_shard is not None or not is_training or seed is not None)
  if skip_corrupt and is_training:
    ds = _fail_if_nothing_readable(ds, len(files))
  ds = ds.filter(lambda record, path, is_end: tf.logical_not(is_end)).map(
      lambda record, path, is_end: (record, path))
  if record_shard is not None:
    ds = ds.shard(*record_shard)
    if is_training:
      ds = ds.repeat()
  if is_training:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  ds = ds.batch(batch_size, drop_remainder=is_training if drop_remainder is None else drop_remainder)

  masked = dynamic_masking is None
  ds = ds.map(_batch_parser(max_seq_length, max_predictions_per_seq, masked, vocab_size,
                            next_sentence_labels), num_parallel_calls=tf.data.AUTOTUNE)
  if not masked:
    # Seeds from a dataset that draws a new sequence on every pass (and every new iterator),
    # so each epoch sees new masks, reproducibly for a given ``seed``.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda b, s: _apply_dynamic_masking(b, s, dynamic_masking, max_predictions_per_seq),
        num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)
