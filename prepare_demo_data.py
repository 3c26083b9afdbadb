"""Make the offline demo data: a real English corpus from CPython's bundled documentation
(pydoc_data.topics), a WordPiece vocab learned from it, and pretraining TFRecords.

  python prepare_demo_data.py --output_dir=demo_data

Writes corpus.txt, vocab.txt, train-0000i-of-0000N.tfrecord, eval-00000-of-00001.tfrecord and
settings.json. Running it again with the same settings does nothing; with other settings it
refuses unless --overwrite.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

from absl import app
from absl import flags as absl_flags
from absl import logging

from bert_tf.data.demo import pretraining_data as demo
from flags import data as data_flags

data_flags.define_prepare_demo_data_flags()
FLAGS = absl_flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  settings = demo.DemoSettings(
      vocab_size=FLAGS.vocab_size, max_seq_length=FLAGS.max_seq_length,
      max_predictions_per_seq=FLAGS.max_predictions_per_seq, dupe_factor=FLAGS.dupe_factor,
      num_shards=FLAGS.num_shards, random_seed=FLAGS.random_seed)
  try:
    result = demo.prepare_demo_data(FLAGS.output_dir, settings, overwrite=FLAGS.overwrite,
                                    num_workers=FLAGS.num_workers)
  except FileExistsError as e:
    raise app.UsageError(str(e)) from None
  state = "already up to date" if result["reused"] else "written"
  logging.info("demo data in %s %s: %s", FLAGS.output_dir, state, result["counts"])
  print(f"{FLAGS.output_dir}: {state}; vocab {result['counts']['vocab_size']} tokens, "
        f"{result['counts']['train_instances']} train / {result['counts']['eval_instances']} "
        f"eval instances (max_seq_length {settings.max_seq_length}, "
        f"max_predictions_per_seq {settings.max_predictions_per_seq})")


if __name__ == "__main__":
  app.run(main)
