"""run_pretraining.py's flags: google's names and meanings, plus this project's options."""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import optimization, training
from flags import common


def define_pretraining_flags(flag_values=absl_flags.FLAGS) -> None:
  common.define_common_flags(flag_values)
  f = common._Definer(flag_values)
  f.DEFINE_string("input_file", None, "TFRecords from create_pretraining_data.py: glob(s), "
                  "comma-separated.")
  f.DEFINE_string("eval_input_file", None, "Held-out TFRecords for --do_eval (default: "
                  "--input_file, as google's script does).")
  f.DEFINE_integer("max_predictions_per_seq", 20, "Maximum masked LM predictions per sequence.")
  f.DEFINE_bool("do_train", False, "Whether to run training.")
  f.DEFINE_bool("do_eval", False, "Whether to run eval on --eval_input_file.")
  f.DEFINE_integer("train_batch_size", 32, "Global examples per optimizer step (all replicas "
                   "and accumulation micro-batches together), as in google's script.")
  f.DEFINE_integer("eval_batch_size", 8, "Global eval batch size.")
  f.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.")
  f.DEFINE_integer("num_train_steps", 100000, "Optimizer steps.")
  f.DEFINE_integer("num_warmup_steps", 10000, "Linear warm-up steps.")
  f.DEFINE_integer("save_checkpoints_steps", 1000, "Save a checkpoint every this many steps.")
  f.DEFINE_integer("iterations_per_loop", 100, "Steps per compiled loop call and per log line.")
  f.DEFINE_integer("max_eval_steps", 100, "Maximum eval batches.")
  f.DEFINE_integer("eval_every_steps", 0, "With --do_train: also evaluate on "
                   "--eval_input_file every this many steps (a multiple of "
                   "--save_checkpoints_steps; 0: only at the end with --do_eval).")
  f.DEFINE_integer("keep_checkpoint_max", 5, "Checkpoints kept in --output_dir.")
  f.DEFINE_enum("optimizer", "adamw", list(optimization.OPTIMIZERS),
                "adamw: google's AdamWeightDecay; lamb: LAMB (You et al.).")
  f.DEFINE_float("weight_decay_rate", 0.01, "Decoupled weight decay (not on LayerNorm/bias).")
  f.DEFINE_float("beta_1", 0.9, "Adam/LAMB beta_1.")
  f.DEFINE_float("beta_2", 0.999, "Adam/LAMB beta_2.")
  f.DEFINE_float("epsilon", 1e-6, "Adam/LAMB epsilon.")
  f.DEFINE_float("poly_power", 1.0, "Power of the polynomial decay (NVIDIA's LAMB recipe: 0.5).")
  f.DEFINE_enum("bias_correction", "auto", ["auto", "true", "false"], "Adam bias correction; "
                "auto = off for adamw (google), on for lamb. gluon-nlp's LAMB recipe: false.")
  f.DEFINE_float("clip_norm", 1.0, "Global-norm clipping of the unscaled gradients (0: off).")
  f.DEFINE_integer("max_consecutive_skips", 20, "Abort after this many consecutive steps with "
                   "a non-finite loss or gradient (fp16 overflow skips included).")
  f.DEFINE_float("min_loss_scale", 1.0, "fp16: abort when the dynamic loss scale falls below.")
  f.DEFINE_float("initial_loss_scale", 2.0 ** 15, "fp16: initial dynamic loss scale.")
  f.DEFINE_bool("dynamic_masking", False, "Mask on the fly, new masks every epoch (records "
                "made with create_pretraining_data.py --max_predictions_per_seq=0). Needs "
                "--vocab_file.")
  f.DEFINE_string("vocab_file", None, "vocab.txt, for --dynamic_masking ([MASK] id, size).")
  f.DEFINE_bool("skip_corrupt_records", False, "Skip and count corrupt records instead of "
                "failing on the first one.")


def validate(v) -> None:
  """The one place contradictory or impossible combinations are refused."""
  from absl import app
  problems = common.validate_common(v)
  if not (v.do_train or v.do_eval):
    problems.append("at least one of --do_train or --do_eval must be given")
  if (v.do_train or v.do_eval) and not v.input_file:
    problems.append("--input_file is required")
  if v.max_predictions_per_seq < 1 or v.max_predictions_per_seq > v.max_seq_length:
    problems.append(f"--max_predictions_per_seq ({v.max_predictions_per_seq}) must be in "
                    f"[1, --max_seq_length={v.max_seq_length}]")
  if v.num_train_steps < 1:
    problems.append(f"--num_train_steps must be >= 1, got {v.num_train_steps}")
  if not 0 <= v.num_warmup_steps <= v.num_train_steps:
    problems.append(f"--num_warmup_steps ({v.num_warmup_steps}) must be in [0, "
                    f"--num_train_steps={v.num_train_steps}]")
  for name in ("train_batch_size", "eval_batch_size", "save_checkpoints_steps",
               "iterations_per_loop", "max_eval_steps", "keep_checkpoint_max"):
    if getattr(v, name) < 1:
      problems.append(f"--{name} must be >= 1, got {getattr(v, name)}")
  if v.train_batch_size % v.gradient_accumulation_steps:
    problems.append(f"--train_batch_size ({v.train_batch_size}) must be divisible by "
                    f"--gradient_accumulation_steps ({v.gradient_accumulation_steps})")
  if v.eval_every_steps and v.eval_every_steps % v.save_checkpoints_steps:
    problems.append(f"--eval_every_steps ({v.eval_every_steps}) must be a multiple of "
                    f"--save_checkpoints_steps ({v.save_checkpoints_steps})")
  if v.dynamic_masking and not v.vocab_file:
    problems.append("--dynamic_masking needs --vocab_file")
  if common.resolved_dtype(v) != "fp16" and v["initial_loss_scale"].present:
    problems.append("--initial_loss_scale applies only to fp16 (loss scaling is off for "
                    f"{common.resolved_dtype(v)})")
  if problems:
    raise app.UsageError("invalid flags:\n  " + "\n  ".join(problems))


def to_configs(v):
  """Flags -> (BertConfig, TrainConfig, OptimizerConfig), once, in main()."""
  bert_config = common.bert_config_from_flags(v)
  train_config = training.TrainConfig(
      output_dir=v.output_dir, train_batch_size=v.train_batch_size,
      max_seq_length=v.max_seq_length, max_predictions_per_seq=v.max_predictions_per_seq,
      num_train_steps=v.num_train_steps,
      gradient_accumulation_steps=v.gradient_accumulation_steps,
      dtype=common.resolved_dtype(v), recompute=v.recompute,
      iterations_per_loop=v.iterations_per_loop, save_checkpoints_steps=v.save_checkpoints_steps,
      keep_checkpoint_max=v.keep_checkpoint_max, seed=v.seed, use_xla=v.use_xla,
      max_consecutive_skips=v.max_consecutive_skips, min_loss_scale=v.min_loss_scale,
      initial_loss_scale=v.initial_loss_scale, eval_batch_size=v.eval_batch_size,
      max_eval_steps=v.max_eval_steps, stall_timeout_secs=v.stall_timeout_secs,
      eval_every_steps=v.eval_every_steps)
  bias_correction = {"auto": None, "true": True, "false": False}[v.bias_correction]
  optimizer_config = optimization.OptimizerConfig(
      name=v.optimizer, learning_rate=v.learning_rate, num_train_steps=v.num_train_steps,
      num_warmup_steps=v.num_warmup_steps, decay_power=v.poly_power,
      weight_decay_rate=v.weight_decay_rate, beta_1=v.beta_1, beta_2=v.beta_2,
      epsilon=v.epsilon, bias_correction=bias_correction, clip_norm=v.clip_norm)
  return bert_config, train_config, optimizer_config
