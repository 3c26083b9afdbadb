"""One definition of the small training runs that the multi-process tests compare: used both by
tests/workers/train_worker.py (in each worker process) and by the in-process one-device
reference, so both sides build exactly the same trainer."""
import numpy as np
import tensorflow as tf

from bert_tf import optimization, training

from helpers import random_features, tiny_config

SEQ, PREDICTIONS, BATCH = 16, 3, 8


def sharded_dataset_fn(features):
  """Examples sharded across input pipelines (workers), then batched per replica."""
  def fn(context, batch_size):
    ds = tf.data.Dataset.from_tensor_slices(features)
    ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    return ds.repeat().batch(batch_size, drop_remainder=True)
  return fn


def build_trainer(runtime, features_seed, *, name, output_dir, dtype="fp32", steps=2,
                  epsilon=1e-6, learning_rate=5e-3, accumulation=1, save_steps=None,
                  stall_timeout_secs=0.0):
  del name
  features = random_features(tiny_config(), batch=64, seq=SEQ, predictions=PREDICTIONS,
                             seed=features_seed)
  config = training.TrainConfig(
      output_dir=output_dir, train_batch_size=BATCH, max_seq_length=SEQ,
      max_predictions_per_seq=PREDICTIONS, num_train_steps=steps, iterations_per_loop=1,
      save_checkpoints_steps=save_steps or steps, gradient_accumulation_steps=accumulation,
      dtype=dtype, seed=1, stall_timeout_secs=stall_timeout_secs)
  opt = optimization.OptimizerConfig(learning_rate=learning_rate, num_train_steps=steps,
                                     num_warmup_steps=0, epsilon=epsilon)
  return training.Pretrainer(tiny_config(), config, opt, runtime,
                             sharded_dataset_fn(features), sharded_dataset_fn(features))


def classifier_features(seed: int, count: int, vocab_size: int = 100, max_len: int = 24):
  """``count`` random MRPC-style pairs of varied length (so token batches vary in size)."""
  from bert_tf.data import classifier as data
  rng = np.random.default_rng(seed)
  lengths = rng.integers(6, max_len + 1, count)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  ids = rng.integers(5, vocab_size, int(offsets[-1])).astype(np.int32)
  ids[offsets[:-1]] = 2  # [CLS]
  first = np.array([rng.integers(2, n - 2) for n in lengths], np.int32)
  ids[offsets[:-1] + first - 1] = 3  # [SEP] after the first segment
  ids[offsets[1:] - 1] = 3
  labels = rng.integers(0, 2, count).astype(np.int32)
  return data.Features(ids=ids, offsets=offsets, first_lengths=first, labels=labels)


def build_classifier(runtime, *, output_dir, accumulation=1):
  """A token-batched MRPC fine-tune (no dropout) with its training and eval features."""
  from bert_tf import finetuning
  from bert_tf.configs import BertConfig
  from bert_tf.data import classifier as data
  config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64, max_position_embeddings=32,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  trainer = finetuning.ClassifierTrainer(
      config, finetuning.FinetuneConfig(
          output_dir=output_dir, train_batch_size=160, batch_size_in_tokens=True,
          eval_batch_size=96, max_seq_length=24, num_train_epochs=1, iterations_per_loop=2,
          save_checkpoints_steps=100, gradient_accumulation_steps=accumulation, seed=3),
      optimization.OptimizerConfig(learning_rate=1e-2), runtime, data.make_task("mrpc"))
  # 37 eval examples: the batches do not split evenly over the replicas.
  return trainer, classifier_features(0, 40), {"": classifier_features(1, 37)}
