"""Fine-tune and evaluate BERT on XNLI or GLUE with google's flags.

  python run_classifier.py --task=xnli --data_dir=$XNLI_DIR --vocab_file=$BERT/vocab.txt \
      --bert_config_file=$BERT/bert_config.json --init_checkpoint=$BERT/bert_model.ckpt \
      --do_train --do_eval --output_dir=/tmp/xnli --use_fp16 --multi_gpu \
      --batch_size_in_tokens --train_batch_size=72000

Stages: parse flags -> frozen configs (written to --output_dir) -> runtime (where it runs)
-> task, tokenizer, features (cached) -> ClassifierTrainer -> train / evaluate / predict.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import sys

from absl import app
from absl import flags as absl_flags
from absl import logging
import tensorflow as tf

from bert_tf import distribution, finetuning, tokenization, training
from bert_tf.data import classifier as classifier_data
from flags import classifier as classifier_flags
from flags import common as common_flags

classifier_flags.define_classifier_flags()
FLAGS = absl_flags.FLAGS


def main(_):
  logging.set_verbosity(logging.INFO)
  classifier_flags.validate(FLAGS)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  distribution.split_cpu(FLAGS.cpu_devices)
  bert_config, config, optimizer_config = classifier_flags.to_configs(FLAGS)
  runtime = distribution.make_runtime(common_flags.resolved_distribution(FLAGS))
  parts = runtime.num_replicas * config.gradient_accumulation_steps
  if FLAGS.batch_size_in_tokens and config.train_batch_size // parts < config.max_seq_length:
    raise app.UsageError(classifier_flags.check_token_budget(
        "train_batch_size", config.train_batch_size, parts, config.max_seq_length))
  if config.max_seq_length > bert_config.max_position_embeddings:
    raise app.UsageError(f"--max_seq_length={config.max_seq_length} exceeds the model's "
                         f"max_position_embeddings={bert_config.max_position_embeddings}")
  task = classifier_data.make_task(FLAGS.task_name, FLAGS.xnli_language,
                                   FLAGS.xnli_eval_languages)
  tokenizer = tokenization.BertTokenizer(FLAGS.vocab_file, FLAGS.do_lower_case)
  if len(tokenizer.vocab) > bert_config.vocab_size:
    raise app.UsageError(f"--vocab_file has {len(tokenizer.vocab)} tokens but the model's "
                         f"vocab_size is {bert_config.vocab_size}: wrong vocab or config?")
  if runtime.is_chief:
    path = training.save_resolved_config(
        config.output_dir, bert_config=bert_config, finetune=config, optimizer=optimizer_config,
        runtime=runtime.description, task=FLAGS.task_name, data_dir=FLAGS.data_dir,
        vocab_file=FLAGS.vocab_file, do_lower_case=FLAGS.do_lower_case,
        init_checkpoint=FLAGS.init_checkpoint, xnli_language=FLAGS.xnli_language,
        xnli_eval_languages=FLAGS.xnli_eval_languages)
    logging.info("resolved configuration written to %s", path)

  def features(split):
    cache = f"{config.output_dir}/features" if FLAGS.cache_features else None
    try:
      return classifier_data.load_features(task, FLAGS.data_dir, split, tokenizer,
                                           config.max_seq_length, cache,
                                           FLAGS.skip_malformed_rows, log=logging.info)
    except (FileNotFoundError, ValueError) as e:  # bad data: the message names file and line
      hint = ("" if FLAGS.skip_malformed_rows or not isinstance(
          e, classifier_data.MalformedRowError) else
              " (--skip_malformed_rows skips and counts such rows)")
      sys.exit(f"error reading the {split} data: {e}{hint}")

  trainer = finetuning.ClassifierTrainer(bert_config, config, optimizer_config, runtime, task)
  if FLAGS.do_train:
    train = features("train").get("")
    if train is None or not len(train):
      raise app.UsageError(f"no training examples for {FLAGS.task_name} in {FLAGS.data_dir}")
    trainer.train(train, init_checkpoint=FLAGS.init_checkpoint)
  if FLAGS.do_eval:
    results = trainer.evaluate(features(FLAGS.eval_split), FLAGS.eval_split,
                               init_checkpoint=FLAGS.init_checkpoint)
    logging.info("***** Eval results (%s) *****", FLAGS.eval_split)
    for key in sorted(results):
      logging.info("  %s = %s", key, results[key])
  if FLAGS.do_predict:
    for path in trainer.predict(features("test"), init_checkpoint=FLAGS.init_checkpoint):
      logging.info("wrote %s", path)


if __name__ == "__main__":
  app.run(main)
