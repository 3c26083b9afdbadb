"""A long-lived harness for kill-at-random tests: imports TensorFlow once, then forks one
training process per launch, so each relaunch costs the training's start (model, trace),
not Python's and TensorFlow's imports.

  python -m bert_tf.testing.kill_harness      # then, one command per line on stdin:
  run OUTPUT_DIR LOG_FILE STEPS               # -> "pid N", and when it ends "exit CODE"
                                              #    (-9: killed by SIGKILL)

Nothing in TensorFlow's runtime is started before the fork (only imports), so each child
starts its own. A child trains ``kill_trainer`` (the training engine on a tiny regression
task, a checkpoint at every step, deterministic ops) to STEPS, resuming from OUTPUT_DIR; its
output goes to LOG_FILE.
"""
import os
import sys

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
import tensorflow as tf  # noqa: F401  (imported once, before the forks)

import numpy as np
import tf_keras

from bert_tf import distribution
from bert_tf.configs import OptimizerConfig, TrainConfig
from bert_tf.testing.tiny import tiny_config
from bert_tf.training.engine import Engine

CHILD_TIME_LIMIT = 300  # seconds: a child that hangs is ended (SIGALRM), never waited on
BATCH, FEATURES = 8, 6
# The learning-rate schedule's length, fixed whatever step a launch stops at, so launches that
# stop at different steps (killed ones aim far ahead, the last one stops where it is told) and
# the uninterrupted reference all follow one schedule.
SCHEDULE_STEPS = 1000


class RegressionTask:
  """The smallest engine task: a 2-layer MLP regressing a fixed random target. It exercises
  everything the engine saves and restores (weights, AdamW slots, step counters) and traces
  in a second or two, where BERT's graph takes ten on a busy 2-core machine."""

  num_metrics = 3  # loss, gradient norm, skipped

  def build_model(self, bert_config, config):
    del bert_config, config
    model = tf_keras.Sequential([tf_keras.layers.Dense(16, activation="tanh"),
                                 tf_keras.layers.Dense(1)])
    model.build([None, FEATURES])
    return model

  def init_from(self, path, model):
    raise NotImplementedError("the regression task starts from its own initialisation")

  def normalisers(self, batch, all_reduce_sum):
    return (all_reduce_sum(tf.cast(tf.shape(batch["y"])[1], tf.float32)),)

  def micro_batch_loss(self, model, batch, k, normalisers, seed):
    del seed
    error = model(batch["x"][k])[:, 0] - batch["y"][k]
    loss = tf.reduce_sum(tf.square(error)) / normalisers[0]
    return loss, tf.stack([loss])

  def step_metrics(self, sums, normalisers, grad_norm, skipped):
    del normalisers
    return tf.stack([sums[0], grad_norm, skipped])

  def log_values(self, totals, num_steps, step):
    del step
    return ({"loss": float(totals[0] / num_steps), "grad_norm": float(totals[1] / num_steps)},
            num_steps * BATCH, num_steps * BATCH)


def kill_trainer(output_dir, steps):
  """An engine on ``RegressionTask`` that stops at ``steps``: batch 8, a log line and a
  checkpoint every step, 3 checkpoints kept, AdamW without warm-up over ``SCHEDULE_STEPS``, no
  stall watchdog (the test kills, not it)."""
  config = TrainConfig(output_dir=str(output_dir), train_batch_size=BATCH, max_seq_length=2,
                       num_train_steps=steps, iterations_per_loop=1, save_checkpoints_steps=1,
                       keep_checkpoint_max=3, seed=3, stall_timeout_secs=0.0)
  engine = Engine(RegressionTask(), tiny_config(), config, distribution.make_runtime("one_device"))
  engine.build_optimizer(OptimizerConfig(learning_rate=1e-2, num_train_steps=SCHEDULE_STEPS,
                                         num_warmup_steps=0))
  return engine


def train(engine):
  """Resumes and trains to num_train_steps; the data position is the step (batches skipped)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, FEATURES)).astype(np.float32)
  data = {"x": x, "y": np.sin(x.sum(axis=1)).astype(np.float32)}
  start = engine.restore()

  def dataset_fn(context):
    del context
    ds = tf.data.Dataset.from_tensor_slices(data).repeat().batch(BATCH, drop_remainder=True)
    return ds.batch(1).skip(start)

  iterator = iter(engine.runtime.distribute_dataset(dataset_fn))
  return engine.fit(iterator, start, engine.config.num_train_steps)


def _child(output_dir, log_file, steps):
  import signal
  from absl import logging
  fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  signal.alarm(CHILD_TIME_LIMIT)
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  tf.config.experimental.enable_op_determinism()
  train(kill_trainer(output_dir, steps))
  logging.info("finished")


def main():
  for line in sys.stdin:
    command = line.split()
    if not command:
      continue
    if command[0] != "run" or len(command) != 4:
      print(f"error: unknown command {line!r}", flush=True)
      continue
    pid = os.fork()
    if pid == 0:
      code = 1
      try:
        _child(command[1], command[2], int(command[3]))
        code = 0
      except BaseException:  # pylint: disable=broad-except (reported in the child's log)
        import traceback
        traceback.print_exc()
      finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # pylint: disable=protected-access
    print(f"pid {pid}", flush=True)
    _, status = os.waitpid(pid, 0)
    print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
  main()
