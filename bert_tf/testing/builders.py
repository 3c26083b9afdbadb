"""One builder per task: a Pretrainer or a ClassifierTrainer with small test defaults.

Keyword overrides go to whichever config has that field (TrainConfig / FinetuneConfig or
OptimizerConfig; ``steps`` sets num_train_steps in both, ``optimizer`` is OptimizerConfig.name).
``runtime`` is a distribution name or a ``distribution.Runtime`` (workers pass their own).
"""
import dataclasses

import tensorflow as tf

from bert_tf import distribution, finetuning, training
from bert_tf.configs import BertConfig, FinetuneConfig, OptimizerConfig, TrainConfig
from bert_tf.data import classifier as data
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import TRAIN_BATCH, TRAIN_PREDICTIONS, TRAIN_SEQ, tiny_config


def dataset_fn(features: dict):
  """A train/eval dataset_fn over in-memory features: examples sharded across input pipelines
  (workers; one pipeline under one device or Mirrored), repeated, batched per replica."""
  def fn(context, batch_size):
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    return ds.repeat().batch(batch_size, drop_remainder=True)
  return fn


def split_configs(overrides: dict, run_config_type, defaults: dict, optimizer_defaults: dict):
  """(``run_config_type``, OptimizerConfig) from ``defaults`` / ``optimizer_defaults`` with
  ``overrides`` sent to whichever config has the field (unknown names: TypeError)."""
  run_fields = {f.name for f in dataclasses.fields(run_config_type)}
  opt_fields = {f.name for f in dataclasses.fields(OptimizerConfig)}
  unknown = set(overrides) - run_fields - opt_fields
  if unknown:
    raise TypeError(f"not a {run_config_type.__name__} or OptimizerConfig field: "
                    f"{sorted(unknown)}")
  run = {**defaults, **{k: v for k, v in overrides.items() if k in run_fields}}
  opt = {**optimizer_defaults, **{k: v for k, v in overrides.items() if k in opt_fields}}
  return run_config_type(**run), OptimizerConfig(**opt)


def _runtime(runtime):
  return distribution.make_runtime(runtime) if isinstance(runtime, str) else runtime


def pretrainer(output_dir, runtime="one_device", *, steps=2, optimizer="adamw",
               config: BertConfig = None, features: dict = None, features_seed=0, **overrides):
  """A Pretrainer of ``config`` (default ``tiny_config()``) on ``features`` (default: 64
  random sequences of TRAIN_SEQ tokens from ``features_seed``), global batch TRAIN_BATCH,
  AdamW at 5e-3 with one warm-up step, a log line and a checkpoint every 2 steps."""
  config = config or tiny_config()
  if features is None:
    features = pretraining_features(config, batch=64, seq=TRAIN_SEQ,
                                    predictions=TRAIN_PREDICTIONS, seed=features_seed)
  train, opt = split_configs(
      overrides, TrainConfig,
      dict(output_dir=str(output_dir), train_batch_size=TRAIN_BATCH, max_seq_length=TRAIN_SEQ,
           max_predictions_per_seq=TRAIN_PREDICTIONS, num_train_steps=steps,
           iterations_per_loop=2, save_checkpoints_steps=2, eval_batch_size=8,
           max_eval_steps=4, seed=1),
      dict(name=optimizer, learning_rate=5e-3, num_train_steps=steps, num_warmup_steps=1))
  return training.Pretrainer(config, train, opt, _runtime(runtime), dataset_fn(features),
                             dataset_fn(features))


def classifier_trainer(output_dir, runtime="one_device", *, config: BertConfig, task,
                       **overrides):
  """A ClassifierTrainer of ``config`` for ``task`` (a Task or a task name): token batches of
  512 (eval 4096) at sequence length 64, 4 epochs, AdamW at 5e-4, a log line every 20 steps."""
  run, opt = split_configs(
      overrides, FinetuneConfig,
      dict(output_dir=str(output_dir), train_batch_size=512, batch_size_in_tokens=True,
           eval_batch_size=4096, max_seq_length=64, num_train_epochs=4,
           iterations_per_loop=20, save_checkpoints_steps=1000),
      dict(learning_rate=5e-4))
  task = data.make_task(task) if isinstance(task, str) else task
  return finetuning.ClassifierTrainer(config, run, opt, _runtime(runtime), task)
