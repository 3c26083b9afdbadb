"""What a run is, as frozen dataclasses, layered so each setting is defined once.

  RunConfig            everything the training engine needs, whatever the task
    TrainConfig        + pretraining (steps, masked-LM predictions, eval cadence)
    FinetuneConfig     + fine-tuning (epochs, warm-up share, token batches, predict batch)
  OptimizerConfig      learning rate, schedule and the optimizer's own hyper-parameters
  DistributionConfig   where it runs (one device, Mirrored, MultiWorkerMirrored, Horovod)
  PretrainingInputConfig / ClassifierInputConfig   every data flag, so a run's output
                       directory says which data it read and how
  PipelineConfig       pipeline mode: the layout (conf.json) and schedule the run used

The command-line tools build these once from flags (``flags/``) and write them all to
``--output_dir/run_config.json``; library code receives them and never reads flags.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

from bert_tf.configs.model import BertConfig

DTYPES = ("fp32", "fp16", "bf16")
RECOMPUTE_MODES = ("none", "full", "selective")
OPTIMIZERS = ("adamw", "lamb")
DISTRIBUTIONS = ("one_device", "mirrored", "multi_worker_mirrored", "horovod")
COLLECTIVES = ("auto", "ring", "nccl")


def _check_choice(owner: str, name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{owner}: {name} is {value!r}; expected one of {list(choices)}")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Settings of the training engine shared by every task."""
  output_dir: str
  train_batch_size: int = 32           # global per optimizer step: examples (or tokens, see
                                       # FinetuneConfig.batch_size_in_tokens)
  eval_batch_size: int = 8
  max_seq_length: int = 128
  gradient_accumulation_steps: int = 1
  dtype: str = "fp32"                  # fp32 | fp16 | bf16
  recompute: str = "none"              # none | full | selective
  iterations_per_loop: int = 100       # steps per tf.function call and per log line
  save_checkpoints_steps: int = 1000
  keep_checkpoint_max: int = 5
  seed: int = 12345
  use_xla: bool = False                # compile each train step (not the loop) with XLA
  max_consecutive_skips: int = 20      # abort after this many non-finite steps in a row
  min_loss_scale: float = 1.0          # fp16: abort if the dynamic loss scale falls below
  initial_loss_scale: float = 2.0 ** 15  # fp16: dynamic loss scale to start from
  stall_timeout_secs: float = 1800.0   # no loop call finished for this long: dump stacks, exit

  def __post_init__(self):
    owner = type(self).__name__
    _check_choice(owner, "dtype", self.dtype, DTYPES)
    _check_choice(owner, "recompute", self.recompute, RECOMPUTE_MODES)
    if self.gradient_accumulation_steps < 1:
      raise ValueError(f"{owner}: gradient_accumulation_steps must be >= 1, got "
                       f"{self.gradient_accumulation_steps}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(RunConfig):
  """Pretraining (masked LM + next sentence, or masked LM alone)."""
  max_predictions_per_seq: int = 20
  num_train_steps: int = 100000
  max_eval_steps: int = 100
  eval_every_steps: int = 0            # also evaluate during training (at checkpoint steps)
  next_sentence_prediction: bool = True  # False: the loss is the masked-LM loss alone

  def micro_batch_size(self, num_replicas: int) -> int:
    return self.train_batch_size // (num_replicas * self.gradient_accumulation_steps)

  def check_divisible(self, num_replicas: int) -> None:
    parts = num_replicas * self.gradient_accumulation_steps
    if self.train_batch_size % parts:
      raise ValueError(
          f"--train_batch_size={self.train_batch_size} must be divisible by replicas "
          f"({num_replicas}) x --gradient_accumulation_steps "
          f"({self.gradient_accumulation_steps}) = {parts}")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(RunConfig):
  """Fine-tuning a sequence classifier (GLUE, XNLI)."""
  predict_batch_size: int = 8
  batch_size_in_tokens: bool = False   # the batch sizes count tokens, examples are bucketed
  num_train_epochs: float = 3.0
  warmup_proportion: float = 0.1
  classifier_dropout: Optional[float] = None  # None: the config's hidden_dropout_prob

  def batching(self, batch_size: int) -> dict:
    """plan_steps arguments for a batch size flag's value."""
    return ({"token_budget": batch_size} if self.batch_size_in_tokens
            else {"batch_size": batch_size})


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  name: str = "adamw"            # adamw (google) | lamb
  learning_rate: float = 1e-4
  num_train_steps: int = 100000
  num_warmup_steps: int = 10000
  decay_power: float = 1.0       # 1.0 linear (google); 0.5 in NVIDIA's LAMB recipe
  end_learning_rate: float = 0.0
  weight_decay_rate: float = 0.01
  beta_1: float = 0.9
  beta_2: float = 0.999
  epsilon: float = 1e-6
  bias_correction: Optional[bool] = None   # None: False for adamw (google), True for lamb
  clip_norm: float = 1.0         # global-norm clipping of the unscaled gradients; 0 = off

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"optimizer is {self.name!r}; expected one of {OPTIMIZERS}")


@dataclasses.dataclass(frozen=True)
class DistributionConfig:
  distribution: str = "one_device"    # one_device | mirrored | multi_worker_mirrored | horovod
  collective: str = "auto"            # multi_worker_mirrored: auto | ring | nccl
  horovod_fp16_compression: bool = False
  cpu_devices: int = 0                # split the CPU into this many logical devices
  deterministic: bool = False         # TensorFlow op determinism

  def __post_init__(self):
    _check_choice("DistributionConfig", "distribution", self.distribution, DISTRIBUTIONS)
    _check_choice("DistributionConfig", "collective", self.collective, COLLECTIVES)


@dataclasses.dataclass(frozen=True)
class PretrainingInputConfig:
  """run_pretraining.py's data: google-format TFRecords, and how to read them."""
  input_file: str = ""                # glob(s), comma-separated
  eval_input_file: Optional[str] = None  # default: input_file, as google's script does
  dynamic_masking: bool = False       # mask on the fly (records made without predictions)
  vocab_file: Optional[str] = None    # for dynamic_masking: [MASK] id and vocab size
  skip_corrupt_records: bool = False

  @property
  def eval_files(self) -> str:
    return self.eval_input_file or self.input_file


@dataclasses.dataclass(frozen=True)
class ClassifierInputConfig:
  """run_classifier.py's data: which task, where its files are, how to tokenise them."""
  task_name: str
  data_dir: str
  vocab_file: str
  do_lower_case: bool = True
  xnli_language: str = "en"
  xnli_eval_languages: str = "all"
  eval_split: str = "dev"
  skip_malformed_rows: bool = False
  cache_features: bool = True


@dataclasses.dataclass(frozen=True)
class Phases:
  """What a command does: train, evaluate, predict (google's --do_* flags)."""
  do_train: bool = False
  do_eval: bool = False
  do_predict: bool = False


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Pipeline mode (README 'Pipeline parallelism'): what the stages ran. m is also the run
  section's gradient_accumulation_steps."""
  schedule: str                        # gpipe | 1f1b | 2bw
  num_microbatches: int                # m, micro-batches per optimizer step
  steps_per_call: int = 1              # 2bw: steps unrolled per graph; gpipe, 1f1b: 1
  conf_file: Optional[str] = None      # --pipeline_config; None: split by --pipeline_stages
  layout: Optional[dict] = None        # the conf.json content used (module_to_stage_map,
                                       # stage_to_rank_map), the automatic split's too


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """A command's whole configuration, resolved once from flags in ``main()``; its sections
  are what ``run_config.json`` holds."""
  bert_config: BertConfig
  run: RunConfig                       # a TrainConfig or a FinetuneConfig
  optimizer: OptimizerConfig
  distribution: DistributionConfig
  data: Union[PretrainingInputConfig, ClassifierInputConfig]
  phases: Phases
  init_checkpoint: Optional[str] = None
  pipeline: Optional[PipelineConfig] = None   # pipeline mode only

  def sections(self) -> dict:
    sections = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
    # The run section keeps the name it has always had in run_config.json.
    sections["train" if isinstance(self.run, TrainConfig) else "finetune"] = sections.pop("run")
    return sections
