"""Fine-tune and evaluate BERT on XNLI or GLUE with google's flags.

  python run_classifier.py --task=xnli --data_dir=$XNLI_DIR --vocab_file=$BERT/vocab.txt \
      --bert_config_file=$BERT/bert_config.json --init_checkpoint=$BERT/bert_model.ckpt \
      --do_train --do_eval --output_dir=/tmp/xnli --use_fp16 --multi_gpu \
      --batch_size_in_tokens --train_batch_size=72000
  python run_classifier.py --flagfile=<output_dir>/run.flags     # repeat a run exactly
  python run_classifier.py ... --teacher_bert_config_file=$T/bert_config.json \
      --teacher_init_checkpoint=$T_RUN --distill_alpha=0.0 --distill_temperature=2  # distil
  python run_classifier.py ... --init_checkpoint=$PIPELINE_RUN --num_stages=8 \
      --pipeline_config=conf.json --pipeline_schedule=1f1b --num_microbatches=8  # pipelined

Stages: parse flags -> frozen configs (run_config.json and run.flags in --output_dir) ->
runtime (where it runs) -> task, tokenizer, features (cached) -> ClassifierTrainer -> train /
evaluate / predict.
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import dataclasses
import sys

from absl import app
from absl import flags as absl_flags
from absl import logging

from bert_tf import configs, distribution, finetuning, tokenization
from bert_tf.data import classifier as classifier_data
from bert_tf.data.classifier import distill as distill_data
from bert_tf.training import distillation
from flags import classifier as classifier_flags
from flags import common as common_flags
from flags import distillation as distillation_flags
from flags import pipeline as pipeline_flags

classifier_flags.define_classifier_flags()
pipeline_flags.define_classifier_flags()
FLAGS = absl_flags.FLAGS


def load_features(data: configs.ClassifierInputConfig, run: configs.FinetuneConfig, task,
                  tokenizer, split: str):
  cache = f"{run.output_dir}/features" if data.cache_features else None
  try:
    return classifier_data.load_features(task, data.data_dir, split, tokenizer,
                                         run.max_seq_length, cache, data.skip_malformed_rows,
                                         log=logging.info)
  except (FileNotFoundError, ValueError) as e:  # bad data: the message names file and line
    hint = ("" if data.skip_malformed_rows or not isinstance(
        e, classifier_data.MalformedRowError) else
            " (--skip_malformed_rows skips and counts such rows)")
    sys.exit(f"error reading the {split} data: {e}{hint}")


def distillation_set(spec: configs.RunSpec, distill, task, tokenizer, runtime):
  """The training (+ transfer) examples for the student and the teacher: the teacher's own
  tokens (it runs here) or its logits from --teacher_logits_file; --write_teacher_logits runs
  it once and writes them. Returns (DistillFeatures, the DistillConfig to train with)."""
  data, run = spec.data, spec.run
  try:
    examples, labelled = distill_data.read_examples(task, data.data_dir, distill.transfer_data_dir,
                                                    data.skip_malformed_rows, log=logging.info)
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error reading the distillation data: {e}")
  teacher_tok = None
  if distill.teacher_config is not None:
    teacher_tok = tokenization.BertTokenizer(distill.teacher_vocab_file,
                                             distill.teacher_do_lower_case)
    teacher = distill.teacher_config
    if len(teacher_tok.vocab) > teacher.vocab_size or \
        run.max_seq_length > teacher.max_position_embeddings:
      raise app.UsageError(
          f"the teacher does not fit: --teacher_vocab_file has {len(teacher_tok.vocab)} tokens "
          f"(teacher vocab_size {teacher.vocab_size}); --max_seq_length={run.max_seq_length} "
          f"(teacher max_position_embeddings {teacher.max_position_embeddings})")
  features = distill_data.distill_features(examples, labelled, task, tokenizer,
                                           run.max_seq_length, teacher_tok)
  path, logits = FLAGS.write_teacher_logits, None
  if path:  # every worker keeps the gathered logits; the chief writes them
    logits = distillation.compute_teacher_logits(distill, run, runtime, task, features)
    if runtime.is_chief:
      distill_data.write_teacher_logits(path, logits, features, task)
      logging.info("wrote the teacher's logits of %d examples to %s", len(features), path)
    distill = dataclasses.replace(distill, teacher_logits_file=path)
  elif distill.teacher_logits_file:
    try:
      logits = distill_data.read_teacher_logits(distill.teacher_logits_file, features, task)
    except (FileNotFoundError, ValueError) as e:
      sys.exit(f"error: {e}")
  if logits is not None:
    features = dataclasses.replace(features, teacher=None, teacher_logits=logits)
  return features, distill


def main(_):
  logging.set_verbosity(logging.INFO)
  classifier_flags.validate(FLAGS)
  pipelined = pipeline_flags.enabled(FLAGS)
  problems = pipeline_flags.problems(FLAGS) + pipeline_flags.num_stages_problems(FLAGS)
  if pipelined and distillation_flags.to_config(FLAGS) is not None:
    problems.append("distillation does not run in pipeline mode (--pipeline_config / "
                    "--pipeline_stages)")
  common_flags.raise_if(problems)
  if pipelined:
    from bert_tf.pipeline import cluster  # pipeline mode only
    if cluster.serve_if_worker():  # TF_CONFIG task > 0: serves its stages until task 0 ends
      return
  # Pipeline mode: m micro-batches per step, the plan's accumulation; a pipeline section.
  spec, pipeline = pipeline_flags.resolve(FLAGS, classifier_flags.to_configs(FLAGS))
  distill = distillation_flags.to_config(FLAGS)
  data, phases = spec.data, spec.phases
  runtime = distribution.start(spec.distribution)
  task = classifier_data.make_task(data.task_name, data.xnli_language, data.xnli_eval_languages)
  tokenizer = tokenization.BertTokenizer(data.vocab_file, data.do_lower_case)
  common_flags.check_fits(spec, len(tokenizer.vocab), runtime.num_replicas)
  common_flags.record_run(FLAGS, spec, runtime)
  features = lambda split: load_features(data, spec.run, task, tokenizer, split)  # noqa: E731
  if pipeline is not None:
    from bert_tf.pipeline import trainer as pipeline_trainer  # pipeline mode only
    trainer = pipeline_trainer.from_spec(pipeline, spec, runtime, task,
                                         trainer=pipeline_trainer.PipelineClassifierTrainer)
    train = features("train").get("") if phases.do_train else None
  elif distill is not None:
    train, distill = distillation_set(spec, distill, task, tokenizer, runtime)
    trainer = distillation.DistillationTrainer(spec.bert_config, spec.run, spec.optimizer,
                                               runtime, task, distill)
  else:
    trainer = finetuning.ClassifierTrainer(spec.bert_config, spec.run, spec.optimizer, runtime,
                                           task)
    train = features("train").get("") if phases.do_train else None
  if phases.do_train:
    if train is None or not len(train):
      raise app.UsageError(f"no training examples for {data.task_name} in {data.data_dir}")
    trainer.train(train, init_checkpoint=spec.init_checkpoint)
  if phases.do_eval:
    results = trainer.evaluate(features(data.eval_split), data.eval_split,
                               init_checkpoint=spec.init_checkpoint)
    logging.info("***** Eval results (%s) *****", data.eval_split)
    for key in sorted(results):
      logging.info("  %s = %s", key, results[key])
  if phases.do_predict:
    for path in trainer.predict(features("test"), init_checkpoint=spec.init_checkpoint):
      logging.info("wrote %s", path)
  if pipeline is not None:   # a cluster's servers exit 0 only after this
    cluster.finish_if_client()


if __name__ == "__main__":
  app.run(main)
