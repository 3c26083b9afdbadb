"""run_squad.py's flags: google's names, meanings and defaults (``--max_seq_length=384``), plus
this project's options. The flags every script shares are defined once, in ``flags.common``."""
from __future__ import annotations

import math

from absl import flags as absl_flags

from bert_tf import configs
from bert_tf.configs.squad import SquadConfig, SquadInputConfig
from flags import common


def define_squad_flags(flag_values=absl_flags.FLAGS) -> None:
  common.define_common_flags(flag_values)
  flag_values.set_default("max_seq_length", 384)  # google's run_squad default
  f = common._Definer(flag_values)  # pylint: disable=protected-access
  # The data (SquadInputConfig).
  f.DEFINE_string("vocab_file", None, "vocab.txt the model was trained with.")
  f.DEFINE_string("train_file", None, "SQuAD JSON for training, e.g. train-v1.1.json.")
  f.DEFINE_string("predict_file", None, "SQuAD JSON for predictions, e.g. dev-v1.1.json; "
                  "scored into eval_results.txt when it has answers.")
  f.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
  f.DEFINE_bool("version_2_with_negative", False, "SQuAD 2.0: some questions have no answer.")
  f.DEFINE_integer("doc_stride", 128, "When splitting a long context into spans, how far "
                   "(in word pieces) each span starts after the previous one.")
  f.DEFINE_integer("max_query_length", 64, "Questions longer than this (word pieces) are "
                   "truncated.")
  f.DEFINE_bool("skip_empty_contexts", False, "Skip and count questions whose context is "
                "empty (or has no word pieces: only control or zero-width characters) instead "
                "of failing at the first one.")
  # The run (SquadConfig).
  f.DEFINE_bool("do_predict", False, "Predict --predict_file -> predictions.json, "
                "nbest_predictions.json (and null_odds.json for 2.0).")
  common.define_finetuning_flags(flag_values, unit="features", token_batches=False)
  f.DEFINE_integer("n_best_size", 20, "n-best predictions per question in "
                   "nbest_predictions.json.")
  f.DEFINE_integer("max_answer_length", 30, "Longest answer, in word pieces.")
  f.DEFINE_float("null_score_diff_threshold", 0.0, "SQuAD 2.0: predict no answer if the null "
                 "score minus the best span's score exceeds this (tune it with "
                 "best_f1_thresh from eval_results.txt).")


def validate(v) -> None:
  """The one place contradictory or impossible combinations are refused."""
  problems = common.validate_common(v)
  if not (v.do_train or v.do_predict):
    problems.append("at least one of --do_train or --do_predict must be given")
  if v.do_eval:
    problems.append("--do_eval does not apply to SQuAD: --do_predict scores --predict_file "
                    "into eval_results.txt when it has answers")
  if not v.vocab_file:
    problems.append("--vocab_file is required")
  if v.do_train and not v.train_file:
    problems.append("--do_train needs --train_file")
  if v.do_predict and not v.predict_file:
    problems.append("--do_predict needs --predict_file")
  if v.max_seq_length <= v.max_query_length + 3:
    problems.append(f"--max_seq_length ({v.max_seq_length}) must be greater than "
                    f"--max_query_length ({v.max_query_length}) + 3")
  for name in ("doc_stride", "max_query_length", "n_best_size", "max_answer_length"):
    if getattr(v, name) < 1:
      problems.append(f"--{name} must be >= 1, got {getattr(v, name)}")
  problems += common.validate_finetuning(v)
  if not math.isfinite(v.null_score_diff_threshold):  # any finite number, negative too
    problems.append(f"--null_score_diff_threshold must be a finite number, got "
                    f"{v.null_score_diff_threshold}")
  if not v.version_2_with_negative and common.changed(v, "null_score_diff_threshold"):
    problems.append("--null_score_diff_threshold applies only to --version_2_with_negative")
  common.raise_if(problems)


def to_configs(v) -> configs.RunSpec:
  """Flags -> the run's frozen configuration, once, in main()."""
  config = SquadConfig(
      **common.finetune_fields(v), n_best_size=v.n_best_size,
      max_answer_length=v.max_answer_length,
      null_score_diff_threshold=v.null_score_diff_threshold)
  data = SquadInputConfig(
      vocab_file=v.vocab_file, train_file=v.train_file, predict_file=v.predict_file,
      do_lower_case=v.do_lower_case, version_2_with_negative=v.version_2_with_negative,
      doc_stride=v.doc_stride, max_query_length=v.max_query_length,
      skip_empty_contexts=v.skip_empty_contexts)
  return configs.RunSpec(
      bert_config=common.bert_config_from_flags(v), run=config, optimizer=common.finetune_optimizer(v),
      distribution=common.distribution_config(v), data=data,
      phases=configs.Phases(do_train=v.do_train, do_predict=v.do_predict),
      init_checkpoint=v.init_checkpoint)
