"""run_classifier.py's flags: google's names and meanings, plus this project's options. The
flags both scripts share are defined once, in ``flags.common``."""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import configs
from bert_tf.data import classifier as classifier_data
from flags import common
from flags import distillation


def define_classifier_flags(flag_values=absl_flags.FLAGS) -> None:
  common.define_common_flags(flag_values)
  f = common._Definer(flag_values)  # pylint: disable=protected-access
  # The data (ClassifierInputConfig).
  f.DEFINE_enum("task_name", None, list(classifier_data.TASK_NAMES), "The task to fine-tune.")
  absl_flags.DEFINE_alias("task", "task_name", flag_values=flag_values)
  f.DEFINE_string("data_dir", None, "The task's data: a GLUE task folder (glue_data/MRPC), or "
                  "for XNLI the XNLI-1.0 folder, the XNLI-MT-1.0 folder or their parent.")
  f.DEFINE_string("vocab_file", None, "vocab.txt the model was trained with.")
  f.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents (uncased models).")
  f.DEFINE_bool("do_predict", False, "Predict the test split -> test_results.tsv.")
  f.DEFINE_enum("eval_split", "dev", ["dev", "test"], "Split --do_eval scores (XNLI's test "
                "file has labels).")
  f.DEFINE_string("xnli_language", "en", "XNLI training language(s): one (en = zero-shot "
                  "cross-lingual), a comma list, or 'all' (translate-train, XNLI-MT-1.0).")
  f.DEFINE_string("xnli_eval_languages", "all", "XNLI languages to evaluate, each reported "
                  "alone: 'all' (every language in the file) or a comma list.")
  f.DEFINE_bool("skip_malformed_rows", False, "Skip and count malformed rows (wrong column "
                "count, unknown label, broken UTF-8) instead of failing at the first one.")
  f.DEFINE_bool("cache_features", True, "Cache tokenised features in --output_dir/features.")
  # The run (FinetuneConfig).
  common.define_finetuning_flags(flag_values)
  f.DEFINE_float("classifier_dropout", None, "Dropout before the classifier layer (default: "
                 "the config's hidden_dropout_prob, as google).")
  distillation.define_distillation_flags(flag_values)


def validate(v) -> None:
  """The one place contradictory or impossible combinations are refused."""
  problems = common.validate_common(v)
  # Writing the teacher's logits is a phase of its own.
  folder = common.validate_task_folder(v, classifier_data.TASK_NAMES,
                                       other_phase=bool(v.write_teacher_logits))
  problems += folder
  problems += common.validate_finetuning(v)
  problems += distillation.validate(v)
  common.check_float(problems, "classifier_dropout", v.classifier_dropout, 0.0, 1.0)
  if v.task_name and v.task_name != "xnli" and (
      common.changed(v, "xnli_language") or common.changed(v, "xnli_eval_languages")):
    problems.append(f"--xnli_language / --xnli_eval_languages apply only to --task_name=xnli, "
                    f"not {v.task_name}")
  for name in ("xnli_language", "xnli_eval_languages"):
    try:
      if getattr(v, name) != "all":
        classifier_data.parse_languages(getattr(v, name), f"--{name}")
    except ValueError as e:
      problems.append(str(e))
  common.raise_if(problems)


def to_configs(v) -> configs.RunSpec:
  """Flags -> the run's frozen configuration, once, in main()."""
  config = configs.FinetuneConfig(**common.finetune_fields(v),
                                  classifier_dropout=v.classifier_dropout)
  data = configs.ClassifierInputConfig(
      task_name=v.task_name, data_dir=v.data_dir, vocab_file=v.vocab_file,
      do_lower_case=v.do_lower_case, xnli_language=v.xnli_language,
      xnli_eval_languages=v.xnli_eval_languages, eval_split=v.eval_split,
      skip_malformed_rows=v.skip_malformed_rows, cache_features=v.cache_features)
  return configs.RunSpec(
      bert_config=common.bert_config_from_flags(v), run=config, optimizer=common.finetune_optimizer(v),
      distribution=common.distribution_config(v), data=data,
      phases=configs.Phases(do_train=v.do_train, do_eval=v.do_eval, do_predict=v.do_predict),
      init_checkpoint=v.init_checkpoint)
