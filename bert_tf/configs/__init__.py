"""Every configuration of bert_tf in one place: the model (google's ``bert_config.json``), the
run (engine, pretraining, fine-tuning), the optimizer, the distribution and the input data,
and how a run's resolved configuration is saved."""
from bert_tf.configs.model import ACTIVATIONS, PRESETS, BertConfig, preset
from bert_tf.configs.run import (COLLECTIVES, DISTRIBUTIONS, DTYPES, OPTIMIZERS, RECOMPUTE_MODES,
                                 ClassifierInputConfig, DistributionConfig, FinetuneConfig,
                                 OptimizerConfig, Phases, PretrainingInputConfig, RunConfig,
                                 RunSpec, TrainConfig)
from bert_tf.configs.saving import save_resolved_config, write_flags_file

__all__ = ["ACTIVATIONS", "PRESETS", "BertConfig", "preset", "COLLECTIVES", "DISTRIBUTIONS",
           "DTYPES", "OPTIMIZERS", "RECOMPUTE_MODES", "ClassifierInputConfig",
           "DistributionConfig", "FinetuneConfig", "OptimizerConfig", "Phases", "PretrainingInputConfig",
           "RunConfig", "RunSpec", "TrainConfig", "save_resolved_config", "write_flags_file"]
