"""run_pretraining.py in pipeline mode end to end (subprocesses, hard timeouts): a conf.json of
2 stages on 2 logical CPUs, 1f1b, train then eval; the same run as 2 localhost processes (one
stage each, TensorFlow's cluster runtime), its stage process killed (the client then exits with
an error) and both relaunched, resumes and ends on the same checkpoint bitwise; bad pipeline
flags are refused up front; run_config.json records the pipeline and its m; the shipped
BERT-24 8 x 8 recipe validates."""
import json
import os
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.testing import launch
from bert_tf.testing.files import read_metrics, write_pretraining_records
from bert_tf.testing.launch import run_script
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import tiny_config



TWO = {"module_to_stage_map": [0, 1, 1], "stage_to_rank_map": {"0": [0], "1": [1]}}
# Enough steps that the kill below (as soon as step 2's checkpoint exists) lands mid-run.
STEPS = 16


def _setup(tmp_path, out="out", steps=STEPS, cpu_devices=2):
  config = tiny_config(num_hidden_layers=4)
  config.to_json_file(tmp_path / "bert_config.json")
  records = write_pretraining_records(
      tmp_path / "train.tfrecord", pretraining_features(config, batch=48, seq=16, predictions=3))
  (tmp_path / "conf.json").write_text(json.dumps(TWO))
  return [f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--input_file={records}",
          f"--output_dir={tmp_path / out}", f"--cpu_devices={cpu_devices}",
          "--train_batch_size=8", "--max_seq_length=16", "--max_predictions_per_seq=3",
          f"--num_train_steps={steps}", "--num_warmup_steps=1", "--learning_rate=1e-3",
          "--save_checkpoints_steps=2", "--iterations_per_loop=2", "--eval_batch_size=8",
          "--max_eval_steps=2", f"--pipeline_config={tmp_path / 'conf.json'}",
          "--pipeline_schedule=1f1b", "--num_microbatches=4"]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("pipeline_cli")
  result = run_script("run_pretraining.py", _setup(tmp_path) + ["--do_train", "--do_eval"], 400)
  assert result.returncode == 0, result.stderr[-4000:]
  return tmp_path, result.stderr


@pytest.mark.integration
def test_conf_json_1f1b_train_and_eval(single_process):
  tmp_path, log = single_process
  out = tmp_path / "out"
  assert "pipeline of 2 stages (1f1b)" in log
  assert "1 replica(s) x 2 micro-batch x 4 accumulation" in log
  saved = json.loads((out / "pipeline_conf.json").read_text())
  assert saved["module_to_stage_map"] == [0, 1, 1] and saved["num_microbatches"] == 4
  # run_config.json: m as the accumulation steps, and the pipeline section.
  resolved = json.loads((out / "run_config.json").read_text())
  assert resolved["train"]["gradient_accumulation_steps"] == 4
  assert resolved["pipeline"] == {"schedule": "1f1b", "num_microbatches": 4,
                                  "steps_per_call": 1, "conf_file": str(tmp_path / "conf.json"),
                                  "layout": TWO}
  assert os.path.exists(out / f"ckpt-{STEPS}.index")
  assert os.path.exists(out / "eval_results.txt")
  # The engine's logging in pipeline mode: steps/s (after the traced first call) and the
  # per-stage timing line.
  rows = read_metrics(out / "train_metrics.jsonl")
  assert rows[-1]["step"] == STEPS and rows[-1]["steps_per_sec"] > 0, rows[-1]
  assert "pipeline stage times over" in log and "stage 1: F " in log


def _model_weights(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {n: reader.get_tensor(n) for n, _ in tf.train.list_variables(prefix)
          if n.startswith("model/")}


def _cluster(args, log_dir):
  return launch.start_workers([sys.executable, os.path.join(launch.ROOT, "run_pretraining.py"),
                               *args], num_workers=2, log_dir=str(log_dir))


@pytest.mark.distributed
def test_two_processes_killed_and_relaunched_equal_one_process(single_process):
  """One stage per process; the stage process is killed once step 2's checkpoint is saved: the
  client exits non-zero within 120 s; relaunching both resumes from the newest checkpoint and
  ends on the single-process run's final checkpoint, bitwise."""
  tmp_path, _ = single_process
  args = _setup(tmp_path, out="out_cluster", cpu_devices=0) + ["--do_train"]
  out = tmp_path / "out_cluster"
  procs = _cluster(args, tmp_path)
  try:
    deadline = time.monotonic() + 300
    # The state file names a checkpoint once its save is complete (ckpt-2.index alone can
    # exist while the save still needs the stage process).
    while not tf.train.latest_checkpoint(str(out)):
      assert time.monotonic() < deadline and procs[0].poll() is None, launch.read_log(tmp_path, 0)
      time.sleep(0.05)
    procs[1].kill()
    killed = time.monotonic()
    code = procs[0].wait(timeout=120)
    print(f"client exit {code} {time.monotonic() - killed:.1f}s after the stage process died")
    assert code != 0
  finally:
    launch.kill_all(procs)
  resumed_from = tf.train.latest_checkpoint(str(out))
  assert resumed_from, launch.read_log(tmp_path, 0)
  resumed_step = int(resumed_from.rsplit("-", 1)[1])
  assert resumed_step < STEPS, resumed_from
  codes = launch.wait_all(_cluster(args, tmp_path), timeout=400)
  assert codes == [0, 0], launch.read_log(tmp_path, 0)[-3000:] + launch.read_log(tmp_path, 1)
  log = launch.read_log(tmp_path, 0)
  assert f"(step {resumed_step})" in log and "pipeline server 1 of 2" in launch.read_log(
      tmp_path, 1)
  # The server exited 0 because the client marked its clean finish (without the marker: 1).
  assert "finished; server 1 exits" in launch.read_log(tmp_path, 1)
  print(f"relaunched from step {resumed_step}")
  got = _model_weights(str(out / f"ckpt-{STEPS}"))
  expected = _model_weights(str(tmp_path / "out" / f"ckpt-{STEPS}"))
  assert got.keys() == expected.keys() and len(got) > 100
  assert max(float(np.max(np.abs(got[n] - expected[n]))) for n in got) == 0.0, log[-3000:]


@pytest.mark.integration
@pytest.mark.parametrize("extra,message", [
    (["--pipeline_config={conf}", "--pipeline_schedule=2bw", "--num_microbatches=1"],
     "2bw needs --num_microbatches >= the number of stages"),
    (["--pipeline_config={conf}", "--multi_gpu"], "cannot be combined"),
    (["--num_microbatches=4"], "--num_microbatches applies to pipeline mode"),
    (["--pipeline_config={bad}"], r"module_to_stage_map\[1\]: stages must be contiguous"),
])
def test_bad_pipeline_flags_are_refused_before_running(tmp_path, extra, message):
  (tmp_path / "bad.json").write_text(json.dumps(
      {"module_to_stage_map": [0, 2, 2], "stage_to_rank_map": {"0": [0], "1": [1]}}))
  from absl import flags as absl_flags
  from flags import pretraining as pretraining_flags
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  args = [a for a in _setup(tmp_path) if not a.startswith(("--pipeline", "--num_micro"))]
  args += ["--do_train"] + [a.format(conf=tmp_path / "conf.json", bad=tmp_path / "bad.json")
                            for a in extra]
  values(["prog"] + args)
  with pytest.raises(Exception, match=message):
    pretraining_flags.validate(values)


def _flag_values(tmp_path, *args):
  """run_pretraining.py's flags parsed from ``args`` after the tiny model's required flags (no
  data is read before training)."""
  from absl import flags as absl_flags
  from flags import pretraining as pretraining_flags
  tiny_config(num_hidden_layers=4).to_json_file(tmp_path / "bert_config.json")
  (tmp_path / "conf.json").write_text(json.dumps(TWO))
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  values(["prog", f"--bert_config_file={tmp_path / 'bert_config.json'}", "--do_train",
          "--input_file=unread.tfrecord", f"--output_dir={tmp_path / 'out'}",
          "--max_seq_length=16", "--max_predictions_per_seq=3", "--train_batch_size=8",
          *[a.format(conf=tmp_path / "conf.json") for a in args]])
  return values


@pytest.mark.unit
@pytest.mark.parametrize("extra,message", [
    (["--use_xla"], "--use_xla does not apply in pipeline mode"),
    (["--pipeline_steps_per_call=4"],
     "--pipeline_steps_per_call=4 applies to --pipeline_schedule=2bw; 1f1b flushes"),
    (["--pipeline_schedule=gpipe", "--pipeline_steps_per_call=3"],
     "--pipeline_steps_per_call=3 applies to --pipeline_schedule=2bw; gpipe flushes"),
])
def test_flags_pipeline_mode_would_ignore_are_refused(tmp_path, extra, message):
  """Neither the pipeline's compiled loop nor a flush schedule reads these: refused, named."""
  from flags import pretraining as pretraining_flags
  values = _flag_values(tmp_path, "--pipeline_config={conf}", "--num_microbatches=4", *extra)
  with pytest.raises(Exception, match=message):
    pretraining_flags.validate(values)


@pytest.mark.unit
def test_2bw_steps_per_call_validates_and_the_spec_carries_the_pipeline(tmp_path):
  """2bw takes --pipeline_steps_per_call; the run's spec (what run_config.json records) has m
  as its accumulation steps and the pipeline section; a flush schedule records 1 per call."""
  from flags import pipeline as pipeline_flags
  from flags import pretraining as pretraining_flags
  values = _flag_values(tmp_path, "--pipeline_config={conf}", "--num_microbatches=4",
                        "--pipeline_schedule=2bw", "--pipeline_steps_per_call=4",
                        "--num_train_steps=8", "--num_warmup_steps=1",
                        "--iterations_per_loop=4", "--save_checkpoints_steps=4")
  pretraining_flags.validate(values)
  spec, pipeline = pipeline_flags.resolve(values, pretraining_flags.to_configs(values))
  assert spec.run.gradient_accumulation_steps == 4 and pipeline.steps_per_call == 4
  assert spec.pipeline.layout == TWO and spec.pipeline.schedule == "2bw"
  assert spec.pipeline.conf_file == str(tmp_path / "conf.json")
  assert spec.sections()["pipeline"] == spec.pipeline
  flush = _flag_values(tmp_path, "--pipeline_stages=2", "--num_microbatches=2")
  spec, _ = pipeline_flags.resolve(flush, pretraining_flags.to_configs(flush))
  assert spec.pipeline.steps_per_call == 1 and spec.pipeline.conf_file is None
  assert spec.pipeline.layout["stage_to_rank_map"] == {"0": [0], "1": [1]}
  plain = _flag_values(tmp_path)
  spec, pipeline = pipeline_flags.resolve(plain, pretraining_flags.to_configs(plain))
  assert pipeline is None and spec.pipeline is None


@pytest.mark.unit
def test_bert24_8x8_recipe_validates(monkeypatch):
  """recipes/pipeline/bert24_8x8.{flags,json} through run_pretraining.py's real validation
  (from the repository root, as its comment says to run it): issue 11's layout, 8 stages x 8
  ranks of BERT-Large, m = 64."""
  from absl import flags as absl_flags
  from bert_tf.pipeline import conf as conf_lib
  from flags import pipeline as pipeline_flags
  from flags import pretraining as pretraining_flags
  monkeypatch.chdir(launch.ROOT)
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  values(["prog", "--flagfile=recipes/pipeline/bert24_8x8.flags", "--bert_preset=large",
          "--vocab_size=30522", "--input_file=data/*.tfrecord", "--output_dir=/tmp/out"])
  pretraining_flags.validate(values)
  spec, pipeline = pipeline_flags.resolve(values, pretraining_flags.to_configs(values))
  assert spec.bert_config.num_hidden_layers == 24
  assert pipeline.conf.to_json() == {
      "module_to_stage_map": [0, 1, 2, 3, 4, 5, 6, 7, 7],
      "stage_to_rank_map": {str(s): list(range(8 * s, 8 * s + 8)) for s in range(8)}}
  assert pipeline.num_microbatches == 64 and pipeline.num_microbatches % pipeline.conf.replicas == 0
  assert [layout.layers for layout in pipeline.conf.stage_layouts(24)] == [
      tuple(range(3 * s, 3 * s + 3)) for s in range(8)]
  spec.run.check_divisible(1)   # 4096 sequences in m = 64 micro-batches
  for schedule in conf_lib.SCHEDULES:   # 2bw too: m >= 8 stages x 8 replicas
    conf_lib.check_for_run(pipeline.conf, schedule, pipeline.num_microbatches, 24)


@pytest.mark.integration
def test_pipeline_stages_without_a_file_splits_by_estimated_cost(tmp_path):
  from absl import flags as absl_flags
  from flags import pipeline as pipeline_flags
  from flags import pretraining as pretraining_flags
  from flags import common
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  args = [a for a in _setup(tmp_path) if not a.startswith("--pipeline_config")]
  values(["prog", *args, "--do_train", "--pipeline_stages=2"])
  pretraining_flags.validate(values)
  spec = pipeline_flags.to_spec(values, common.bert_config_from_flags(values))
  assert spec.conf.num_stages == 2 and spec.schedule == "1f1b" and spec.num_microbatches == 4
  assert len(spec.conf.module_to_stage_map) == 4 + 3 and sum(spec.predicted_shares) == \
      pytest.approx(1.0)


@pytest.mark.integration
def test_run_classifier_fine_tunes_pipelined_from_the_pipeline_checkpoint(single_process):
  """run_classifier.py with the pretraining run's conf.json (gpipe, m = 2) from its pipeline
  checkpoint, --num_stages=2 checked against the layout it was saved with; the log carries
  the per-stage timing line. (Equality with one device: test_pipeline_finetuning.)"""
  from bert_tf.testing.files import GLUE_FILES, write_glue_task
  tmp_path, _ = single_process
  folder = write_glue_task(tmp_path, "mrpc")
  words = sorted({w for _, (_, rows) in GLUE_FILES["mrpc"].items() for row in rows
                  for cell in row[3:] for w in cell.lower().replace('"', ' " ').replace(
                      ".", " . ").split()})
  (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
                                                + words) + "\n")
  out = tmp_path / "classifier"
  result = run_script("run_classifier.py", [
      "--task=mrpc", f"--data_dir={folder}", f"--vocab_file={tmp_path / 'vocab.txt'}",
      f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--output_dir={out}",
      f"--init_checkpoint={tmp_path / 'out'}", "--num_stages=2",
      f"--pipeline_config={tmp_path / 'conf.json'}", "--pipeline_schedule=gpipe",
      "--num_microbatches=2", "--cpu_devices=2", "--train_batch_size=2", "--max_seq_length=16",
      "--num_train_epochs=2", "--learning_rate=1e-3", "--do_train", "--do_eval"], 400)
  assert result.returncode == 0, result.stderr[-4000:]
  log = result.stderr
  assert "pipeline of 2 stages (gpipe)" in log and "initialised weights from" in log
  assert "pipeline stage times over" in log and "stage 1: F " in log
  assert (out / "eval_results.txt").exists() and (out / "ckpt-2.index").exists()
