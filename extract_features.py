"""Per-token contextual embeddings from chosen BERT layers, as google's extract_features.py.

  python extract_features.py --input_file=input.txt --output_file=output.jsonl \
      --vocab_file=vocab.txt --bert_config_file=bert_config.json \
      --init_checkpoint=bert_model.ckpt --layers=-1,-2,-3,-4 --max_seq_length=128 \
      --batch_size=8

Input: one text a line, or "text_a ||| text_b". --init_checkpoint takes a google TF1
checkpoint or one of ours.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

from absl import app
from absl import flags as absl_flags
from absl import logging
import tensorflow as tf

from bert_tf import features, tokenization
from bert_tf.configs import BertConfig
from flags import data as data_flags

data_flags.define_extract_features_flags()
FLAGS = absl_flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    layer_indexes = [int(x) for x in FLAGS.layers.split(",")]
  except ValueError:
    raise app.UsageError(f"--layers must be comma-separated integers, got {FLAGS.layers!r}")
  config = BertConfig.from_json_file(FLAGS.bert_config_file)
  if FLAGS.max_seq_length > config.max_position_embeddings:
    raise app.UsageError(f"--max_seq_length={FLAGS.max_seq_length} exceeds the model's "
                         f"max_position_embeddings ({config.max_position_embeddings})")
  tokenizer = tokenization.BertTokenizer(FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case)
  encoder = features.load_encoder(config, FLAGS.init_checkpoint)
  if not tf.io.gfile.exists(FLAGS.input_file):
    raise app.UsageError(f"--input_file {FLAGS.input_file} does not exist")
  with tf.io.gfile.GFile(FLAGS.input_file, "rb") as f:
    lines = f.read().splitlines()
  records = features.extract_features(lines, tokenizer, encoder, layer_indexes,
                                      FLAGS.max_seq_length, FLAGS.batch_size)
  n = features.write_json_lines(records, FLAGS.output_file)
  logging.info("wrote features of %d lines to %s", n, FLAGS.output_file)


if __name__ == "__main__":
  absl_flags.mark_flags_as_required(
      ["input_file", "output_file", "vocab_file", "bert_config_file", "init_checkpoint"])
  app.run(main)
