"""Flags shared by run_pretraining.py and run_classifier.py, each defined once: model, precision,
recompute, distribution, batches, checkpoints, optimizer basics and the health rules.

Each concept has one general flag and, where the seeds had one, a short form (``--use_fp16`` =
``--dtype=fp16``, ``--multi_gpu`` = ``--distribution=mirrored``); the short form and the
general flag must agree or the run is refused (see ``validate_common``). Flags become config
dataclasses (``bert_tf.configs``) once, in ``main()``; ``flags_file_lines`` turns them back
into a ``--flagfile`` that reproduces the run.
"""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import configs

# Names this package defined, per FlagValues: what run.flags holds.
_DEFINED: dict[int, list[str]] = {}


class Definer:
  """absl's DEFINE_* bound to one FlagValues (tests define flags on a fresh FlagValues), and
  remembering the names defined there."""

  def __init__(self, flag_values):
    self._flag_values = flag_values
    self._names = _DEFINED.setdefault(id(flag_values), [])

  def __getattr__(self, name):
    define = getattr(absl_flags, name)

    def defined(flag_name, *args, **kwargs):
      self._names.append(flag_name)
      return define(flag_name, *args, flag_values=self._flag_values, **kwargs)

    return defined


_Definer = Definer   # the old name, still used by the other flags modules


def define_common_flags(flag_values=absl_flags.FLAGS) -> None:
  _DEFINED[id(flag_values)] = []  # the shared flags come first: a fresh list per FlagValues
  f = Definer(flag_values)
  # The model and where it starts from.
  f.DEFINE_string("bert_config_file", None, "google bert_config.json of the model.")
  f.DEFINE_string("bert_preset", None, "Instead of --bert_config_file: tiny, mini, small, medium, "
                  "base, large or L-{2..12}_H-{128,256,512,768}_A-*. Needs --vocab_size.")
  f.DEFINE_integer("vocab_size", None, "Vocabulary size for --bert_preset.")
  f.DEFINE_string("init_checkpoint", None, "Initial weights: a google TF1 checkpoint "
                  "(bert_model.ckpt), one of our pretraining or pipeline checkpoints, an encoder "
                  "export, or a Hugging Face BERT folder / model.safetensors.")
  f.DEFINE_string("output_dir", None, "Where checkpoints, logs and results go.")
  f.DEFINE_bool("do_train", False, "Whether to run training.")
  f.DEFINE_bool("do_eval", False, "Whether to evaluate.")
  # Batches and sequence length.
  f.DEFINE_integer("max_seq_length", 128, "Maximum total input sequence length in tokens.")
  f.DEFINE_integer("train_batch_size", 32, "Global examples per optimizer step (all replicas "
                   "and accumulation micro-batches together), as in google's scripts; tokens "
                   "with run_classifier.py --batch_size_in_tokens.")
  f.DEFINE_integer("eval_batch_size", 8, "Global eval batch: examples, or tokens.")
  f.DEFINE_integer("gradient_accumulation_steps", 1, "Micro-batches per optimizer step; the "
                   "global batch is split into replicas x this many micro-batches.")
  # Precision and memory.
  f.DEFINE_enum("dtype", None, list(configs.DTYPES), "Compute precision (default fp32). "
                "fp16 = mixed_float16 with dynamic loss scaling; bf16 = mixed_bfloat16.")
  f.DEFINE_bool("use_fp16", False, "Short form of --dtype=fp16.")
  f.DEFINE_enum("recompute", "none", list(configs.RECOMPUTE_MODES), "Activation recompute: none; "
                "full (every transformer block); selective (the attention core and the FFN "
                "activation: cheap to recompute, large to keep).")
  f.DEFINE_bool("use_xla", False, "Compile each train step with XLA (measure first: it was "
                "slower on CPU).")
  # Where it runs.
  f.DEFINE_enum("distribution", None, list(configs.DISTRIBUTIONS),
                "How to spread the work (default one_device).")
  f.DEFINE_bool("multi_gpu", False, "Short form of --distribution=mirrored: all local GPUs.")
  f.DEFINE_bool("use_horovod", False, "Short form of --distribution=horovod (launch with "
                "horovodrun -np N ...; one device per process).")
  f.DEFINE_enum("collective", "auto", list(configs.COLLECTIVES), "multi_worker_mirrored "
                "all-reduce implementation: ring (gRPC, CPU), nccl (GPU) or auto.")
  f.DEFINE_bool("horovod_fp16_compression", False, "horovod: all-reduce gradients in float16.")
  f.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices, so that "
                   "--multi_gpu runs on a machine without GPUs (for trying things out).")
  f.DEFINE_integer("seed", 12345, "Seed for initialisation, data order and dropout.")
  f.DEFINE_bool("deterministic", False, "Enable TensorFlow op determinism (bitwise repeatable "
                "runs and resumes; slower on GPU).")
  # Optimizer basics.
  f.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
  f.DEFINE_float("weight_decay_rate", 0.01, "Decoupled weight decay (not on LayerNorm/bias).")
  f.DEFINE_float("clip_norm", 1.0, "Global-norm clipping of the unscaled gradients (0: off).")
  # Checkpoints, logging and the health rules.
  f.DEFINE_integer("save_checkpoints_steps", 1000, "Save a checkpoint every this many steps.")
  f.DEFINE_integer("iterations_per_loop", 100, "Steps per compiled loop call and per log line.")
  f.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept in --output_dir.")
  f.DEFINE_integer("max_consecutive_skips", 20, "Abort after this many consecutive steps with "
                   "a non-finite loss or gradient (fp16 overflow skips included).")
  f.DEFINE_float("min_loss_scale", 1.0, "fp16: abort when the dynamic loss scale falls below.")
  f.DEFINE_float("initial_loss_scale", 2.0 ** 15, "fp16: initial dynamic loss scale.")
  f.DEFINE_float("stall_timeout_secs", 1800.0, "If no training loop call finishes for this "
                 "long (a dead or frozen peer), dump all stacks and exit non-zero (0: off).")


def define_finetuning_flags(flag_values, unit: str = "examples",
                            token_batches: bool = True) -> None:
  """The flags of every fine-tuning run (``FinetuneConfig``) beyond the shared ones."""
  f = Definer(flag_values)
  f.DEFINE_integer("predict_batch_size", 8, f"Predict batch: {unit}"
                   + (", or tokens." if token_batches else "."))
  if token_batches:
    f.DEFINE_bool("batch_size_in_tokens", False, f"Count the batch size flags in tokens (e.g. "
                  f"--train_batch_size=72000): {unit} are bucketed by length and padded per "
                  "batch, not to --max_seq_length.")
  f.DEFINE_float("num_train_epochs", 3.0, f"Epochs over the training {unit} (fractions "
                 "allowed).")
  f.DEFINE_float("warmup_proportion", 0.1, "Fraction of the steps with linear warm-up.")


def finetune_fields(flag_values) -> dict:
  """``run_fields`` plus the ``define_finetuning_flags`` fields of a ``FinetuneConfig``."""
  v = flag_values
  fields = dict(run_fields(v), predict_batch_size=v.predict_batch_size,
                num_train_epochs=v.num_train_epochs, warmup_proportion=v.warmup_proportion)
  if "batch_size_in_tokens" in v:
    fields["batch_size_in_tokens"] = v.batch_size_in_tokens
  return fields


def finetune_optimizer(flag_values) -> configs.OptimizerConfig:
  """google's fine-tuning optimizer: AdamW without bias correction; the step counts are
  filled in from the data's plan."""
  v = flag_values
  return configs.OptimizerConfig(
      name="adamw", learning_rate=v.learning_rate, num_train_steps=1, num_warmup_steps=0,
      weight_decay_rate=v.weight_decay_rate, clip_norm=v.clip_norm)


def validate_task_folder(v, task_names, other_phase: bool = False) -> list[str]:
  """Problems of a task read from a folder (run_classifier.py, run_tagging.py).
  ``other_phase``: the run does something else than train / eval / predict (e.g. write a
  teacher's logits), so none of --do_* is needed."""
  problems = []
  if not v.task_name:
    problems.append(f"--task_name (or --task) is required: one of {list(task_names)}")
  if not (v.do_train or v.do_eval or v.do_predict or other_phase):
    problems.append("at least one of --do_train, --do_eval or --do_predict must be given")
  for name in ("data_dir", "vocab_file"):
    if not getattr(v, name):
      problems.append(f"--{name} is required")
  return problems


def validate_finetuning(v) -> list[str]:
  """Problems with the fine-tuning flags (``define_finetuning_flags``)."""
  problems = []
  if v.predict_batch_size < 1:
    problems.append(f"--predict_batch_size must be >= 1, got {v.predict_batch_size}")
  check_float(problems, "num_train_epochs", v.num_train_epochs, 0.0, strict=True)
  if not 0 <= v.warmup_proportion <= 1:
    problems.append(f"--warmup_proportion must be in [0, 1], got {v.warmup_proportion}")
  if "batch_size_in_tokens" in v and v.batch_size_in_tokens:
    # A micro-batch gets 1/(replicas x accumulation) of the train budget (replicas: main()).
    # Only the budgets of the phases this run does (--do_train / --do_eval / --do_predict).
    shares = {"train_batch_size": (v.do_train, max(v.gradient_accumulation_steps, 1)),
              "eval_batch_size": (v.do_eval, 1), "predict_batch_size": (v.do_predict, 1)}
    for name, (used, parts) in shares.items():
      if used and getattr(v, name) // parts < v.max_seq_length:
        problems.append(check_token_budget(name, getattr(v, name), parts, v.max_seq_length))
  elif v.gradient_accumulation_steps >= 1 and v.train_batch_size % v.gradient_accumulation_steps:
    problems.append(f"--train_batch_size ({v.train_batch_size}) must be divisible by "
                    f"--gradient_accumulation_steps ({v.gradient_accumulation_steps})")
  return problems


def check_token_budget(name: str, tokens: int, parts: int, max_seq_length: int) -> str:
  return (f"--batch_size_in_tokens: --{name}={tokens} tokens split into {parts} micro-batch(es) "
          f"leaves {tokens // parts} per micro-batch, less than --max_seq_length="
          f"{max_seq_length}: a longest example would not fit")


def check_fits(spec: configs.RunSpec, vocab_size: int, num_replicas: int) -> None:
  """What only the model, the vocab and the runtime can tell (after the flags validate)."""
  from absl import app
  run, bert = spec.run, spec.bert_config
  parts = num_replicas * run.gradient_accumulation_steps
  if getattr(run, "batch_size_in_tokens", False) and spec.phases.do_train and \
      run.train_batch_size // parts < run.max_seq_length:
    raise app.UsageError(check_token_budget("train_batch_size", run.train_batch_size, parts,
                                            run.max_seq_length))
  if run.max_seq_length > bert.max_position_embeddings:
    raise app.UsageError(f"--max_seq_length={run.max_seq_length} exceeds the model's "
                         f"max_position_embeddings={bert.max_position_embeddings}")
  if vocab_size > bert.vocab_size:
    raise app.UsageError(f"--vocab_file has {vocab_size} tokens but the model's "
                         f"vocab_size is {bert.vocab_size}: wrong vocab or config?")


def resolved_dtype(flag_values) -> str:
  return flag_values.dtype or ("fp16" if flag_values.use_fp16 else "fp32")


def resolved_distribution(flag_values) -> str:
  v = flag_values
  return v.distribution or ("horovod" if v.use_horovod else
                            "mirrored" if v.multi_gpu else "one_device")


def changed(flag_values, name: str) -> bool:
  """The flag differs from its default. (Not ``.present``: a run.flags file names every flag,
  defaults included, and must validate as the original command did.)"""
  return flag_values[name].value != flag_values[name].default


def _check_at_least_one(v, names, problems):
  for name in names:
    if getattr(v, name) < 1:
      problems.append(f"--{name} must be >= 1, got {getattr(v, name)}")


def check_float(problems: list, name: str, value, low: float, high: float | None = None, *,
                strict: bool = False) -> None:
  """Refuses the float flag ``--name`` unless it is finite, ``>= low`` (``> low`` if
  ``strict``) and, if ``high`` is given, ``< high``: a message naming the flag, the value and
  the range. NaN passes every comparison, so finiteness comes first. None (unset) passes."""
  import math
  if value is None:
    return
  if (math.isfinite(value) and (value > low if strict else value >= low)
      and (high is None or value < high)):
    return
  expected = (f"in {'(' if strict else '['}{low:g}, {high:g})" if high is not None
              else f"{'>' if strict else '>='} {low:g}")
  problems.append(f"--{name} must be a finite number {expected}, got {value}")


def _check_numbers(v, problems):
  """Impossible optimizer and loss-scale numbers."""
  for name, low, strict in (("learning_rate", 0.0, True), ("weight_decay_rate", 0.0, False),
                            ("clip_norm", 0.0, False), ("stall_timeout_secs", 0.0, False),
                            ("initial_loss_scale", 0.0, True), ("min_loss_scale", 0.0, False)):
    check_float(problems, name, getattr(v, name), low, strict=strict)


def validate_common(flag_values) -> list[str]:
  """Problems with the shared flags, as messages naming the flags (empty if none)."""
  problems = []
  v = flag_values
  if v.use_fp16 and v.dtype not in (None, "fp16"):
    problems.append(f"--use_fp16 contradicts --dtype={v.dtype} (use one of them)")
  if v.multi_gpu and v.distribution not in (None, "mirrored"):
    problems.append(f"--multi_gpu contradicts --distribution={v.distribution} (--multi_gpu "
                    "means --distribution=mirrored)")
  if v.use_horovod and v.distribution not in (None, "horovod"):
    problems.append(f"--use_horovod contradicts --distribution={v.distribution}")
  if v.use_horovod and v.multi_gpu:
    problems.append("--use_horovod and --multi_gpu are two different backends; give one "
                    "(under horovodrun each process drives one GPU)")
  dist = resolved_distribution(v)
  if changed(v, "collective") and dist != "multi_worker_mirrored":
    problems.append(f"--collective applies to --distribution=multi_worker_mirrored, not {dist}")
  if v.horovod_fp16_compression and dist != "horovod":
    problems.append(f"--horovod_fp16_compression applies to --distribution=horovod, not {dist}")
  if bool(v.bert_config_file) == bool(v.bert_preset):
    problems.append("give exactly one of --bert_config_file and --bert_preset")
  if v.bert_preset and not v.vocab_size:
    problems.append("--bert_preset needs --vocab_size (the size of your vocab.txt)")
  if not v.output_dir:
    problems.append("--output_dir is required")
  _check_at_least_one(v, ("gradient_accumulation_steps", "train_batch_size", "eval_batch_size",
                          "save_checkpoints_steps", "iterations_per_loop",
                          "keep_checkpoint_max"), problems)
  if v.max_seq_length < 2:
    problems.append(f"--max_seq_length must be >= 2, got {v.max_seq_length}")
  _check_numbers(v, problems)
  if v.cpu_devices < 0:
    problems.append(f"--cpu_devices must be >= 0, got {v.cpu_devices}")
  dtype = resolved_dtype(v)
  for name in ("initial_loss_scale", "min_loss_scale"):
    if dtype != "fp16" and changed(v, name):
      problems.append(f"--{name} applies only to fp16 (loss scaling is off for {dtype})")
  return problems


def raise_if(problems: list[str]) -> None:
  if problems:
    from absl import app
    raise app.UsageError("invalid flags:\n  " + "\n  ".join(problems))


def bert_config_from_flags(flag_values) -> configs.BertConfig:
  if flag_values.bert_config_file:
    return configs.BertConfig.from_json_file(flag_values.bert_config_file)
  return configs.preset(flag_values.bert_preset, vocab_size=flag_values.vocab_size)


def run_fields(flag_values) -> dict:
  """The ``RunConfig`` fields, from the shared flags (task configs add their own)."""
  v = flag_values
  return dict(
      output_dir=v.output_dir, train_batch_size=v.train_batch_size,
      eval_batch_size=v.eval_batch_size, max_seq_length=v.max_seq_length,
      gradient_accumulation_steps=v.gradient_accumulation_steps, dtype=resolved_dtype(v),
      recompute=v.recompute, iterations_per_loop=v.iterations_per_loop,
      save_checkpoints_steps=v.save_checkpoints_steps, keep_checkpoint_max=v.keep_checkpoint_max,
      seed=v.seed, use_xla=v.use_xla, max_consecutive_skips=v.max_consecutive_skips,
      min_loss_scale=v.min_loss_scale, initial_loss_scale=v.initial_loss_scale,
      stall_timeout_secs=v.stall_timeout_secs)


def distribution_config(flag_values) -> configs.DistributionConfig:
  v = flag_values
  return configs.DistributionConfig(
      distribution=resolved_distribution(v), collective=v.collective,
      horovod_fp16_compression=v.horovod_fp16_compression, cpu_devices=v.cpu_devices,
      deterministic=v.deterministic)


def flags_file_lines(flag_values) -> list[str]:
  """Every flag this package defined, with its value, as ``--flagfile`` lines: passing the
  file back (``--flagfile=<output_dir>/run.flags``) repeats the run exactly."""
  lines = []
  for name in _DEFINED.get(id(flag_values), []):
    flag = flag_values[name]
    if flag.value is not None:
      lines.append(flag.serialize())
  return lines


def record_run(flag_values, spec: configs.RunSpec, runtime) -> list[str]:
  """On the chief: writes ``run_config.json`` (every section, readable) and ``run.flags``
  (every flag, for ``--flagfile``) into the output directory and logs where. Returns the
  paths (none on the other workers).

  First, on every worker: an output directory holding checkpoints of a model of other shapes
  is refused (both configurations shown) before anything is written there."""
  from absl import app
  from bert_tf import checkpoint_checks
  output_dir = spec.run.output_dir
  try:
    checkpoint_checks.refuse_other_model(output_dir, spec.bert_config)
  except checkpoint_checks.CheckpointMismatchError as e:
    raise app.UsageError(str(e)) from None
  if not runtime.is_chief:
    return []
  from absl import logging
  paths = [configs.save_resolved_config(output_dir, runtime=runtime.description,
                                        **spec.sections()),
           configs.write_flags_file(output_dir, flags_file_lines(flag_values))]
  logging.info("configuration written to %s", ", ".join(paths))
  return paths
