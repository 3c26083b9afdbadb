"""run_pretraining.py end to end in subprocesses (hard timeouts): --multi_gpu on 2 logical CPUs
with fp16, selective recompute and accumulation, then eval; masked LM alone on records without
next_sentence_labels; and a clear error on bad records."""
import json
import os

import pytest

from bert_tf.testing.files import read_metrics, write_pretraining_records
from bert_tf.testing.launch import run_script
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import dropout_config

pytestmark = pytest.mark.integration


def _run(args, timeout=300):
  return run_script("run_pretraining.py", args, timeout)


def _setup(tmp_path):
  config = dropout_config(0.1)
  config.to_json_file(tmp_path / "bert_config.json")
  records = write_pretraining_records(
      tmp_path / "train.tfrecord", pretraining_features(config, batch=48, seq=16, predictions=3))
  return records


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """--multi_gpu on 2 logical CPUs, fp16, selective recompute, accumulation; then eval."""
  tmp_path = tmp_path_factory.mktemp("pretraining")
  records = _setup(tmp_path)
  out = tmp_path / "out"
  result = _run([f"--bert_config_file={tmp_path / 'bert_config.json'}",
                 f"--input_file={records}", f"--output_dir={out}", "--do_train", "--do_eval",
                 "--cpu_devices=2", "--multi_gpu", "--use_fp16", "--recompute=selective",
                 "--gradient_accumulation_steps=2", "--train_batch_size=8",
                 "--max_seq_length=16", "--max_predictions_per_seq=3", "--num_train_steps=4",
                 "--num_warmup_steps=1", "--learning_rate=1e-3", "--save_checkpoints_steps=2",
                 "--iterations_per_loop=2", "--eval_batch_size=8", "--max_eval_steps=2"])
  assert result.returncode == 0, result.stderr[-4000:]
  return out, result.stderr


def test_multi_gpu_fp16_recompute_accumulation_train_and_eval(trained):
  out, log = trained
  assert "mirrored over 2 device(s)" in log and "2 replica(s) x 2 micro-batch x 2 accumulation" in log
  assert "examples_per_sec" in log and "eta" in log
  resolved = json.loads((out / "run_config.json").read_text())
  assert resolved["train"]["dtype"] == "fp16" and resolved["train"]["recompute"] == "selective"
  assert os.path.exists(out / "ckpt-2.index") and os.path.exists(out / "ckpt-4.index")
  lines = [json.loads(l) for l in (out / "train_metrics.jsonl").read_text().splitlines()]
  assert [l["step"] for l in lines] == [2, 4]
  assert lines[-1]["loss_scale"] > 1 and lines[-1]["skipped_steps"] == 0
  results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
  assert int(results["global_step"]) == 4 and 0 <= float(results["masked_lm_accuracy"]) <= 1
  assert os.listdir(out / "tensorboard" / "train")
  assert os.path.exists(out / "encoder" / "encoder.index")


def test_train_metrics_are_strict_json(trained):
  """Every record parses as JSON for any reader: no NaN or Infinity (e.g. a first line's rates)."""
  out, _ = trained
  assert [r["step"] for r in read_metrics(out / "train_metrics.jsonl")] == [2, 4]


def test_saved_flags_reproduce_the_run(trained, tmp_path):
  """run_config.json holds every data flag; --flagfile=<output_dir>/run.flags (with only the
  output directory moved) repeats the run: the same first logged loss, exactly."""
  out, _ = trained
  resolved = json.loads((out / "run_config.json").read_text())
  assert {"input_file", "eval_input_file", "dynamic_masking", "vocab_file",
          "skip_corrupt_records"} <= set(resolved["data"])
  assert resolved["distribution"]["distribution"] == "mirrored"
  assert resolved["phases"] == {"do_train": True, "do_eval": True, "do_predict": False}
  again = tmp_path / "again"
  result = _run([f"--flagfile={out / 'run.flags'}", f"--output_dir={again}"])
  assert result.returncode == 0, result.stderr[-4000:]
  first, repeated = (read_metrics(d / "train_metrics.jsonl")[0] for d in (out, again))
  assert repeated["step"] == first["step"] and repeated["loss"] == first["loss"], (first, repeated)


def test_records_disagreeing_with_flags_fail_with_both_values(tmp_path):
  records = _setup(tmp_path)
  result = _run([f"--bert_config_file={tmp_path / 'bert_config.json'}",
                 f"--input_file={records}", f"--output_dir={tmp_path / 'out'}", "--do_train",
                 "--train_batch_size=4", "--max_seq_length=32", "--max_predictions_per_seq=3",
                 "--num_train_steps=2", "--num_warmup_steps=0"])
  assert result.returncode != 0
  assert "32" in result.stderr and "16" in result.stderr and "max_seq_length" in result.stderr


def test_masked_lm_only_on_records_without_next_sentence_labels(tmp_path):
  """--nonext_sentence_prediction (fp16) on two files, google's records and records without
  next_sentence_labels: they train and evaluate; the switch is in run_config.json and
  run.flags; no NSP metric anywhere."""
  records = _setup(tmp_path)  # with next_sentence_labels, as create_pretraining_data.py writes
  features = pretraining_features(dropout_config(0.1), batch=16, seq=16, predictions=3, seed=1)
  del features["next_sentence_labels"]
  records += "," + write_pretraining_records(tmp_path / "mlm_only.tfrecord", features)
  out = tmp_path / "out"
  result = _run([f"--bert_config_file={tmp_path / 'bert_config.json'}",
                 f"--input_file={records}", f"--output_dir={out}", "--do_train", "--do_eval",
                 "--nonext_sentence_prediction", "--use_fp16", "--train_batch_size=8",
                 "--max_seq_length=16", "--max_predictions_per_seq=3", "--num_train_steps=2",
                 "--num_warmup_steps=0", "--iterations_per_loop=2", "--eval_batch_size=8",
                 "--max_eval_steps=2", "--stall_timeout_secs=0"])
  assert result.returncode == 0, result.stderr[-4000:]
  assert json.loads((out / "run_config.json").read_text())["train"][
      "next_sentence_prediction"] is False
  assert "--nonext_sentence_prediction" in (out / "run.flags").read_text().splitlines()
  results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
  assert sorted(results) == ["global_step", "loss", "masked_lm_accuracy", "masked_lm_loss"]
  assert results["loss"] == results["masked_lm_loss"] and int(results["global_step"]) == 2
  lines = read_metrics(out / "train_metrics.jsonl")
  assert lines[-1]["step"] == 2 and "next_sentence_loss" not in lines[-1]
  assert lines[-1]["loss"] == pytest.approx(lines[-1]["masked_lm_loss"], abs=1e-6)
