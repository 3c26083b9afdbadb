"""One definition of the small training runs that the multi-process tests compare: used both by
tests/workers/train_worker.py (in each worker process) and by the in-process one-device
reference, so both sides build exactly the same trainer."""
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
