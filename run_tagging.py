"""Fine-tune and evaluate BERT on token classification (CoNLL-2003 NER, any BIO tagging).

  python run_tagging.py --task_name=conll2003 --data_dir=$CONLL_DIR \
      --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \
      --init_checkpoint=$BERT/bert_model.ckpt --do_train --do_eval --do_predict \
      --max_seq_length=128 --train_batch_size=32 --learning_rate=5e-5 \
      --num_train_epochs=4 --output_dir=/tmp/conll
  python run_tagging.py --flagfile=<output_dir>/run.flags     # repeat a run exactly

Stages: parse flags -> frozen configs (run_config.json and run.flags in --output_dir) ->
runtime -> the label set (from the training file, saved as labels.txt with the output) ->
sentences and features per split (features cached in --output_dir/features) -> TaggerTrainer
-> train / evaluate / predict.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import sys

from absl import app
from absl import flags as absl_flags
from absl import logging

from bert_tf import distribution, tokenization
from bert_tf.data import tagging as tagging_data
from bert_tf.training.tagging import TaggerTrainer, TaggingSpec
from flags import common as common_flags
from flags import tagging as tagging_flags

tagging_flags.define_tagging_flags()
FLAGS = absl_flags.FLAGS


def read(data, split: str, labels=None) -> list:
  """The sentences of one split; bad input exits with ``file:line: reason``."""
  stats = tagging_data.ReadStats()
  try:
    path = tagging_data.split_path(data.data_dir, split)
    sentences = tagging_data.read_conll(path, data.task_name, data.label_column, labels,
                                        data.strict_tags, data.skip_malformed_rows, stats)
  except (FileNotFoundError, ValueError) as e:  # the message names file and line
    hint = ("" if data.skip_malformed_rows or not isinstance(e, tagging_data.MalformedRowError)
            else " (--skip_malformed_rows skips and counts such sentences)")
    sys.exit(f"error reading the {split} data: {e}{hint}")
  if stats.skipped:
    logging.warning("%s: skipped %d malformed sentence(s) of %d (%s); first: %s", path,
                    stats.skipped, stats.rows, stats.reasons, stats.first_skipped)
  if not sentences:
    sys.exit(f"error reading the {split} data: no sentences in {path}")
  return sentences


def featurize(sentences, tokenizer, spec, labels, split: str):
  """The split's windows, from --output_dir/features when an earlier run made them."""
  data = spec.data
  read_options = dict(task=data.task_name, label_column=data.label_column,
                      strict=data.strict_tags, skip_malformed=data.skip_malformed_rows)
  cache = f"{spec.run.output_dir}/features" if data.cache_features else None
  features = tagging_data.cached_featurize(
      sentences, tokenizer, spec.run.max_seq_length,
      {label: i for i, label in enumerate(labels)}, data.doc_context,
      tagging_data.split_path(data.data_dir, split), read_options, cache, log=logging.info)
  logging.info("%s: %d sentences -> %d windows; %d split (longer than --max_seq_length=%d), "
               "%d word(s) cut to fit, %d word(s) without tokens (predicted O)", split,
               len(sentences), len(features), features.split_sentences,
               spec.run.max_seq_length, features.truncated_words, len(features.vanished))
  return features


def label_set(spec, runtime, train) -> list:
  """The training file's labels, or those saved with the output by an earlier run."""
  saved = tagging_data.load_labels(spec.run.output_dir)
  if train is None and saved is None:
    train = read(spec.data, "train")
  labels = saved if train is None else tagging_data.label_list(train)
  if saved is not None and saved != labels:
    raise app.UsageError(f"the training file's labels {labels} differ from those of the run "
                         f"in {spec.run.output_dir} ({tagging_data.LABELS_FILE}: {saved})")
  if runtime.is_chief:
    tagging_data.save_labels(spec.run.output_dir, labels)
  return labels


def main(_):
  logging.set_verbosity(logging.INFO)
  tagging_flags.validate(FLAGS)
  spec = tagging_flags.to_configs(FLAGS)
  data, phases, run = spec.data, spec.phases, spec.run
  runtime = distribution.start(spec.distribution)
  tokenizer = tokenization.BertTokenizer(data.vocab_file, data.do_lower_case)
  common_flags.check_fits(spec, len(tokenizer.vocab), runtime.num_replicas)
  common_flags.record_run(FLAGS, spec, runtime)
  train = read(data, "train") if phases.do_train else None
  labels = label_set(spec, runtime, train)
  logging.info("%d labels: %s", len(labels), " ".join(labels))
  trainer = TaggerTrainer(spec.bert_config, run, spec.optimizer, runtime,
                          TaggingSpec(data.task_name, tuple(labels)))
  if phases.do_train:
    trainer.train(featurize(train, tokenizer, spec, labels, "train"),
                  init_checkpoint=spec.init_checkpoint)
  if phases.do_eval:
    dev = read(data, "dev", labels)
    results = trainer.evaluate(featurize(dev, tokenizer, spec, labels, "dev"), dev,
                               init_checkpoint=spec.init_checkpoint)
    logging.info("***** Eval results (dev) *****")
    for key in sorted(results):
      logging.info("  %s = %s", key, results[key])
  if phases.do_predict:
    test = read(data, "test", labels)
    path = trainer.predict(featurize(test, tokenizer, spec, labels, "test"), test,
                           init_checkpoint=spec.init_checkpoint)
    logging.info("wrote %s", path)


if __name__ == "__main__":
  app.run(main)
