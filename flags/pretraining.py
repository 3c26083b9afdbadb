"""run_pretraining.py's flags: google's names and meanings, plus this project's options. The
flags both scripts share are defined once, in ``flags.common``."""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import configs
from flags import common
from flags import pipeline as pipeline_flags


def define_pretraining_flags(flag_values=absl_flags.FLAGS) -> None:
  common.define_common_flags(flag_values)
  f = common._Definer(flag_values)  # pylint: disable=protected-access
  # The data (PretrainingInputConfig).
  f.DEFINE_string("input_file", None, "TFRecords from create_pretraining_data.py: glob(s), "
                  "comma-separated.")
  f.DEFINE_string("eval_input_file", None, "Held-out TFRecords for --do_eval (default: "
                  "--input_file, as google's script does).")
  f.DEFINE_bool("dynamic_masking", False, "Mask on the fly, new masks every epoch (records "
                "made with create_pretraining_data.py --max_predictions_per_seq=0). Needs "
                "--vocab_file.")
  f.DEFINE_string("vocab_file", None, "vocab.txt, for --dynamic_masking ([MASK] id, size).")
  f.DEFINE_bool("skip_corrupt_records", False, "Skip and count corrupt records instead of "
                "failing on the first one.")
  # The run (TrainConfig).
  f.DEFINE_integer("max_predictions_per_seq", 20, "Maximum masked LM predictions per sequence.")
  f.DEFINE_integer("num_train_steps", 100000, "Optimizer steps.")
  f.DEFINE_integer("num_warmup_steps", 10000, "Linear warm-up steps.")
  f.DEFINE_integer("max_eval_steps", 100, "Maximum eval batches.")
  f.DEFINE_bool("next_sentence_prediction", True, "Train (and evaluate) next sentence "
                "prediction. --nonext_sentence_prediction: masked LM alone (the first step of "
                "recipes/distillation); the records' next_sentence_labels, if any, are ignored, "
                "and the pooler and NSP head stay in checkpoints untrained.")
  f.DEFINE_integer("eval_every_steps", 0, "With --do_train: also evaluate on "
                   "--eval_input_file every this many steps (a multiple of "
                   "--save_checkpoints_steps; 0: only at the end with --do_eval).")
  # The optimizer (OptimizerConfig).
  f.DEFINE_enum("optimizer", "adamw", list(configs.OPTIMIZERS),
                "adamw: google's AdamWeightDecay; lamb: LAMB (You et al.).")
  f.DEFINE_float("beta_1", 0.9, "Adam/LAMB beta_1.")
  f.DEFINE_float("beta_2", 0.999, "Adam/LAMB beta_2.")
  f.DEFINE_float("epsilon", 1e-6, "Adam/LAMB epsilon.")
  f.DEFINE_float("poly_power", 1.0, "Power of the polynomial decay (NVIDIA's LAMB recipe: 0.5).")
  f.DEFINE_enum("bias_correction", "auto", ["auto", "true", "false"], "Adam bias correction; "
                "auto = off for adamw (google), on for lamb. gluon-nlp's LAMB recipe: false.")
  f.DEFINE_bool("elastic", False, "Horovod elastic training (horovodrun --min-np/--max-np/"
                "--host-discovery-script): lost ranks roll back to the last commit and go on.")
  f.DEFINE_integer("elastic_commit_steps", 10, "--elastic: commit the state every N steps.")
  pipeline_flags.define_pipeline_flags(flag_values)


def validate(v) -> None:
  """The one place contradictory or impossible combinations are refused."""
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
  if v.max_eval_steps < 1:
    problems.append(f"--max_eval_steps must be >= 1, got {v.max_eval_steps}")
  if v.gradient_accumulation_steps >= 1 and v.train_batch_size % v.gradient_accumulation_steps:
    problems.append(f"--train_batch_size ({v.train_batch_size}) must be divisible by "
                    f"--gradient_accumulation_steps ({v.gradient_accumulation_steps})")
  if (v.eval_every_steps and v.save_checkpoints_steps >= 1
      and v.eval_every_steps % v.save_checkpoints_steps):
    problems.append(f"--eval_every_steps ({v.eval_every_steps}) must be a multiple of "
                    f"--save_checkpoints_steps ({v.save_checkpoints_steps})")
  for name in ("beta_1", "beta_2"):
    common.check_float(problems, name, getattr(v, name), 0.0, 1.0)
  for name in ("epsilon", "poly_power"):
    common.check_float(problems, name, getattr(v, name), 0.0, strict=True)
  if v.dynamic_masking and not v.vocab_file:
    problems.append("--dynamic_masking needs --vocab_file")
  if v.elastic and common.resolved_distribution(v) != "horovod":
    problems.append("--elastic needs --use_horovod (launch with horovodrun --min-np ...)")
  if v.elastic and pipeline_flags.enabled(v):
    problems.append("--elastic does not combine with pipeline parallelism")
  if v.elastic and v.elastic_commit_steps < 1:
    problems.append(f"--elastic_commit_steps must be >= 1, got {v.elastic_commit_steps}")
  problems += _model_problems(v)
  problems += pipeline_flags.problems(v)
  common.raise_if(problems)


def _model_problems(v) -> list[str]:
  """What needs the model's config, checked before anything runs (a bad config file is
  reported here too, naming the file and key)."""
  if bool(v.bert_config_file) == bool(v.bert_preset) or (v.bert_preset and not v.vocab_size):
    return []  # already reported by validate_common
  try:
    bert = common.bert_config_from_flags(v)
  except Exception as e:  # pylint: disable=broad-except (missing file: TF's NotFoundError)
    return [f"--bert_config_file: {e}" if v.bert_config_file else f"--bert_preset: {e}"]
  problems = []
  if v.max_seq_length > bert.max_position_embeddings:
    problems.append(f"--max_seq_length={v.max_seq_length} exceeds the model's "
                    f"max_position_embeddings={bert.max_position_embeddings} "
                    f"({v.bert_config_file or v.bert_preset})")
  if v.dynamic_masking and v.vocab_file:
    # Masking draws random ids from the vocab: a bigger one than the model's gives ids past
    # its embedding table.
    from bert_tf import tokenization
    try:
      size = max(tokenization.load_vocab(v.vocab_file).values()) + 1
    except Exception as e:  # pylint: disable=broad-except (missing file: TF's NotFoundError)
      return problems + [f"--vocab_file: {e}"]
    if size > bert.vocab_size:
      problems.append(f"--vocab_file {v.vocab_file} has {size} tokens but the model's "
                      f"vocab_size is {bert.vocab_size}: wrong vocab or config?")
  return problems


def to_configs(v) -> configs.RunSpec:
  """Flags -> the run's frozen configuration, once, in main()."""
  train_config = configs.TrainConfig(
      **common.run_fields(v), max_predictions_per_seq=v.max_predictions_per_seq,
      num_train_steps=v.num_train_steps, max_eval_steps=v.max_eval_steps,
      eval_every_steps=v.eval_every_steps, next_sentence_prediction=v.next_sentence_prediction)
  bias_correction = {"auto": None, "true": True, "false": False}[v.bias_correction]
  optimizer_config = configs.OptimizerConfig(
      name=v.optimizer, learning_rate=v.learning_rate, num_train_steps=v.num_train_steps,
      num_warmup_steps=v.num_warmup_steps, decay_power=v.poly_power,
      weight_decay_rate=v.weight_decay_rate, beta_1=v.beta_1, beta_2=v.beta_2,
      epsilon=v.epsilon, bias_correction=bias_correction, clip_norm=v.clip_norm)
  data = configs.PretrainingInputConfig(
      input_file=v.input_file or "", eval_input_file=v.eval_input_file,
      dynamic_masking=v.dynamic_masking, vocab_file=v.vocab_file,
      skip_corrupt_records=v.skip_corrupt_records)
  return configs.RunSpec(
      bert_config=common.bert_config_from_flags(v), run=train_config, optimizer=optimizer_config,
      distribution=common.distribution_config(v), data=data,
      phases=configs.Phases(do_train=v.do_train, do_eval=v.do_eval),
      init_checkpoint=v.init_checkpoint)
