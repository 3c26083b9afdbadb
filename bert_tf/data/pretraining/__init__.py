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

Modules, in the order the data flows:
  context    ``PretrainingDataConfig`` (the options) and ``PretrainingContext`` (vocabulary
             ids, subword flags, special ids, config), passed to every worker-side function
  files      ``--input_file`` patterns; documents from google's text format, tokenized
  instances  sentence pairs from documents (``create_instances``, or as spans of the
             laid-out tokens: ``create_spans``)
  masking    masked-LM choices: the reference's random stream, or numpy batches
  records    the one tf.train.Example serializer both masking paths end in
  writer     ``create_pretraining_data``: chunks, worker processes, round-robin TFRecords
Only ``files`` and ``writer`` import TensorFlow, inside functions: worker processes never do.
"""
from bert_tf.data.pretraining.context import PretrainingContext, PretrainingDataConfig
from bert_tf.data.pretraining.files import expand_file_patterns, read_documents
from bert_tf.data.pretraining.instances import (InstanceSpans, TrainingInstance,
                                                create_instances, create_spans, truncate_fast,
                                                truncate_seq_pair)
from bert_tf.data.pretraining.masking import MaskedBatch, mask_batch, masked_lm
from bert_tf.data.pretraining.records import FEATURE_NAMES, RecordSerializer
from bert_tf.data.pretraining.writer import create_pretraining_data

# The names of the one-module version.
_truncate_seq_pair, _truncate_fast = truncate_seq_pair, truncate_fast
