"""run_pretraining.py end to end in subprocesses (hard timeouts): --multi_gpu on 2 logical CPUs
with fp16, selective recompute and accumulation, then eval; and a clear error on bad records."""
import json
import os
import subprocess
import sys

from helpers import random_features, tiny_config, write_pretraining_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=300):
  return subprocess.run([sys.executable, os.path.join(ROOT, "run_pretraining.py"), *args],
                        capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _setup(tmp_path):
  config = tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
  config.to_json_file(tmp_path / "bert_config.json")
  records = write_pretraining_records(
      tmp_path / "train.tfrecord", random_features(config, batch=48, seq=16, predictions=3))
  return records


def test_multi_gpu_fp16_recompute_accumulation_train_and_eval(tmp_path):
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
  log = result.stderr
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


def test_records_disagreeing_with_flags_fail_with_both_values(tmp_path):
  records = _setup(tmp_path)
  result = _run([f"--bert_config_file={tmp_path / 'bert_config.json'}",
                 f"--input_file={records}", f"--output_dir={tmp_path / 'out'}", "--do_train",
                 "--train_batch_size=4", "--max_seq_length=32", "--max_predictions_per_seq=3",
                 "--num_train_steps=2", "--num_warmup_steps=0"])
  assert result.returncode != 0
  assert "32" in result.stderr and "16" in result.stderr and "max_seq_length" in result.stderr
