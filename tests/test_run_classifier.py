"""run_classifier.py end to end in subprocesses (hard timeouts): XNLI on the sample with
token batches, eval and predict; bad rows and contradictory flags fail clearly."""
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from bert_tf.testing.files import read_metrics, write_glue_task, write_xnli_sample
from bert_tf.testing.launch import ROOT, run_script
from bert_tf.testing.tiny import classifier_config


def _run(args, timeout=240):
  return run_script("run_classifier.py", args, timeout)


def _model(tmp_path, vocab_size=256):
  path = tmp_path / "bert_config.json"
  classifier_config(vocab_size, dropout=0.0).to_json_file(path)
  return f"--bert_config_file={path}"


@pytest.mark.integration
def test_xnli_on_the_sample_trains_evaluates_and_predicts(tmp_path):
  paths = write_xnli_sample(tmp_path / "xnli", train=1000, evals=30, languages=("en", "de"))
  out = tmp_path / "out"
  result = _run([f"--task=xnli", f"--data_dir={paths['data_dir']}",
                 f"--vocab_file={paths['vocab_file']}", _model(tmp_path), f"--output_dir={out}",
                 "--do_train", "--do_eval", "--do_predict", "--max_seq_length=64",
                 "--batch_size_in_tokens", "--train_batch_size=512", "--eval_batch_size=4096",
                 "--predict_batch_size=4096", "--learning_rate=5e-4", "--num_train_epochs=4",
                 "--xnli_language=en", "--iterations_per_loop=50"])
  assert result.returncode == 0, result.stderr[-4000:]
  results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
  assert float(results["eval_accuracy_en"]) >= 0.9, results
  assert {"eval_accuracy_de", "eval_accuracy_average", "eval_loss", "global_step",
          "loss"} <= set(results)
  assert "Eval results" in result.stderr
  rows = (out / "test_results.tsv").read_text().splitlines()
  assert len(rows) == 60 and len(rows[0].split("\t")) == 3
  assert (out / "run_config.json").exists() and (out / "checkpoint").exists()
  assert read_metrics(out / "train_metrics.jsonl")  # strict JSON: no NaN / Infinity


@pytest.mark.integration
def test_malformed_row_and_bad_flags_fail_clearly(tmp_path):
  folder = write_glue_task(tmp_path, "mrpc")
  with open(os.path.join(folder, "train.tsv"), "a") as f:
    f.write("1\t9\t9\tonly four columns\n")
  (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n")
  common = ["--task_name=mrpc", f"--data_dir={folder}", f"--vocab_file={tmp_path / 'vocab.txt'}",
            _model(tmp_path, 16), "--do_train", "--max_seq_length=16", "--train_batch_size=2"]
  result = _run([*common, f"--output_dir={tmp_path / 'out'}"])
  assert result.returncode != 0
  assert f"{folder}/train.tsv:4: expected 5 tab-separated columns, got 4" in result.stderr
  assert "--skip_malformed_rows" in result.stderr
  result = _run([*common, f"--output_dir={tmp_path / 'out'}", "--use_fp16", "--dtype=bf16",
                 "--xnli_language=de", "--batch_size_in_tokens"])
  assert result.returncode != 0
  for problem in ("--use_fp16 contradicts --dtype=bf16", "apply only to --task_name=xnli",
                  "--train_batch_size=2 tokens"):
    assert problem in result.stderr, result.stderr[-2000:]
  # Budgets of phases this run does not do (no --do_eval / --do_predict) are not checked.
  assert "--eval_batch_size" not in result.stderr and "--predict_batch_size" not in result.stderr


@pytest.mark.distributed
def test_sigterm_saves_and_exits_143_then_relaunch_finishes(tmp_path):
  """An announced termination during fine-tuning: checkpoint at the next loop boundary, exit
  143; the same command resumes from that step and finishes."""
  paths = write_xnli_sample(tmp_path / "xnli", train=400, evals=10, languages=("en",))
  out = tmp_path / "out"
  args = [sys.executable, os.path.join(ROOT, "run_classifier.py"), "--task=xnli",
          f"--data_dir={paths['data_dir']}", f"--vocab_file={paths['vocab_file']}",
          _model(tmp_path), f"--output_dir={out}", "--do_train", "--max_seq_length=64",
          "--train_batch_size=8", "--num_train_epochs=40", "--xnli_language=en",
          "--iterations_per_loop=1", "--save_checkpoints_steps=25"]
  total = 400 * 40 // 8
  log = open(tmp_path / "first.log", "w")
  proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 240
    while not (out / "ckpt-25.index").exists():
      assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
      assert time.monotonic() < deadline, "no checkpoint within 240 s"
      time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=90)
  finally:
    if proc.poll() is None:
      proc.kill()
  text = (tmp_path / "first.log").read_text()
  assert code == 143, text[-3000:]
  assert "termination requested (SIGTERM)" in text
  stopped = int(os.path.basename(tf.train.latest_checkpoint(str(out))).split("-")[1])
  assert 25 <= stopped < total
  result = subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"(step {stopped})" in result.stderr  # resumed from the termination checkpoint
  final = int(os.path.basename(tf.train.latest_checkpoint(str(out))).split("-")[1])
  assert final == total
