"""BERT pretraining (masked LM + next sentence, or masked LM alone) with google's flags.

  python run_pretraining.py --bert_config_file=... --input_file=... --output_dir=... \
      --do_train --multi_gpu --use_fp16 --recompute=selective --optimizer=lamb
  python run_pretraining.py ... --nonext_sentence_prediction      # masked LM alone
  python run_pretraining.py --flagfile=recipes/bert_base_phase1.flags --input_file=...
  python run_pretraining.py --flagfile=<output_dir>/run.flags     # repeat a run exactly

Stages: parse flags -> frozen configs (run_config.json and run.flags in --output_dir) ->
runtime (where it runs) -> Pretrainer (model, optimizer, checkpoints) -> train / evaluate.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

from absl import app
from absl import flags as absl_flags
from absl import logging

from bert_tf import configs, distribution, tokenization, training
from bert_tf.data import pretraining_input
from flags import common as common_flags
from flags import pipeline as pipeline_flags
from flags import pretraining as pretraining_flags

pretraining_flags.define_pretraining_flags()
FLAGS = absl_flags.FLAGS


def dataset_fn(data: configs.PretrainingInputConfig, run: configs.TrainConfig, patterns: str,
               is_training: bool, vocab_size: int = None):
  """(input_context, batch_size) -> batched dataset of google's features."""
  masking = None
  if data.dynamic_masking:
    masking = pretraining_input.DynamicMasking.from_vocab(tokenization.load_vocab(data.vocab_file))

  def fn(context, batch_size):
    return pretraining_input.make_pretraining_dataset(
        patterns, batch_size=batch_size, max_seq_length=run.max_seq_length,
        max_predictions_per_seq=run.max_predictions_per_seq, is_training=is_training,
        input_context=context, seed=run.seed, skip_corrupt=data.skip_corrupt_records,
        dynamic_masking=masking, vocab_size=vocab_size,
        next_sentence_labels=run.next_sentence_prediction)
  return fn


def main(_):
  logging.set_verbosity(logging.INFO)
  pretraining_flags.validate(FLAGS)
  if pipeline_flags.enabled(FLAGS):
    from bert_tf.pipeline import cluster  # pipeline mode only
    if cluster.serve_if_worker():  # TF_CONFIG task > 0: serves its stages until task 0 ends
      return
  # Pipeline mode: m becomes the accumulation steps, before the configuration is recorded.
  spec, pipeline = pipeline_flags.resolve(FLAGS, pretraining_flags.to_configs(FLAGS))
  runtime = distribution.start(spec.distribution)
  common_flags.record_run(FLAGS, spec, runtime)
  if FLAGS.elastic:  # built for one rank; the elastic loop splits the batch per world size
    from bert_tf.training import elastic
    runtime = elastic.as_one_rank(runtime)
  datasets = dict(
      train_dataset_fn=dataset_fn(spec.data, spec.run, spec.data.input_file, is_training=True,
                                  vocab_size=spec.bert_config.vocab_size),
      eval_dataset_fn=dataset_fn(spec.data, spec.run, spec.data.eval_files, is_training=False,
                                 vocab_size=spec.bert_config.vocab_size))
  if pipeline is None:
    trainer = training.Pretrainer(spec.bert_config, spec.run, spec.optimizer, runtime, **datasets)
  else:
    from bert_tf.pipeline import trainer as pipeline_trainer  # pipeline mode only
    trainer = pipeline_trainer.from_spec(pipeline, spec, runtime, **datasets)
  if spec.phases.do_train and FLAGS.elastic:
    elastic.train(trainer, FLAGS.elastic_commit_steps, init_checkpoint=spec.init_checkpoint)
  elif spec.phases.do_train:
    trainer.train(init_checkpoint=spec.init_checkpoint)
  if spec.phases.do_eval:
    if not spec.phases.do_train:
      trainer.restore_or_initialize(spec.init_checkpoint)
    results = trainer.evaluate()
    for key in sorted(results):
      logging.info("eval %s = %s", key, results[key])
  if pipeline is not None:   # a cluster's servers exit 0 only after this
    cluster.finish_if_client()


if __name__ == "__main__":
  app.run(main)
