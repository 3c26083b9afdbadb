"""Create masked-LM / next-sentence TFRecords for BERT pretraining, with google's flags.

  python create_pretraining_data.py --input_file='corpus/*.txt' --vocab_file=vocab.txt \
      --output_file=out/train-0.tfrecord,out/train-1.tfrecord --max_seq_length=128 \
      --max_predictions_per_seq=20 --dupe_factor=10 [--num_workers=8]

Input: one sentence a line, blank lines between documents. The records have google's feature
names and dtypes (they feed google's run_pretraining.py, and google's records feed ours).
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import time

from absl import app
from absl import flags as absl_flags
from absl import logging

from flags import data as data_flags

data_flags.define_create_pretraining_data_flags()
FLAGS = absl_flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Imported here, not at the top: the worker processes (spawned) re-import this module, and
  # should not pay for TensorFlow, which only this parent process uses.
  from bert_tf import tokenization
  from bert_tf.data import pretraining
  config = pretraining.PretrainingDataConfig(
      max_seq_length=FLAGS.max_seq_length, max_predictions_per_seq=FLAGS.max_predictions_per_seq,
      random_seed=FLAGS.random_seed, dupe_factor=FLAGS.dupe_factor,
      masked_lm_prob=FLAGS.masked_lm_prob, short_seq_prob=FLAGS.short_seq_prob,
      do_whole_word_mask=FLAGS.do_whole_word_mask, num_workers=FLAGS.num_workers,
      documents_per_chunk=FLAGS.documents_per_chunk,
      exact_reference_rng=FLAGS.exact_reference_rng)
  input_files = pretraining.expand_file_patterns(FLAGS.input_file)
  output_files = [p.strip() for p in FLAGS.output_file.split(",") if p.strip()]
  logging.info("reading %d input file(s), writing %s", len(input_files), output_files)
  tokenizer = tokenization.BertTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
  start = time.time()
  stats = pretraining.create_pretraining_data(input_files, output_files, tokenizer, config)
  logging.info("wrote %d instances from %d documents in %.1f s", stats["instances"],
               stats["documents"], time.time() - start)


if __name__ == "__main__":
  absl_flags.mark_flags_as_required(["input_file", "output_file", "vocab_file"])
  app.run(main)
