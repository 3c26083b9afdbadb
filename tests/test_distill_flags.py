"""run_classifier.py's distillation flags: the validator names each bad flag and what it
expected; flags become a DistillConfig with the student's vocab and casing as defaults."""
from absl import app
from absl import flags as absl_flags
import pytest

from flags import classifier as classifier_flags
from flags import distillation as distillation_flags

pytestmark = pytest.mark.unit


def _parse(tmp_path, *args):
  (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n")
  (tmp_path / "teacher.json").write_text('{"vocab_size": 5, "hidden_size": 8, '
                                         '"num_hidden_layers": 1, "num_attention_heads": 2, '
                                         '"intermediate_size": 8}')
  values = absl_flags.FlagValues()
  classifier_flags.define_classifier_flags(values)
  values(["run_classifier.py", "--task=mrpc", f"--data_dir={tmp_path}", "--bert_preset=tiny",
          "--vocab_size=5", f"--vocab_file={tmp_path / 'vocab.txt'}",
          f"--output_dir={tmp_path / 'out'}", *args])
  return values


def _problems(v):
  with pytest.raises(app.UsageError) as e:
    classifier_flags.validate(v)
  return str(e.value)


def test_no_teacher_is_plain_fine_tuning_and_loss_flags_need_one(tmp_path):
  v = _parse(tmp_path, "--do_train")
  classifier_flags.validate(v)
  assert distillation_flags.to_config(v) is None
  text = _problems(_parse(tmp_path, "--do_train", "--distill_alpha=0.2",
                          f"--transfer_data_dir={tmp_path}"))
  assert "--distill_alpha, --transfer_data_dir need a teacher" in text


def test_bad_values_and_combinations_are_named(tmp_path):
  teacher = [f"--teacher_bert_config_file={tmp_path / 'teacher.json'}",
             f"--teacher_init_checkpoint={tmp_path}"]
  text = _problems(_parse(tmp_path, "--do_train", *teacher, "--distill_alpha=1.5",
                          "--distill_temperature=0", f"--transfer_data_dir={tmp_path}/none"))
  assert "--distill_alpha=1.5: expected a value in [0, 1]" in text
  assert "--distill_temperature=0.0: expected a value > 0" in text
  assert f"--transfer_data_dir={tmp_path}/none: no such directory" in text
  text = _problems(_parse(tmp_path, "--do_train", f"--teacher_init_checkpoint={tmp_path}"))
  assert "needs --teacher_init_checkpoint and --teacher_bert_config_file" in text
  text = _problems(_parse(tmp_path, "--do_train", *teacher,
                          f"--teacher_logits_file={tmp_path / 'x.npz'}"))
  assert "--teacher_logits_file replaces the teacher" in text and "x.npz: no such file" in text
  text = _problems(_parse(tmp_path, "--do_eval", *teacher))
  assert "neither --do_train nor --write_teacher_logits" in text


def test_flags_to_config_with_the_students_tokenizer_by_default(tmp_path):
  teacher = [f"--teacher_bert_config_file={tmp_path / 'teacher.json'}",
             f"--teacher_init_checkpoint={tmp_path}"]
  v = _parse(tmp_path, *teacher, f"--write_teacher_logits={tmp_path / 't.npz'}",
             "--distill_alpha=0", "--distill_temperature=3", "--nodo_lower_case")
  classifier_flags.validate(v)  # writing alone is a phase
  config = distillation_flags.to_config(v)
  assert (config.alpha, config.temperature, config.teacher_config.hidden_size) == (0.0, 3.0, 8)
  assert config.teacher_vocab_file == str(tmp_path / "vocab.txt")
  assert config.teacher_do_lower_case is False and config.on_the_fly


def test_the_distillation_recipe_parses_and_validates(tmp_path):
  """recipes/distillation: step 1 with run_pretraining's flags, steps 2 and 3 with
  run_classifier's, each with the command its header shows (paths made up)."""
  import os
  from bert_tf.testing.launch import ROOT
  from flags import pretraining as pretraining_flags
  folder = os.path.join(ROOT, "recipes", "distillation")
  assert sorted(os.listdir(folder)) == ["1_pretrain_student.flags", "2_distil.flags",
                                       "3_finetune_gold.flags"]
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  values(["run_pretraining.py", f"--flagfile={folder}/1_pretrain_student.flags",
          "--bert_preset=L-4_H-256_A-4", "--vocab_size=30522", "--input_file=x.tfrecord",
          f"--output_dir={tmp_path}"])
  pretraining_flags.validate(values)
  assert pretraining_flags.to_configs(values).run.next_sentence_prediction is False  # MLM alone
  teacher = [f"--teacher_bert_config_file={tmp_path / 'teacher.json'}",
             f"--teacher_init_checkpoint={tmp_path}", f"--transfer_data_dir={tmp_path}"]
  v = _parse(tmp_path, f"--flagfile={folder}/2_distil.flags", *teacher)
  classifier_flags.validate(v)
  config = distillation_flags.to_config(v)
  assert (config.alpha, config.temperature) == (0.0, 1.0) and config.on_the_fly
  v = _parse(tmp_path, f"--flagfile={folder}/3_finetune_gold.flags")
  classifier_flags.validate(v)
  assert distillation_flags.to_config(v) is None
