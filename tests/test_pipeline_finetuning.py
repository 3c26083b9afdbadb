"""Fine-tuning pipelined: run_classifier's ClassifierTrainer with the pipeline engine's step
(``PipelineClassifierTrainer``: the same classification task object, plan, data and eval)
equals single-device fine-tuning with the same accumulation; --num_stages is checked against
the layout a pipeline checkpoint was saved with.

Tiny odd-sized classifier (2 layers, hidden 32, vocab 100), MRPC-style random pairs of 6-24
tokens, dropout 0, fp32, 2 stages on the test process's 2 logical CPU devices.
"""
import json
import types

import numpy as np
import pytest

from bert_tf.configs import FinetuneConfig
from bert_tf.data import classifier as data
from bert_tf.finetuning import ClassifierTrainer
from bert_tf.pipeline import conf as conf_lib
from bert_tf.pipeline.trainer import PipelineClassifierTrainer, pipeline_runtime
from bert_tf import distribution
from bert_tf.testing import builders
from bert_tf.testing.synthetic import classifier_features
from bert_tf.testing.tiny import tiny_config
from flags import pipeline as pipeline_flags

CONFIG = tiny_config(vocab_size=100)   # 2 layers
TASK = data.make_task("mrpc")
TRAIN, DEV = classifier_features(0, 64, vocab_size=100), classifier_features(1, 20, vocab_size=100)
TWO = {"module_to_stage_map": [0, 0, 1, 1, 1], "stage_to_rank_map": {"0": [0], "1": [1]}}
DEVICES = ["/device:CPU:0", "/device:CPU:1"]
M, STEPS = 4, 2


def _configs(output_dir, **overrides):
  """8 examples per step padded to 24 tokens (google's batching), m = 4 micro-batches of 2,
  no warm-up (the first step's learning rate is not 0), 8 planned steps, 2 run."""
  return builders.split_configs(
      overrides, FinetuneConfig,
      dict(output_dir=str(output_dir), train_batch_size=8, batch_size_in_tokens=False,
           eval_batch_size=8, max_seq_length=24, num_train_epochs=1, warmup_proportion=0.0,
           iterations_per_loop=2, save_checkpoints_steps=2, gradient_accumulation_steps=M,
           seed=1),
      dict(learning_rate=5e-3))


def weights(model):
  return {v.name: v.numpy() for v in model.variables}


def max_diff(a, b):
  assert a.keys() == b.keys()
  return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.mark.integration
def test_pipelined_fine_tuning_equals_one_device_with_accumulation(tmp_path):
  run, opt = _configs(tmp_path / "ref")
  reference = ClassifierTrainer(CONFIG, run, opt, distribution.make_runtime("one_device"), TASK)
  initial = weights(reference.model)
  ref_metrics = reference.train(TRAIN, stop_after_steps=STEPS)
  ref_eval = reference.evaluate({"dev": DEV})

  run, opt = _configs(tmp_path / "pipe")
  conf = conf_lib.parse_conf(TWO)
  trainer = PipelineClassifierTrainer(CONFIG, run, opt, pipeline_runtime(conf, "1f1b"), TASK,
                                      conf=conf, schedule="1f1b", devices=DEVICES)
  metrics = trainer.train(TRAIN, stop_after_steps=STEPS)
  got_eval = trainer.evaluate({"dev": DEV})

  moved = max_diff(weights(reference.model), initial)
  diff = max_diff(weights(trainer.model), weights(reference.model))
  print(f"pipelined fine-tuning (1f1b, 2 stages, m={M}): max |w - w_ref| = {diff:.2e} "
        f"(weights moved {moved:.2e}); loss {metrics['loss']:.7f} vs {ref_metrics['loss']:.7f}; "
        f"eval_loss {got_eval['eval_loss']:.7f} vs {ref_eval['eval_loss']:.7f}")
  assert moved > 1e-3
  assert diff <= 1e-6
  assert abs(metrics["loss"] - ref_metrics["loss"]) <= 1e-6
  assert abs(got_eval["eval_loss"] - ref_eval["eval_loss"]) <= 1e-6
  assert got_eval["eval_accuracy"] == ref_eval["eval_accuracy"]
  # The stages really are on their devices, and the timing line was produced.
  assert {v.device[-5:] for v in trainer.staged.variables[1]} == {"CPU:1"}
  assert trainer.stage_times is not None and trainer.stage_times.seconds.shape == (2, 3)
  # Evaluation alone (run_classifier --do_eval without --do_train) restores the checkpoint.
  fresh = PipelineClassifierTrainer(CONFIG, run, opt, pipeline_runtime(conf, "1f1b"), TASK,
                                    conf=conf, schedule="1f1b", devices=DEVICES)
  assert fresh.evaluate({"dev": DEV})["eval_loss"] == got_eval["eval_loss"]
  saved = json.loads((tmp_path / "pipe" / "pipeline_conf.json").read_text())
  assert saved["module_to_stage_map"] == TWO["module_to_stage_map"]


@pytest.mark.unit
def test_num_stages_is_checked_against_the_saved_layout(tmp_path):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "pipeline_conf.json").write_text(json.dumps(TWO))
  flags = lambda n, ckpt: types.SimpleNamespace(num_stages=n, init_checkpoint=ckpt)  # noqa
  assert pipeline_flags.num_stages_problems(flags(2, str(tmp_path / "run"))) == []
  assert pipeline_flags.num_stages_problems(flags(2, str(tmp_path / "run" / "ckpt-4"))) == []
  assert pipeline_flags.num_stages_problems(flags(0, str(tmp_path / "elsewhere"))) == []
  [wrong] = pipeline_flags.num_stages_problems(flags(4, str(tmp_path / "run" / "ckpt-4")))
  assert "--num_stages=4" in wrong and "pipeline of 2 stages" in wrong
  [plain] = pipeline_flags.num_stages_problems(flags(2, str(tmp_path / "bert_model.ckpt")))
  assert "not the output of a pipeline run" in plain
  [missing] = pipeline_flags.num_stages_problems(flags(2, None))
  assert "--init_checkpoint" in missing
