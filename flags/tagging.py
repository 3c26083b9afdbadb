"""run_tagging.py's flags: google's names where google has them, plus the tagging options. The
flags every script shares are defined once, in ``flags.common``."""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import configs
from bert_tf.configs.tagging import TaggingInputConfig
from bert_tf.data import tagging as tagging_data
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
  f.DEFINE_bool("cache_features", True, "Keep tokenised windows in --output_dir/features: a "
                "later run on the same files and settings loads them (any change to a file, "
                "the vocab, casing, --max_seq_length, the labels or --doc_context rebuilds).")
  # The run (FinetuneConfig).
  common.define_finetuning_flags(flag_values, unit="sentences")
  f.DEFINE_float("tagger_dropout", None, "Dropout before the tagging layer (default: the "
                 "config's hidden_dropout_prob).")


def validate(v) -> None:
  """The one place contradictory or impossible combinations are refused."""
  problems = common.validate_common(v)
  problems += common.validate_task_folder(v, tagging_data.TASK_NAMES)
  problems += common.validate_finetuning(v)
  common.check_float(problems, "tagger_dropout", v.tagger_dropout, 0.0, 1.0)
  common.raise_if(problems)


def to_configs(v) -> configs.RunSpec:
  """Flags -> the run's frozen configuration, once, in main()."""
  config = configs.FinetuneConfig(**common.finetune_fields(v),
                                  classifier_dropout=v.tagger_dropout)
  data = TaggingInputConfig(
      task_name=v.task_name, data_dir=v.data_dir, vocab_file=v.vocab_file,
      do_lower_case=v.do_lower_case, label_column=v.label_column, strict_tags=v.strict_tags,
      doc_context=v.doc_context, skip_malformed_rows=v.skip_malformed_rows,
      cache_features=v.cache_features)
  return configs.RunSpec(
      bert_config=common.bert_config_from_flags(v), run=config, optimizer=common.finetune_optimizer(v),
      distribution=common.distribution_config(v), data=data,
      phases=configs.Phases(do_train=v.do_train, do_eval=v.do_eval, do_predict=v.do_predict),
      init_checkpoint=v.init_checkpoint)
