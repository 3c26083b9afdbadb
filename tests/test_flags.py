"""Pretraining flags: google's names, short forms, the validator, the shipped recipes."""
import glob
import os

from absl import app
from absl import flags as absl_flags
import pytest

from bert_tf.testing.launch import ROOT
from flags import pretraining as pretraining_flags

pytestmark = pytest.mark.unit
REQUIRED = ["--bert_preset=tiny", "--vocab_size=100", "--input_file=x.tfrecord",
            "--output_dir=/tmp/out", "--do_train"]


def _parse(*args):
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  values(["run_pretraining.py", *args])
  return values


def test_short_forms_resolve_to_general_flags():
  v = _parse(*REQUIRED, "--use_fp16", "--multi_gpu")
  pretraining_flags.validate(v)
  spec = pretraining_flags.to_configs(v)
  assert spec.run.dtype == "fp16" and spec.distribution.distribution == "mirrored"
  from flags import common
  assert common.resolved_distribution(v) == "mirrored"
  v = _parse(*REQUIRED)
  assert pretraining_flags.to_configs(v).run.dtype == "fp32"


def test_validator_lists_every_contradiction():
  v = _parse("--bert_preset=tiny", "--vocab_size=100", "--output_dir=/tmp/o", "--do_train",
             "--use_fp16", "--dtype=bf16", "--multi_gpu", "--distribution=one_device",
             "--num_train_steps=10", "--num_warmup_steps=20", "--train_batch_size=10",
             "--gradient_accumulation_steps=4", "--max_predictions_per_seq=200")
  with pytest.raises(app.UsageError) as e:
    pretraining_flags.validate(v)
  message = str(e.value)
  for expected in ("--use_fp16 contradicts --dtype=bf16", "--multi_gpu contradicts",
                   "--input_file is required", "--num_warmup_steps (20)",
                   "--train_batch_size (10) must be divisible",
                   "--max_predictions_per_seq (200)"):
    assert expected in message, (expected, message)
  with pytest.raises(app.UsageError, match="--initial_loss_scale applies only to fp16"):
    pretraining_flags.validate(_parse(*REQUIRED, "--initial_loss_scale=128"))


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(ROOT, "recipes", "*.flags"))),
                         ids=os.path.basename)
def test_recipes_parse_validate_and_fit_eight_replicas(recipe):
  v = _parse(f"--flagfile={recipe}", "--bert_preset=large", "--vocab_size=30522",
             "--input_file=data/*.tfrecord", "--output_dir=/tmp/out")
  pretraining_flags.validate(v)
  spec = pretraining_flags.to_configs(v)
  train, opt = spec.run, spec.optimizer
  train.check_divisible(8)
  assert opt.name == "lamb" and opt.decay_power == 0.5
  phase2 = "phase2" in recipe
  assert train.max_seq_length == (512 if phase2 else 128)
  assert train.max_predictions_per_seq == (80 if phase2 else 20)


def test_flags_file_lists_every_flag_and_reads_back_to_the_same_configuration(tmp_path):
  """run.flags names every flag (defaults included) and, passed back with --flagfile, gives
  the same resolved configuration and passes the validator (a default given explicitly is
  not a contradiction: --collective=auto under Mirrored, --initial_loss_scale under fp32)."""
  from flags import common
  vocab = tmp_path / "vocab.txt"  # read by the validator (its size against the model's)
  vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
  v = _parse(*REQUIRED, "--multi_gpu", "--gradient_accumulation_steps=2", "--dynamic_masking",
             f"--vocab_file={vocab}", "--eval_input_file=held_out.tfrecord")
  pretraining_flags.validate(v)
  lines = common.flags_file_lines(v)
  for expected in ("--multi_gpu", "--gradient_accumulation_steps=2", "--dynamic_masking",
                   f"--vocab_file={vocab}", "--eval_input_file=held_out.tfrecord",
                   "--collective=auto", "--initial_loss_scale=32768.0", "--nouse_fp16"):
    assert expected in lines, (expected, lines)
  path = tmp_path / "run.flags"
  path.write_text("".join(line + "\n" for line in lines))
  again = _parse(f"--flagfile={path}")
  pretraining_flags.validate(again)
  assert pretraining_flags.to_configs(again) == pretraining_flags.to_configs(v)
  # A later flag overrides the file's, as absl reads them in order.
  moved = _parse(f"--flagfile={path}", "--output_dir=/tmp/elsewhere")
  assert pretraining_flags.to_configs(moved).run.output_dir == "/tmp/elsewhere"


@pytest.mark.parametrize("flag, value, expected", [
    ("learning_rate", "-1e-4", "--learning_rate must be a finite number > 0, got -0.0001"),
    ("learning_rate", "0", "--learning_rate must be a finite number > 0, got 0.0"),
    ("learning_rate", "nan", "--learning_rate must be a finite number > 0, got nan"),
    ("weight_decay_rate", "-0.1", "--weight_decay_rate must be a finite number >= 0"),
    ("clip_norm", "inf", "--clip_norm must be a finite number >= 0, got inf"),
    ("train_batch_size", "0", "--train_batch_size must be >= 1, got 0"),
    ("eval_batch_size", "-8", "--eval_batch_size must be >= 1, got -8"),
    ("num_train_steps", "0", "--num_train_steps must be >= 1, got 0"),
    ("num_warmup_steps", "200000", "--num_warmup_steps (200000) must be in [0, "),
    ("max_eval_steps", "0", "--max_eval_steps must be >= 1, got 0"),
    ("max_seq_length", "1024", "--max_seq_length=1024 exceeds the model's "
                               "max_position_embeddings=512 (tiny)"),
])
def test_impossible_numbers_are_refused_naming_the_flag(flag, value, expected):
  with pytest.raises(app.UsageError) as e:
    pretraining_flags.validate(_parse(*REQUIRED, f"--{flag}={value}"))
  assert expected in str(e.value), str(e.value)


_SCRIPT_ARGS = {
    "pretraining": REQUIRED,
    "classifier": ["--bert_preset=tiny", "--vocab_size=100", "--task_name=mrpc",
                   "--data_dir=/tmp/d", "--vocab_file=/tmp/v.txt", "--output_dir=/tmp/o",
                   "--do_train"],
    "tagging": ["--bert_preset=tiny", "--vocab_size=100", "--task_name=conll2003",
                "--data_dir=/tmp/d", "--vocab_file=/tmp/v.txt", "--output_dir=/tmp/o",
                "--do_train"],
    "squad": ["--bert_preset=tiny", "--vocab_size=100", "--vocab_file=/tmp/v.txt",
              "--output_dir=/tmp/o", "--do_train", "--train_file=/tmp/train.json",
              "--version_2_with_negative"],
}


def _validate_script(script, *extra):
  import importlib
  module = importlib.import_module(f"flags.{script}")
  values = absl_flags.FlagValues()
  getattr(module, f"define_{script}_flags")(values)
  values([f"run_{script}.py", *_SCRIPT_ARGS[script], *extra])
  module.validate(values)


@pytest.mark.parametrize("script, flag, value, expected", [
    ("classifier", "classifier_dropout", "1.0", "must be a finite number in [0, 1), got 1.0"),
    ("classifier", "classifier_dropout", "-0.1", "must be a finite number in [0, 1), got -0.1"),
    ("classifier", "classifier_dropout", "nan", "must be a finite number in [0, 1), got nan"),
    ("tagging", "tagger_dropout", "1.5", "must be a finite number in [0, 1), got 1.5"),
    ("classifier", "num_train_epochs", "nan", "must be a finite number > 0, got nan"),
    ("tagging", "num_train_epochs", "inf", "must be a finite number > 0, got inf"),
    ("squad", "num_train_epochs", "0", "must be a finite number > 0, got 0.0"),
    ("squad", "null_score_diff_threshold", "nan", "must be a finite number, got nan"),
    ("pretraining", "beta_1", "1.0", "must be a finite number in [0, 1), got 1.0"),
    ("pretraining", "beta_2", "-0.5", "must be a finite number in [0, 1), got -0.5"),
    ("pretraining", "beta_2", "nan", "must be a finite number in [0, 1), got nan"),
    ("pretraining", "epsilon", "0", "must be a finite number > 0, got 0.0"),
    ("pretraining", "epsilon", "inf", "must be a finite number > 0, got inf"),
    ("pretraining", "poly_power", "-1", "must be a finite number > 0, got -1.0"),
    ("pretraining", "initial_loss_scale", "0", "must be a finite number > 0, got 0.0"),
    ("classifier", "initial_loss_scale", "inf", "must be a finite number > 0, got inf"),
    ("pretraining", "min_loss_scale", "nan", "must be a finite number >= 0, got nan"),
])
def test_impossible_floats_of_every_script_are_refused_naming_flag_value_and_range(
    script, flag, value, expected):
  extra = ["--use_fp16"] if "loss_scale" in flag else []
  _validate_script(script, *extra)  # valid without the bad value
  with pytest.raises(app.UsageError) as e:
    _validate_script(script, *extra, f"--{flag}={value}")
  assert f"--{flag} {expected}" in str(e.value), str(e.value)


@pytest.mark.parametrize("script", ["classifier", "tagging", "squad"])
def test_elastic_is_refused_by_the_fine_tuning_scripts(script):
  """--elastic is pretraining-only (its data position is the pretraining stream's step): the
  fine-tuning scripts do not know the flag, so absl refuses it instead of ignoring it."""
  with pytest.raises(absl_flags.UnrecognizedFlagError, match="'elastic'"):
    _validate_script(script, "--elastic")


def test_model_config_problems_are_refused_before_anything_runs(tmp_path):
  """run_pretraining.py validates the model's config file with the flags: a dropout outside
  [0, 1) or a missing file names the file and the key, before any output is written."""
  import dataclasses
  import json
  from bert_tf.testing.tiny import tiny_config
  path = tmp_path / "bert_config.json"
  config = dataclasses.asdict(tiny_config(hidden_dropout_prob=0.1))
  config["hidden_dropout_prob"] = 1.0
  path.write_text(json.dumps(config))
  args = [a for a in REQUIRED if not a.startswith(("--bert_preset", "--vocab_size"))]
  with pytest.raises(app.UsageError) as e:
    pretraining_flags.validate(_parse(*args, f"--bert_config_file={path}"))
  assert "bert_config.json" in str(e.value) and "'hidden_dropout_prob' must be in [0, 1), " \
      "got 1.0" in str(e.value), str(e.value)
  with pytest.raises(app.UsageError, match="--bert_config_file: .*missing.json"):
    pretraining_flags.validate(_parse(*args, f"--bert_config_file={tmp_path / 'missing.json'}"))
  assert not (tmp_path / "out").exists()


def test_classifier_vocab_larger_than_the_model_is_refused():
  """The classifier's ids come from --vocab_file's tokenizer: a vocab bigger than the model's
  vocab_size would give ids past the embedding table, so it is refused up front."""
  from flags import classifier as classifier_flags
  from flags import common
  values = absl_flags.FlagValues()
  classifier_flags.define_classifier_flags(values)
  values(["run_classifier.py", "--bert_preset=tiny", "--vocab_size=100", "--task_name=mrpc",
          "--data_dir=/tmp/d", "--vocab_file=/tmp/v.txt", "--output_dir=/tmp/o", "--do_train"])
  classifier_flags.validate(values)
  spec = classifier_flags.to_configs(values)
  common.check_fits(spec, 100, 1)
  with pytest.raises(app.UsageError, match="--vocab_file has 150 tokens but the model's "
                     "vocab_size is 100"):
    common.check_fits(spec, 150, 1)


def test_dynamic_masking_vocab_larger_than_the_model_is_refused(tmp_path):
  vocab = tmp_path / "vocab.txt"
  vocab.write_text("".join(f"t{i}\n" for i in range(150)))
  args = [a for a in REQUIRED if not a.startswith("--vocab_size")]
  pretraining_flags.validate(_parse(*args, "--vocab_size=150", "--dynamic_masking",
                                    f"--vocab_file={vocab}"))
  with pytest.raises(app.UsageError, match=r"--vocab_file \S*vocab.txt has 150 tokens but "
                     "the model's vocab_size is 100"):
    pretraining_flags.validate(_parse(*REQUIRED, "--dynamic_masking", f"--vocab_file={vocab}"))
  with pytest.raises(app.UsageError, match="--vocab_file: .*missing.txt"):
    pretraining_flags.validate(_parse(*REQUIRED, "--dynamic_masking",
                                      f"--vocab_file={tmp_path / 'missing.txt'}"))
