"""run_tagging.py's flags: google's names where google has them, plus the tagging options. The
flags every script shares are defined once, in ``flags.common``."""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import configs
from bert_tf.configs.tagging import TaggingInputConfig
from bert_tf.data import tagging as tagging_data
from flags import classifier as classifier_flags
from flags import common


def define_tagging_flags(flag_values=absl_flags.FLAGS) -> None:
  common.define_common_flags(flag_values)
  f = common._Definer(flag_values)  # pylint: disable=protected-access
  # The data (TaggingInputConfig).
  f.DEFINE_enum("task_name", None, list(tagging_data.TASK_NAMES), "conll2003 (word POS chunk "
                "NER columns) or bio (any CoNLL-style BIO/IOB file, columns counted from the "
                "file's first token line).")
  absl_flags.DEFINE_alias("task", "task_name", flag_values=flag_values)
  f.DEFINE_string("data_dir", None, "Folder with train.txt, dev.txt (or valid.txt) and "
                  "test.txt, or CoNLL-2003's eng.train, eng.testa and eng.testb.")
  f.DEFINE_string("vocab_file", None, "vocab.txt the model was trained with.")
  f.DEFINE_bool("do_lower_case", False, "Lower-case and strip accents (uncased models; NER "
                "wants a cased model, so the default is False).")
  f.DEFINE_bool("do_predict", False, "Tag the test split -> test_predictions.txt.")
  f.DEFINE_integer("label_column", -1, "The column holding the tag (negative: counted from "
                   "the end; CoNLL-2003's NER tag is the last).")
  f.DEFINE_bool("strict_tags", True, "Refuse tags that are not O, B-TYPE or I-TYPE.")
  f.DEFINE_bool("doc_context", False, "Fill each window up to --max_seq_length with the "
                "tokens around its sentence in the same document (the BERT paper's NER "
                "setup); labels stay on the sentence's own words.")
  f.DEFINE_bool("skip_malformed_rows", False, "Skip and count sentences with a bad line "
                "(wrong column count, unknown or non-BIO tag, broken UTF-8) instead of "
                "failing at the first one.")
  # The run (FinetuneConfig).
  f.DEFINE_integer("predict_batch_size", 8, "Predict batch: sentences, or tokens.")
  f.DEFINE_bool("batch_size_in_tokens", False, "Count the batch size flags in tokens: windows "
                "are bucketed by length and padded per batch, not to --max_seq_length.")
  f.DEFINE_float("num_train_epochs", 3.0, "Epochs (fractions allowed).")
  f.DEFINE_float("warmup_proportion", 0.1, "Fraction of the steps with linear warm-up.")
  f.DEFINE_float("tagger_dropout", None, "Dropout before the tagging layer (default: the "
                 "config's hidden_dropout_prob).")


def validate(v) -> None:
  """The one place contradictory or impossible combinations are refused."""
  problems = common.validate_common(v)
  if not v.task_name:
    problems.append(f"--task_name (or --task) is required: one of {list(tagging_data.TASK_NAMES)}")
  if not (v.do_train or v.do_eval or v.do_predict):
    problems.append("at least one of --do_train, --do_eval or --do_predict must be given")
  for name in ("data_dir", "vocab_file"):
    if not getattr(v, name):
      problems.append(f"--{name} is required")
  if v.predict_batch_size < 1:
    problems.append(f"--predict_batch_size must be >= 1, got {v.predict_batch_size}")
  if v.num_train_epochs <= 0:
    problems.append(f"--num_train_epochs must be > 0, got {v.num_train_epochs}")
  if not 0 <= v.warmup_proportion <= 1:
    problems.append(f"--warmup_proportion must be in [0, 1], got {v.warmup_proportion}")
  if v.batch_size_in_tokens:
    for name, used, parts in (("train_batch_size", v.do_train, v.gradient_accumulation_steps),
                              ("eval_batch_size", v.do_eval, 1),
                              ("predict_batch_size", v.do_predict, 1)):
      if used and getattr(v, name) // max(parts, 1) < v.max_seq_length:
        problems.append(classifier_flags.check_token_budget(
            name, getattr(v, name), max(parts, 1), v.max_seq_length))
  elif v.gradient_accumulation_steps >= 1 and v.train_batch_size % v.gradient_accumulation_steps:
    problems.append(f"--train_batch_size ({v.train_batch_size}) must be divisible by "
                    f"--gradient_accumulation_steps ({v.gradient_accumulation_steps})")
  common.raise_if(problems)


def to_configs(v) -> configs.RunSpec:
  """Flags -> the run's frozen configuration, once, in main()."""
  config = configs.FinetuneConfig(
      **common.run_fields(v), predict_batch_size=v.predict_batch_size,
      batch_size_in_tokens=v.batch_size_in_tokens, num_train_epochs=v.num_train_epochs,
      warmup_proportion=v.warmup_proportion, classifier_dropout=v.tagger_dropout)
  # google's fine-tuning optimizer: AdamW, no bias correction; steps filled in from the data.
  optimizer_config = configs.OptimizerConfig(
      name="adamw", learning_rate=v.learning_rate, num_train_steps=1, num_warmup_steps=0,
      weight_decay_rate=v.weight_decay_rate, clip_norm=v.clip_norm)
  data = TaggingInputConfig(
      task_name=v.task_name, data_dir=v.data_dir, vocab_file=v.vocab_file,
      do_lower_case=v.do_lower_case, label_column=v.label_column, strict_tags=v.strict_tags,
      doc_context=v.doc_context, skip_malformed_rows=v.skip_malformed_rows)
  return configs.RunSpec(
      bert_config=common.bert_config_from_flags(v), run=config, optimizer=optimizer_config,
      distribution=common.distribution_config(v), data=data,
      phases=configs.Phases(do_train=v.do_train, do_eval=v.do_eval, do_predict=v.do_predict),
      init_checkpoint=v.init_checkpoint)
