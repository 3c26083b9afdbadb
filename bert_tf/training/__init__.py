"""Training: one engine, tasks on top.

  engine.py          the outer loop (restore, K steps per call, log, save, evaluate,
                     termination, watchdog) and the ``Task`` protocol
  step.py            the one step core (micro-batches, accumulation, all-reduce, unscale, clip,
                     apply, finite check) and the step counters
  reporting.py       console / TensorBoard / JSON-lines metrics, throughput, eval_results.txt
  pretraining.py     masked LM + NSP task; ``Pretrainer`` (train, evaluate, export encoder)
  classification.py  sequence classification task; ``ClassifierTrainer`` (train, evaluate,
                     predict)
  metrics.py         classification metrics (accuracy, F1, MCC, Pearson / Spearman)
"""
from bert_tf.configs import FinetuneConfig, RunConfig, TrainConfig, save_resolved_config
from bert_tf.training.classification import ClassificationTask, ClassifierTrainer
from bert_tf.training.engine import Engine, Task, TrainingDivergedError
from bert_tf.training.pretraining import FEATURES, Pretrainer, PretrainingTask
from bert_tf.training.reporting import MetricsWriter
from bert_tf.training.step import accumulate, reduce_and_apply

__all__ = ["FinetuneConfig", "RunConfig", "TrainConfig", "save_resolved_config",
           "ClassificationTask", "ClassifierTrainer", "Engine", "Task", "TrainingDivergedError",
           "FEATURES", "Pretrainer", "PretrainingTask", "MetricsWriter", "accumulate",
           "reduce_and_apply"]
