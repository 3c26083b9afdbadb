"""run_classifier.py's knowledge-distillation flags: a teacher (on the fly, or its logits
written once to a file and read back), the loss's temperature and gold-label weight, and
unlabelled transfer data."""
from __future__ import annotations

import math
import os
from typing import Optional

from absl import flags as absl_flags

from bert_tf import configs
from bert_tf.configs.distillation import DistillConfig
from flags import common

_LOSS_FLAGS = ("distill_alpha", "distill_temperature", "transfer_data_dir")


def define_distillation_flags(flag_values=absl_flags.FLAGS) -> None:
  f = common._Definer(flag_values)  # pylint: disable=protected-access
  f.DEFINE_string("teacher_bert_config_file", None, "The teacher's bert_config.json.")
  f.DEFINE_string("teacher_init_checkpoint", None, "The teacher: a classifier fine-tuned on this "
                  "task (google TF1, another run_classifier.py --output_dir or a Hugging Face "
                  "BertForSequenceClassification folder), of --teacher_bert_config_file's shape.")
  f.DEFINE_string("teacher_vocab_file", None, "The teacher's vocab.txt (default: --vocab_file); "
                  "each example is tokenised for each model.")
  f.DEFINE_bool("teacher_do_lower_case", None, "The teacher's casing (default: "
                "--do_lower_case).")
  f.DEFINE_float("distill_temperature", 1.0, "Softmax temperature T of the soft labels (> 0); "
                 "the soft loss is scaled by T^2.")
  f.DEFINE_float("distill_alpha", 0.5, "Weight of the gold-label loss in [0, 1]; the teacher's "
                 "soft labels weigh 1 - alpha (0: soft labels only).")
  f.DEFINE_string("write_teacher_logits", None, "Run the teacher once over the training (and "
                  "transfer) examples and write its logits here (.npz); with --do_train the "
                  "student then trains on them.")
  f.DEFINE_string("teacher_logits_file", None, "Teacher logits written by "
                  "--write_teacher_logits, instead of running the teacher in each step.")
  f.DEFINE_string("transfer_data_dir", None, "Unlabelled transfer examples in the task's "
                  "training format (labels ignored): trained on the teacher's soft labels only.")


def active(v) -> bool:
  """Any teacher given: the run distils."""
  return bool(v.teacher_init_checkpoint or v.teacher_logits_file or v.write_teacher_logits)


def validate(v) -> list[str]:
  """Problems with the distillation flags, naming the flags (empty if none)."""
  problems = []
  if not (math.isfinite(v.distill_alpha) and 0.0 <= v.distill_alpha <= 1.0):
    problems.append(f"--distill_alpha={v.distill_alpha}: expected a value in [0, 1] (the "
                    "weight of the gold-label loss)")
  if not (math.isfinite(v.distill_temperature) and v.distill_temperature > 0):
    problems.append(f"--distill_temperature={v.distill_temperature}: expected a value > 0")
  runs_teacher = bool(v.write_teacher_logits) or (bool(v.teacher_init_checkpoint) and
                                                  not v.teacher_logits_file)
  if not active(v):
    given = [f"--{n}" for n in (*_LOSS_FLAGS, "teacher_bert_config_file", "teacher_vocab_file",
                                "teacher_do_lower_case") if common.changed(v, n)]
    if given:
      problems.append(f"{', '.join(given)} need a teacher: --teacher_init_checkpoint (with "
                      "--teacher_bert_config_file) or --teacher_logits_file")
    return problems
  if v.teacher_logits_file and (v.write_teacher_logits or v.teacher_init_checkpoint):
    problems.append("--teacher_logits_file replaces the teacher: give it without "
                    "--teacher_init_checkpoint / --write_teacher_logits")
  if runs_teacher and not (v.teacher_init_checkpoint and v.teacher_bert_config_file):
    problems.append("running the teacher needs --teacher_init_checkpoint and "
                    "--teacher_bert_config_file")
  if not runs_teacher and (v.teacher_vocab_file or v.teacher_do_lower_case is not None):
    problems.append("--teacher_vocab_file / --teacher_do_lower_case apply to a teacher that "
                    "runs here, not to --teacher_logits_file")
  if not v.do_train and not v.write_teacher_logits:
    problems.append("a teacher is given but neither --do_train nor --write_teacher_logits")
  for name in ("teacher_bert_config_file", "teacher_vocab_file", "teacher_logits_file"):
    if getattr(v, name) and not os.path.exists(getattr(v, name)):
      problems.append(f"--{name}={getattr(v, name)}: no such file")
  if v.transfer_data_dir and not os.path.isdir(v.transfer_data_dir):
    problems.append(f"--transfer_data_dir={v.transfer_data_dir}: no such directory")
  return problems


def to_config(v) -> Optional[DistillConfig]:
  """The run's distillation settings; None when no teacher is given."""
  if not active(v):
    return None
  teacher_config = (configs.BertConfig.from_json_file(v.teacher_bert_config_file)
                    if v.teacher_bert_config_file else None)
  lower = v.do_lower_case if v.teacher_do_lower_case is None else v.teacher_do_lower_case
  return DistillConfig(
      alpha=v.distill_alpha, temperature=v.distill_temperature, teacher_config=teacher_config,
      teacher_checkpoint=v.teacher_init_checkpoint,
      teacher_vocab_file=v.teacher_vocab_file or v.vocab_file, teacher_do_lower_case=lower,
      teacher_logits_file=v.teacher_logits_file, transfer_data_dir=v.transfer_data_dir)
