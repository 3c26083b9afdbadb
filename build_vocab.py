"""Learn a WordPiece vocab.txt (BERT special tokens first) from a text corpus.

  python build_vocab.py --input_file='corpus/*.txt' --output_file=vocab.txt \
      --vocab_size=30522 --do_lower_case
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

from absl import app
from absl import flags as absl_flags
from absl import logging
import tensorflow as tf

from bert_tf import vocab as vocab_lib
from bert_tf.data import pretraining
from flags import data as data_flags

data_flags.define_build_vocab_flags()
FLAGS = absl_flags.FLAGS


def _lines(paths):
  for path in paths:
    with tf.io.gfile.GFile(path, "rb") as f:
      for line in f:
        if line.strip():
          yield line


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if tf.io.gfile.exists(FLAGS.output_file) and not FLAGS.overwrite:
    raise app.UsageError(f"{FLAGS.output_file} exists; pass --overwrite to replace it")
  paths = pretraining.expand_file_patterns(FLAGS.input_file)
  vocab = vocab_lib.build_vocab(_lines(paths), FLAGS.vocab_size, FLAGS.do_lower_case,
                                num_unused=FLAGS.num_unused, lower_thresh=FLAGS.min_count)
  vocab_lib.write_vocab(vocab, FLAGS.output_file)
  logging.info("wrote %d tokens to %s", len(vocab), FLAGS.output_file)


if __name__ == "__main__":
  absl_flags.mark_flags_as_required(["input_file", "output_file"])
  app.run(main)
