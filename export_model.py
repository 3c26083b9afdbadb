"""Exports a BERT checkpoint as google's format, a Hugging Face folder or a serving SavedModel.

  python export_model.py --checkpoint=<our output_dir | bert_model.ckpt | HF folder> \\
      --format=google|hf|savedmodel --output_dir=<new folder> [--overwrite]

--checkpoint: one of our run directories (run_config.json + checkpoints: pretraining,
classifier or SQuAD), a google checkpoint (bert_config.json and vocab.txt beside it), a Hugging
Face folder (model.safetensors + config.json), or an encoder export (its config from
--bert_config_file, the bert_config.json beside it or the run's run_config.json).
The kind of model (pretraining, classifier, SQuAD, encoder) follows from the weights' names.
Every format gets the config and vocab.txt next to the weights; existing files are never
replaced without --overwrite.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

from absl import app
from absl import flags as absl_flags
from absl import logging
import tensorflow as tf

from bert_tf.interop import export

absl_flags.DEFINE_string("checkpoint", None, "Our output_dir (or a ckpt-N in it), a google "
                         "bert_model.ckpt, a Hugging Face folder or model.safetensors, or an "
                         "encoder export.")
absl_flags.DEFINE_enum("format", None, list(export.FORMATS), "What to write.")
absl_flags.DEFINE_string("output_dir", None, "Where to write (created if missing).")
absl_flags.DEFINE_bool("overwrite", False, "Replace files already in --output_dir.")
absl_flags.DEFINE_string("bert_config_file", None, "bert_config.json, for an encoder export "
                         "(default: the one beside it, else its run's run_config.json).")
absl_flags.DEFINE_string("vocab_file", None, "vocab.txt, when the checkpoint's folder has none "
                         "(or to replace it).")
absl_flags.DEFINE_bool("do_lower_case", None, "The checkpoint's casing, when its folder does not "
                       "say (google checkpoints): needed by --format=savedmodel.")
absl_flags.DEFINE_list("label_names", None, "A classifier's label names in id order (default: "
                       "the run's task labels or the HF config's id2label).")
absl_flags.DEFINE_integer("max_seq_length", 128, "--format=savedmodel: the text and "
                          "tf.train.Example signatures' sequence length.")
absl_flags.mark_flags_as_required(["checkpoint", "format", "output_dir"])
FLAGS = absl_flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    source = export.load_source(FLAGS.checkpoint, FLAGS.bert_config_file, FLAGS.vocab_file,
                                FLAGS.do_lower_case, FLAGS.label_names)
    paths = export.export(source, FLAGS.format, FLAGS.output_dir, FLAGS.overwrite,
                          FLAGS.max_seq_length)
  except (FileExistsError, FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from None
  except tf.errors.NotFoundError as e:  # e.g. a .safetensors with no config.json beside it
    raise app.UsageError(f"--checkpoint={FLAGS.checkpoint}: {e.message}") from None
  logging.info("exported the %s model (%s) to %s", source.kind, FLAGS.format, ", ".join(paths))
  print(f"exported {source.kind} as {FLAGS.format}: {FLAGS.output_dir}")


if __name__ == "__main__":
  app.run(main)
