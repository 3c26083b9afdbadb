"""Fine-tune BERT on SQuAD 1.1 / 2.0 and predict answers, with google's flags.

  python run_squad.py --vocab_file=$BERT/vocab.txt --bert_config_file=$BERT/bert_config.json \
      --init_checkpoint=$BERT/bert_model.ckpt --do_train --train_file=$SQUAD/train-v1.1.json \
      --do_predict --predict_file=$SQUAD/dev-v1.1.json --train_batch_size=24 \
      --learning_rate=3e-5 --num_train_epochs=2.0 --max_seq_length=384 --doc_stride=128 \
      --output_dir=/tmp/squad --multi_gpu --use_fp16
  python run_squad.py --flagfile=<output_dir>/run.flags     # repeat a run exactly

Stages: parse flags -> frozen configs (run_config.json and run.flags in --output_dir) ->
runtime (where it runs) -> tokenizer -> SquadTrainer -> train (read the training file, make
span features) / predict (features of the predict file -> predictions.json,
nbest_predictions.json, null_odds.json for 2.0, eval_results.txt when it has answers).
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import sys

from absl import app
from absl import flags as absl_flags
from absl import logging

from bert_tf import distribution, tokenization
from bert_tf.data import squad as squad_data
from bert_tf.training.squad import SquadTrainer
from flags import common as common_flags
from flags import squad as squad_flags

squad_flags.define_squad_flags()
FLAGS = absl_flags.FLAGS


def load(data, run, tokenizer, path: str, is_training: bool):
  """(file's data list, examples, features) of one SQuAD file; bad input exits naming it."""
  stats = squad_data.ReadStats()
  try:
    dataset = squad_data.load_squad_json(path)
    examples = squad_data.read_squad_examples(path, is_training, data.version_2_with_negative,
                                              data.skip_empty_contexts, stats, dataset)
  except (FileNotFoundError, squad_data.SquadFormatError) as e:
    sys.exit(f"error reading {'training' if is_training else 'predict'} data: {e}")
  logging.info("%s", stats.summary(path))
  if not examples:
    sys.exit(f"error: no usable questions in {path}")
  convert = lambda examples: squad_data.convert_examples_to_features(  # noqa: E731
      examples, tokenizer, run.max_seq_length, data.doc_stride, data.max_query_length,
      is_training, keep_spans=not is_training)
  features = convert(examples)
  tokenless = squad_data.examples_without_features(examples, features)
  if tokenless:  # words, but only control or zero-width characters: nothing to read
    ids = [examples[i].qas_id for i in tokenless]
    if not data.skip_empty_contexts:
      sys.exit(f"error reading {'training' if is_training else 'predict'} data: {path}: "
               f"question {ids[0]!r} has a context with no word pieces (only control or "
               f"zero-width characters){f' (and {len(ids) - 1} more)' if len(ids) > 1 else ''}"
               " (--skip_empty_contexts skips and counts such questions)")
    logging.warning("%s: skipped %d question(s) whose context has no word pieces: %s", path,
                    len(ids), ", ".join(ids[:20]))
    drop = set(tokenless)
    examples = [e for i, e in enumerate(examples) if i not in drop]
    if not examples:
      sys.exit(f"error: no usable questions in {path}")
    features = convert(examples)
  logging.info("%s: %d examples -> %d features", path, len(examples), len(features))
  return dataset, examples, features


def main(_):
  logging.set_verbosity(logging.INFO)
  squad_flags.validate(FLAGS)
  spec = squad_flags.to_configs(FLAGS)
  data, run, phases = spec.data, spec.run, spec.phases
  runtime = distribution.start(spec.distribution)
  tokenizer = tokenization.BertTokenizer(data.vocab_file, data.do_lower_case)
  common_flags.check_fits(spec, len(tokenizer.vocab), runtime.num_replicas)
  common_flags.record_run(FLAGS, spec, runtime)
  trainer = SquadTrainer(spec.bert_config, run, spec.optimizer, runtime)
  if phases.do_train:
    _, _, features = load(data, run, tokenizer, data.train_file, is_training=True)
    trainer.train(features, init_checkpoint=spec.init_checkpoint)
  if phases.do_predict:
    dataset, examples, features = load(data, run, tokenizer, data.predict_file,
                                       is_training=False)
    out = trainer.predict(examples, features, do_lower_case=data.do_lower_case,
                          version_2_with_negative=data.version_2_with_negative,
                          dataset=dataset, init_checkpoint=spec.init_checkpoint)
    if out["eval"] is not None:
      logging.info("***** Eval results (%s) *****", data.predict_file)
      for key in sorted(out["eval"]):
        logging.info("  %s = %s", key, out["eval"][key])


if __name__ == "__main__":
  app.run(main)
