"""BERT pretraining (masked LM + next sentence) with google's flags.

  python run_pretraining.py --bert_config_file=... --input_file=... --output_dir=... \
      --do_train --multi_gpu --use_fp16 --recompute=selective --optimizer=lamb
  python run_pretraining.py --flagfile=recipes/bert_base_phase1.flags --input_file=...

Stages: parse flags -> frozen configs (written to --output_dir) -> runtime (where it runs)
-> Pretrainer (model, optimizer, checkpoints) -> train / evaluate.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

from absl import app
from absl import flags as absl_flags
from absl import logging
import tensorflow as tf

from bert_tf import distribution, tokenization, training
from bert_tf.data import pretraining_input
from flags import common as common_flags
from flags import pretraining as pretraining_flags

pretraining_flags.define_pretraining_flags()
FLAGS = absl_flags.FLAGS


def _dataset_fn(config: training.TrainConfig, patterns: str, is_training: bool):
  """(input_context, batch_size) -> batched dataset of google's features."""
  masking = None
  if FLAGS.dynamic_masking:
    masking = pretraining_input.DynamicMasking.from_vocab(
        tokenization.load_vocab(FLAGS.vocab_file))

  def fn(context, batch_size):
    return pretraining_input.make_pretraining_dataset(
        patterns, batch_size=batch_size, max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq, is_training=is_training,
        input_context=context, seed=config.seed, skip_corrupt=FLAGS.skip_corrupt_records,
        dynamic_masking=masking)
  return fn


def main(_):
  logging.set_verbosity(logging.INFO)
  pretraining_flags.validate(FLAGS)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  distribution.split_cpu(FLAGS.cpu_devices)
  bert_config, train_config, optimizer_config = pretraining_flags.to_configs(FLAGS)
  runtime = distribution.make_runtime(common_flags.resolved_distribution(FLAGS),
                                      collective=FLAGS.collective,
                                      horovod_fp16_compression=FLAGS.horovod_fp16_compression)
  if runtime.is_chief:
    path = training.save_resolved_config(
        train_config.output_dir, bert_config=bert_config, train=train_config,
        optimizer=optimizer_config, runtime=runtime.description,
        input_file=FLAGS.input_file, init_checkpoint=FLAGS.init_checkpoint)
    logging.info("resolved configuration written to %s", path)
  trainer = training.Pretrainer(
      bert_config, train_config, optimizer_config, runtime,
      train_dataset_fn=_dataset_fn(train_config, FLAGS.input_file, is_training=True),
      eval_dataset_fn=_dataset_fn(train_config, FLAGS.eval_input_file or FLAGS.input_file,
                                  is_training=False))
  if FLAGS.do_train:
    trainer.train(init_checkpoint=FLAGS.init_checkpoint)
  if FLAGS.do_eval:
    if not FLAGS.do_train:
      trainer.restore_or_initialize(FLAGS.init_checkpoint)
    results = trainer.evaluate()
    for key in sorted(results):
      logging.info("eval %s = %s", key, results[key])


if __name__ == "__main__":
  app.run(main)
