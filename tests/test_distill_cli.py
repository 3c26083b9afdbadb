"""run_classifier.py distils end to end (subprocesses, hard timeouts): a teacher run, then a
student that writes the teacher's logits once, trains on them with transfer data and evaluates;
the refusal of a logits file of other examples is tested in-process (test_distillation)."""
import pytest

from bert_tf.testing.files import write_xnli_sample
from bert_tf.testing.launch import run_script
from bert_tf.testing.tiny import classifier_config, tiny_config


@pytest.mark.integration
def test_teacher_then_student_with_written_logits_and_transfer_data(tmp_path):
  paths = write_xnli_sample(tmp_path / "xnli", train=200, evals=30, languages=("en",))
  transfer = write_xnli_sample(tmp_path / "transfer", train=60, evals=3, languages=("en",))
  classifier_config(256, dropout=0.0).to_json_file(tmp_path / "teacher.json")
  tiny_config(vocab_size=256).to_json_file(tmp_path / "student.json")
  common = ["--task=xnli", "--xnli_language=en", f"--data_dir={paths['data_dir']}",
            f"--vocab_file={paths['vocab_file']}", "--max_seq_length=48",
            "--batch_size_in_tokens", "--train_batch_size=384", "--eval_batch_size=4096",
            "--num_train_epochs=1", "--learning_rate=5e-4"]
  teacher = run_script("run_classifier.py", [
      *common, f"--bert_config_file={tmp_path / 'teacher.json'}", "--do_train",
      f"--output_dir={tmp_path / 'teacher'}"], 300)
  assert teacher.returncode == 0, teacher.stderr[-3000:]
  logits = tmp_path / "teacher_logits.npz"
  student = run_script("run_classifier.py", [
      *common, f"--bert_config_file={tmp_path / 'student.json'}", "--do_train", "--do_eval",
      f"--output_dir={tmp_path / 'student'}",
      f"--teacher_bert_config_file={tmp_path / 'teacher.json'}",
      f"--teacher_init_checkpoint={tmp_path / 'teacher'}", f"--write_teacher_logits={logits}",
      f"--transfer_data_dir={transfer['data_dir']}", "--distill_alpha=0.5",
      "--distill_temperature=2"], 300)
  assert student.returncode == 0, student.stderr[-3000:]
  assert "200 labelled + 60 transfer examples" in student.stderr
  assert "wrote the teacher's logits of 260 examples" in student.stderr
  assert logits.exists() and (tmp_path / "student" / "eval_results.txt").exists()
  assert "soft_loss" in (tmp_path / "student" / "train_metrics.jsonl").read_text()
