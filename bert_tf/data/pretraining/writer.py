"""The whole job: text files in, pretraining TFRecords out (``create_pretraining_data``).

Documents are read and tokenized in this process, grouped in chunks of
``documents_per_chunk``; each chunk (or, with several workers, each part of its dupe rounds)
is one task that a worker turns into serialized records; the records are written
round-robin to the output files, chunk after chunk.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import logging
import multiprocessing
import os
import random
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence

import numpy as np

from bert_tf.data.pretraining.context import PretrainingContext, PretrainingDataConfig
from bert_tf.data.pretraining.files import read_documents
from bert_tf.data.pretraining.instances import create_instances, create_spans
from bert_tf.data.pretraining.masking import mask_batch
from bert_tf.data.pretraining.records import RecordSerializer

_MASK_BATCH = 2048  # instances masked together: keeps the [batch, max_seq_length] arrays small


class ChunkTask(NamedTuple):
  """One unit of work: ``rounds`` dupe rounds over one chunk of tokenized documents."""
  chunk_index: int
  part: int  # -1: the chunk's every round in one task; else which share of the rounds
  documents: list
  rounds: int


def task_seed(random_seed: int, chunk_index: int, part: int) -> int:
  """The random seed of one task (part -2: the shuffle of a chunk's parts)."""
  # Chunk 0 done whole (part -1) uses the seed itself: a corpus that fits one chunk, made by one
  # worker, reproduces the reference record for record.
  if chunk_index == 0 and part < 0:
    return random_seed
  return hash((random_seed, chunk_index, part)) & 0x7FFFFFFF


def process_task(task: ChunkTask, context: PretrainingContext, serializer: RecordSerializer
                 ) -> tuple[int, list[bytes]]:
  """One task -> (chunk_index, its serialized examples)."""
  rng = random.Random(task_seed(context.config.random_seed, task.chunk_index, task.part))
  # The cyclic garbage collector, triggered by the millions of small lists made here, would
  # rescan all of them again and again (it cost more than half the time); nothing here
  # makes reference cycles.
  enabled = gc.isenabled()
  gc.disable()
  try:
    if context.config.exact_reference_rng:
      instances = create_instances(task.documents, rng, task.rounds, context)
      return task.chunk_index, serializer.serialize_instances(instances)
    spans = create_spans(task.documents, rng, task.rounds, context)
    gen = np.random.default_rng(rng.getrandbits(64))
    return task.chunk_index, [
        record for start in range(0, len(spans), _MASK_BATCH)
        for record in serializer.serialize_batch(
            mask_batch(spans[start:start + _MASK_BATCH], gen, context))]
  finally:
    if enabled:
      gc.enable()


# One per worker process, set by the pool's initializer: pickling the context (vocabulary
# included) and building the serializer's tables once per process, not once per task.
_worker: Optional[tuple[PretrainingContext, RecordSerializer]] = None


def _init_worker(context: PretrainingContext) -> None:
  global _worker
  _worker = (context, RecordSerializer.for_context(context))


def _process_in_worker(task: ChunkTask) -> tuple[int, list[bytes]]:
  return process_task(task, *_worker)


def _chunks(documents: Iterable, size: int) -> Iterator[tuple[int, list]]:
  chunk, index = [], 0
  for doc in documents:
    chunk.append(doc)
    if len(chunk) >= size:
      yield index, chunk
      chunk, index = [], index + 1
  if chunk:
    yield index, chunk


def _bounded_map(pool, fn, items, max_pending):
  """pool.map that keeps at most ``max_pending`` chunks in flight (bounded memory), in order."""
  pending = []
  for item in items:
    pending.append(pool.submit(fn, item))
    if len(pending) >= max_pending:
      yield pending.pop(0).result()
  for future in pending:
    yield future.result()


@contextlib.contextmanager
def _processed(chunks: Iterable[tuple[int, list]], context: PretrainingContext,
               num_workers: int):
  """Yields (results, parts_per_chunk): results lazily gives (chunk_index, records) per task,
  each chunk's ``parts_per_chunk`` tasks one after the other."""
  config = context.config
  if num_workers == 1:
    # One task per chunk with all its dupe rounds: google's exact random stream.
    serializer = RecordSerializer.for_context(context)
    tasks = (ChunkTask(index, -1, docs, config.dupe_factor) for index, docs in chunks)
    yield (process_task(task, context, serializer) for task in tasks), 1
    return
  # A chunk's dupe rounds are split over the workers (each part with its own seed), so a
  # corpus of one chunk still uses every core; the parts are shuffled together when written.
  parts = min(num_workers, config.dupe_factor)
  rounds = [len(range(p, config.dupe_factor, parts)) for p in range(parts)]
  tasks = (ChunkTask(index, p, docs, rounds[p]) for index, docs in chunks for p in range(parts))
  # spawn, not fork: the parent's TensorFlow threads are running. Workers import only this
  # package (numpy, no TensorFlow) plus the caller's __main__ module, as spawn does: keep
  # heavy imports of a calling script inside its main() (see create_pretraining_data.py).
  pool = concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=multiprocessing.get_context("spawn"),
      initializer=_init_worker, initargs=(context,))
  # The pool starts a worker per task submitted while none is idle: one trivial task each
  # starts them all now, so their start-up (over a second of wall time on a busy machine)
  # overlaps the tokenization of the first chunk rather than following it.
  for _ in range(num_workers):
    pool.submit(int)
  try:
    yield _bounded_map(pool, _process_in_worker, tasks, 2 * num_workers), parts
  finally:
    pool.shutdown(cancel_futures=True)


def _write_round_robin(results, parts_per_chunk: int, writers: list, random_seed: int,
                       stats: dict) -> None:
  """Writes each chunk's records (its parts shuffled together) round-robin, as google does."""
  pending, got, next_writer = [], 0, 0
  for chunk_index, records in results:
    pending.extend(records)
    got += 1
    if got < parts_per_chunk:
      continue
    if parts_per_chunk > 1:
      random.Random(task_seed(random_seed, chunk_index, -2)).shuffle(pending)
    for record in pending:
      writers[next_writer].write(record)
      next_writer = (next_writer + 1) % len(writers)
    stats["instances"] += len(pending)
    pending, got = [], 0
    logging.info("wrote %d instances from %d documents", stats["instances"], stats["documents"])


# Below this much text x dupe_factor, num_workers=0 runs in this process. Workers cost CPU
# (start-up, pickling the documents out and every record back) that only a large job earns
# back in wall time: 7.1 MB x 10 dupe rounds took 8.7 s of CPU and 23 s of wall time in one
# process, 11.0 s and 29-40 s with two workers (2 cores, load 9-10); idle, two workers would
# save at most the half of the ~2.5 s of instance work they share.
_SMALL_WORK_BYTES = 128 << 20


def _auto_workers(input_files: Sequence[str], config: PretrainingDataConfig) -> int:
  """num_workers=0: every core, or one process (no workers) for a small job."""
  import tensorflow as tf
  size = sum(tf.io.gfile.stat(path).length for path in input_files)
  return 1 if size * config.dupe_factor < _SMALL_WORK_BYTES else os.cpu_count() or 1


def create_pretraining_data(input_files: Sequence[str], output_files: Sequence[str], tokenizer,
                            config: PretrainingDataConfig) -> dict:
  """Reads google-format text, writes pretraining TFRecords with google's features.

  Args:
    input_files: text files, one sentence a line, blank lines between documents.
    output_files: TFRecord paths; instances are written round-robin, as google does.
    tokenizer: a ``bert_tf.tokenization.BertTokenizer``.
    config: a ``PretrainingDataConfig``.

  Returns:
    dict with "documents" and "instances" counts and the number of "workers" used.
  """
  import tensorflow as tf
  if not input_files:
    raise ValueError("no input files")
  if not output_files:
    raise ValueError("no output files")
  for path in input_files:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"input file not found: {path}")
  context = PretrainingContext.from_tokenizer(tokenizer, config)
  num_workers = config.num_workers or _auto_workers(input_files, config)
  stats = dict(documents=0, instances=0, workers=num_workers)

  def counted(docs):
    for d in docs:
      stats["documents"] += 1
      yield d

  chunks = _chunks(counted(read_documents(input_files, tokenizer)), config.documents_per_chunk)
  writers = [tf.io.TFRecordWriter(path) for path in output_files]
  try:
    with _processed(chunks, context, num_workers) as (results, parts_per_chunk):
      _write_round_robin(results, parts_per_chunk, writers, config.random_seed, stats)
  finally:
    for w in writers:
      w.close()
  return stats
