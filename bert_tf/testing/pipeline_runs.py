"""Pipeline-parallel pretraining runs for tests: the tiny odd-sized model and features, the
layouts, a ``PipelinePretrainer`` builder, weight comparison, the traced loop's ops, and
``replicated_child`` (the 2 stages x 2 ranks runs, in a subprocess of 4 logical CPU devices).

Tiny odd-sized config (3 layers, hidden 32, vocab 99, sequence 16), dropout 0, fp32 unless
said; m = 4 micro-batches, 4 steps; a 2-device test process puts 4-stage layouts' stages 0 and
2 on CPU:0 and 1 and 3 on CPU:1 (``DEVICES``).
"""
import collections
import os
import pickle
import re

import numpy as np
import tensorflow as tf

from bert_tf.configs import TrainConfig
from bert_tf.pipeline import conf as conf_lib
from bert_tf.pipeline.trainer import PipelinePretrainer, pipeline_runtime
from bert_tf.testing import builders
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import TRAIN_BATCH, TRAIN_PREDICTIONS, TRAIN_SEQ, tiny_config

M, STEPS, CONFIG = 4, 4, tiny_config(num_hidden_layers=3)
FEATURES = pretraining_features(CONFIG, batch=64, seq=TRAIN_SEQ, predictions=TRAIN_PREDICTIONS,
                                seed=0)
TWO = {"module_to_stage_map": [0, 0, 1, 1, 1, 1], "stage_to_rank_map": {"0": [0], "1": [1]}}
FOUR = {"module_to_stage_map": [0, 1, 2, 3, 3, 3],   # stage 0: the embeddings alone
        "stage_to_rank_map": {str(s): [s] for s in range(4)}}
DEVICES = ["/device:CPU:0", "/device:CPU:1"] * 2
REPLICATED = {**TWO, "stage_to_rank_map": {"0": [0, 2], "1": [1, 3]}}   # 2 stages x 2 ranks
REPLICA_DEVICES = [f"/device:CPU:{r}" for r in range(4)]   # rank r on CPU:r (replicated_child)


def train_configs(output_dir, steps=STEPS, **overrides):
  """(TrainConfig, OptimizerConfig): global batch TRAIN_BATCH in m = M micro-batches, a log
  line and a checkpoint every 2 steps, AdamW at 5e-3 with one warm-up step."""
  return builders.split_configs(
      {"gradient_accumulation_steps": M, **overrides}, TrainConfig,
      dict(output_dir=str(output_dir), train_batch_size=TRAIN_BATCH, max_seq_length=TRAIN_SEQ,
           max_predictions_per_seq=TRAIN_PREDICTIONS, num_train_steps=steps,
           iterations_per_loop=2, save_checkpoints_steps=2, seed=1),
      dict(name="adamw", learning_rate=5e-3, num_train_steps=steps, num_warmup_steps=1))


def build(output_dir, layout, schedule, steps=STEPS, m=M, overrides=None, **kwargs):
  """A ``PipelinePretrainer`` of ``layout`` (a conf.json dict) on FEATURES (default devices:
  DEVICES); ``overrides`` go to the configs, ``kwargs`` to the trainer."""
  conf = conf_lib.parse_conf(layout)
  train, opt = train_configs(output_dir, steps, gradient_accumulation_steps=m,
                             **(overrides or {}))
  kwargs.setdefault("devices", DEVICES)
  return PipelinePretrainer(CONFIG, train, opt, pipeline_runtime(conf, schedule),
                            builders.dataset_fn(FEATURES), conf=conf, schedule=schedule,
                            **kwargs)


def pipeline(output_dir, layout, schedule, steps=STEPS, stop_after=None, m=M, overrides=None,
             **kwargs):
  """``build``, then trained; its last metrics in ``trainer.fit_metrics``."""
  trainer = build(output_dir, layout, schedule, steps, m, overrides, **kwargs)
  trainer.fit_metrics = trainer.train(stop_after_steps=stop_after)
  return trainer


def weights(model):
  return {v.name: v.numpy() for v in model.variables}


def max_diff(a, b):
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def traced_ops(trainer):
  """Every op of the traced training loop (its one trace: the same signature does not
  retrace), the while loop's body included."""
  loop = trainer.compiled_train_loop()
  graph = loop.function.get_concrete_function(iter(trainer.distributed_train_dataset(0)),
                                              tf.constant(2)).graph.as_graph_def()
  return list(graph.node) + [n for f in graph.library.function for n in f.node_def]


def softmax_placement(trainer):
  """(layer, device) -> Softmax ops (that layer's attention probabilities) in the traced
  training loop: forward, and under full recompute again in the backward."""
  found = [(re.search(r"layer_\d+", n.name), n.device[-5:]) for n in traced_ops(trainer)
           if n.op == "Softmax"]
  return collections.Counter((layer.group(0), device) for layer, device in found if layer)


def replicated_child(output_dir):
  """The 2 stages x 2 ranks runs, in a process of 4 logical CPU devices (rank r on CPU:r, so
  every replica of every stage has a device of its own): 1f1b with --recompute=full (m = 4, 4
  steps: 2 micro-batches per replica pipeline, every block recomputed in its backward on its
  replica's device), then 2bw (m = 4, 3 steps of one graph each: each replica keeps its own
  stash on its devices). Pickles to ``output_dir/replicated.pkl`` the weights, loss and the
  placement facts tests/test_pipeline.py checks."""
  facts = {"cpu_devices": len(tf.config.list_logical_devices("CPU"))}

  def replica_facts(trainer, replicas):
    return {"devices": {(r, s): sorted({v.device[-5:] for v in replica.variables[s]})
                        for r, replica in enumerate(replicas) for s in range(2)},
            "replica_diff": max_diff(weights(replicas[1].model), weights(replicas[0].model)),
            "traces": trainer.compiled_train_loop().function.experimental_get_tracing_count()}

  flush = pipeline(os.path.join(output_dir, "1f1b"), REPLICATED, "1f1b", devices=REPLICA_DEVICES,
                   overrides=dict(recompute="full"))
  facts["1f1b"] = {**replica_facts(flush, flush.replicas), "weights": weights(flush.model),
                   "loss": flush.fit_metrics["loss"],
                   "iterations": [o.iterations.device[-5:] for o in flush.stage_optimizers],
                   "softmax": dict(softmax_placement(flush))}
  delayed = pipeline(os.path.join(output_dir, "2bw"), REPLICATED, "2bw", steps=3,
                     devices=REPLICA_DEVICES, steps_per_call=1)
  facts["2bw"] = {**replica_facts(delayed, delayed.replicas), "weights": weights(delayed.model),
                  "stashes": replica_facts(delayed, delayed.stashes)}
  with open(os.path.join(output_dir, "replicated.pkl"), "wb") as f:
    pickle.dump(facts, f)
