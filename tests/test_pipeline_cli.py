"""run_pretraining.py in pipeline mode end to end (subprocess, hard timeout): a conf.json of
2 stages on 2 logical CPUs, 1f1b, train then eval; and bad pipeline flags refused up front."""
import json
import os

import pytest

from bert_tf.testing.files import write_pretraining_records
from bert_tf.testing.launch import run_script
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import tiny_config

pytestmark = pytest.mark.integration


def _setup(tmp_path):
  config = tiny_config(num_hidden_layers=4)
  config.to_json_file(tmp_path / "bert_config.json")
  records = write_pretraining_records(
      tmp_path / "train.tfrecord", pretraining_features(config, batch=48, seq=16, predictions=3))
  return [f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--input_file={records}",
          f"--output_dir={tmp_path / 'out'}", "--cpu_devices=2", "--train_batch_size=8",
          "--max_seq_length=16", "--max_predictions_per_seq=3", "--num_train_steps=4",
          "--num_warmup_steps=1", "--learning_rate=1e-3", "--save_checkpoints_steps=2",
          "--iterations_per_loop=2", "--eval_batch_size=8", "--max_eval_steps=2"]


def test_conf_json_1f1b_train_and_eval(tmp_path):
  conf = tmp_path / "conf.json"
  conf.write_text(json.dumps({"module_to_stage_map": [0, 1, 1],
                              "stage_to_rank_map": {"0": [0], "1": [1]}}))
  args = _setup(tmp_path) + ["--do_train", "--do_eval", f"--pipeline_config={conf}",
                             "--pipeline_schedule=1f1b", "--num_microbatches=4"]
  result = run_script("run_pretraining.py", args, 400)
  assert result.returncode == 0, result.stderr[-4000:]
  out = tmp_path / "out"
  assert "pipeline of 2 stages (1f1b)" in result.stderr
  assert "1 replica(s) x 2 micro-batch x 4 accumulation" in result.stderr
  saved = json.loads((out / "pipeline_conf.json").read_text())
  assert saved["module_to_stage_map"] == [0, 1, 1] and saved["num_microbatches"] == 4
  assert os.path.exists(out / "ckpt-4.index") and os.path.exists(out / "eval_results.txt")


@pytest.mark.parametrize("extra,message", [
    (["--pipeline_config={conf}", "--pipeline_schedule=2bw", "--num_microbatches=1"],
     "2bw needs --num_microbatches >= the number of stages"),
    (["--pipeline_config={conf}", "--multi_gpu"], "cannot be combined"),
    (["--num_microbatches=4"], "--num_microbatches applies to pipeline mode"),
    (["--pipeline_config={bad}"], r"module_to_stage_map\[1\]: stages must be contiguous"),
])
def test_bad_pipeline_flags_are_refused_before_running(tmp_path, extra, message):
  (tmp_path / "conf.json").write_text(json.dumps(
      {"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [0], "1": [1]}}))
  (tmp_path / "bad.json").write_text(json.dumps(
      {"module_to_stage_map": [0, 2, 2], "stage_to_rank_map": {"0": [0], "1": [1]}}))
  from absl import flags as absl_flags
  from flags import pretraining as pretraining_flags
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  args = _setup(tmp_path) + ["--do_train"] + [
      a.format(conf=tmp_path / "conf.json", bad=tmp_path / "bad.json") for a in extra]
  values(["prog"] + args)
  with pytest.raises(Exception, match=message):
    pretraining_flags.validate(values)
