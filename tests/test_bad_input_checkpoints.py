"""Our own checkpoints under bad conditions: checked both ways (a bigger model's checkpoint is
refused, listing what would be dropped; another width names the file and both configs), an
--output_dir of another model refused before anything is written, damaged checkpoints named
and skipped for the newest readable one and moved aside into ckpt-N.damaged/ (or refused), stale ckpt-N_temp/ folders removed."""
import json
import os
import re
import shutil

from absl import flags as absl_flags
import numpy as np
import pytest
import tensorflow as tf

from bert_tf import checkpoint_checks, checkpoints, distribution
from bert_tf.checkpoints import CheckpointMismatchError
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.testing import builders
from bert_tf.testing.synthetic import classifier_features
from bert_tf.testing.tiny import tiny_config
from flags import common as common_flags
from flags import pretraining as pretraining_flags

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_layer_run(tmp_path_factory):
  """A 2-layer pretraining output_dir (ckpt-2, ckpt-4 with optimizer slots, encoder/ export,
  run_config.json as run_pretraining.py writes it)."""
  out = tmp_path_factory.mktemp("two_layer") / "out"
  trainer = builders.pretrainer(out, steps=4)
  trainer.train()
  from bert_tf import configs
  configs.save_resolved_config(str(out), bert_config=tiny_config())
  return out


def _copy(run, tmp_path, name="out"):
  dest = tmp_path / name
  shutil.copytree(run, dest)
  return dest


def test_a_bigger_checkpoint_into_a_smaller_model_is_refused_listing_the_unused(two_layer_run):
  one_layer = tiny_config(num_hidden_layers=1)
  for model, path in ((BertClassifier(BertEncoder(one_layer), num_labels=3), two_layer_run),
                      (BertEncoder(one_layer), two_layer_run / "encoder"),
                      (BertPretrainer(BertEncoder(one_layer)), two_layer_run)):
    with pytest.raises(CheckpointMismatchError) as e:
      checkpoints.restore_weights(str(path), model)
    message = str(e.value)
    assert "model weight(s) this model does not use" in message, message
    assert "encoder/blocks/1/attention/query/kernel" in message
    assert "'num_hidden_layers': 2" in message and "'num_hidden_layers': 1" in message
  # The same depth loads, both kinds; heads the target lacks (masked LM, NSP), optimizer slots
  # and counters are left without complaint.
  two = tiny_config()
  assert checkpoints.restore_weights(str(two_layer_run), BertClassifier(
      BertEncoder(two), num_labels=3)) == "pretraining"
  assert checkpoints.restore_weights(str(two_layer_run / "encoder"), BertEncoder(two)) == \
      "encoder"


def test_eval_only_over_a_bigger_classifier_run_is_refused_not_scored_without_layer_1(
    tmp_path):
  """run_classifier.py --do_eval restores the output_dir's checkpoint with no optimizer (the
  weights-only path): a 2-layer classifier run evaluated with a 1-layer config is refused,
  naming the unused layer, before any metrics are written."""
  out = tmp_path / "classifier"
  two = builders.classifier_trainer(out, config=tiny_config(vocab_size=100), task="mrpc")
  tf.train.CheckpointManager(tf.train.Checkpoint(model=two.model), str(out), 1,
                             checkpoint_name="ckpt").save(checkpoint_number=3)
  one = builders.classifier_trainer(out, config=tiny_config(vocab_size=100,
                                                            num_hidden_layers=1), task="mrpc")
  with pytest.raises(CheckpointMismatchError, match=r"ckpt-3: holds \d+ model weight\(s\) this "
                     r"model does not use.*model/encoder/blocks/1/"):
    one.evaluate({"": classifier_features(1, 5)})
  assert not (out / "eval_results.txt").exists() and not (out / "eval_metrics.jsonl").exists()
  # The same depth evaluates.
  same = builders.classifier_trainer(out, config=tiny_config(vocab_size=100), task="mrpc")
  assert same.evaluate({"": classifier_features(1, 5)})["global_step"] == 0


def test_another_width_names_the_file_and_both_configs(two_layer_run):
  wide = tiny_config(hidden_size=36)
  with pytest.raises(CheckpointMismatchError) as e:
    checkpoints.restore_weights(str(two_layer_run), BertClassifier(BertEncoder(wide),
                                                                   num_labels=2))
  message = str(e.value)
  assert re.search(r"ckpt-4: a weight's shape does not fit the model", message), message
  assert "'hidden_size': 32" in message and "'hidden_size': 36" in message
  assert "run_config.json" in message


def test_resume_into_a_bigger_or_wider_runs_directory_is_refused(two_layer_run, tmp_path):
  out = _copy(two_layer_run, tmp_path)
  before = {p: (out / p).read_bytes() for p in os.listdir(out) if (out / p).is_file()}
  trainer = builders.pretrainer(out, steps=6, config=tiny_config(num_hidden_layers=1))
  with pytest.raises(CheckpointMismatchError, match=r"ckpt-4: holds \d+ model weight\(s\) this "
                     r"model does not use.*model/encoder/blocks/1/"):
    trainer.train()
  trainer = builders.pretrainer(out, steps=6, config=tiny_config(intermediate_size=40))
  with pytest.raises(CheckpointMismatchError, match=r"'intermediate_size': 37.*\n.*"
                     r"'intermediate_size': 40"):
    trainer.train()
  after = {p: (out / p).read_bytes() for p in os.listdir(out) if (out / p).is_file()}
  assert after == before  # nothing overwritten, nothing mixed in


def _flags(out, *extra):
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  values(["run_pretraining.py", "--bert_preset=tiny", "--vocab_size=99", f"--output_dir={out}",
          "--input_file=x.tfrecord", "--do_train", *extra])
  pretraining_flags.validate(values)
  return values


def test_output_dir_of_another_model_is_refused_before_run_config_is_written(two_layer_run,
                                                                             tmp_path):
  from absl import app
  out = _copy(two_layer_run, tmp_path)
  written = (out / "run_config.json").read_bytes()
  runtime = distribution.make_runtime("one_device")
  # tiny preset: 2 layers of 128, not the 2 x 32 of these checkpoints.
  v = _flags(out)
  with pytest.raises(app.UsageError) as e:
    common_flags.record_run(v, pretraining_flags.to_configs(v), runtime)
  message = str(e.value)
  assert f"--output_dir={out} holds checkpoints of a different model" in message
  assert '"hidden_size": 32' in message and '"hidden_size": 128' in message, message
  assert (out / "run_config.json").read_bytes() == written
  assert not (out / "run.flags").exists() and not (out / "run_config.1.json").exists()
  # No run_config.json at all: the checkpoint's shapes still tell.
  (out / "run_config.json").unlink()
  with pytest.raises(app.UsageError, match=r"the checkpoint \S+ckpt-4 has the shapes of"):
    common_flags.record_run(v, pretraining_flags.to_configs(v), runtime)
  assert not (out / "run_config.json").exists()


@pytest.mark.parametrize("field, value", [("num_attention_heads", 2), ("hidden_act", "relu"),
                                          ("hidden_dropout_prob", 0.3)])
def test_output_dir_of_a_model_with_the_same_shapes_but_other_heads_or_activation_is_refused(
    two_layer_run, tmp_path, field, value):
  """Same weight shapes, another architecture: refused naming the field, both values and the
  file, before anything is written. Dropout is not architecture (fine-tuning may change it)."""
  from absl import app
  out = _copy(two_layer_run, tmp_path)
  recorded = json.loads((out / "run_config.json").read_text())["bert_config"]
  assert recorded[field] != value
  config_file = tmp_path / "bert_config.json"
  tiny_config(**{field: value}).to_json_file(config_file)
  values = absl_flags.FlagValues()
  pretraining_flags.define_pretraining_flags(values)
  values(["run_pretraining.py", f"--bert_config_file={config_file}", f"--output_dir={out}",
          "--input_file=x.tfrecord", "--do_train", "--max_seq_length=64",
          "--max_predictions_per_seq=8"])
  pretraining_flags.validate(values)
  before = {p: (out / p).read_bytes() for p in os.listdir(out) if (out / p).is_file()}
  runtime = distribution.make_runtime("one_device")
  spec = pretraining_flags.to_configs(values)
  if field == "hidden_dropout_prob":
    common_flags.record_run(values, spec, runtime)
    return
  with pytest.raises(app.UsageError) as e:
    common_flags.record_run(values, spec, runtime)
  assert (f"{field}: {recorded[field]!r} in {out / 'run_config.json'} (the run that wrote "
          f"them), {value!r} in this run's config") in str(e.value), str(e.value)
  after = {p: (out / p).read_bytes() for p in os.listdir(out) if (out / p).is_file()}
  assert after == before


def _damage(prefix, what):
  path = prefix + (".index" if what == "index" else ".data-00000-of-00001")
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    if what == "truncated":
      f.write(data[:len(data) // 2])
    else:  # one byte flipped in the middle (data or index)
      f.write(data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) +
              data[len(data) // 2 + 1:])
  return path


@pytest.mark.parametrize("what", ["truncated", "corrupted", "index"])
def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_restored(
    two_layer_run, tmp_path, what, caplog):
  out = _copy(two_layer_run, tmp_path)
  expected = tf.train.load_checkpoint(str(out / "ckpt-2"))
  damaged = _damage(str(out / "ckpt-4"), what)
  damaged_bytes = open(damaged, "rb").read()
  trainer = builders.pretrainer(out, steps=4)
  with caplog.at_level("WARNING"):
    assert trainer.restore() == 2
  assert f"{damaged}" in caplog.text and "is damaged and is skipped" in caplog.text
  assert "resumed from" in caplog.text and "ckpt-2" in caplog.text
  key = "model/encoder/blocks/1/intermediate/kernel/.ATTRIBUTES/VARIABLE_VALUE"
  np.testing.assert_array_equal(trainer.model.encoder.blocks[1].intermediate.kernel.numpy(),
                                expected.get_tensor(key))
  # Moved aside, byte for byte, out of the checkpoint names: the state file's newest is the
  # checkpoint restored, and nothing lists the damaged one.
  aside = out / "ckpt-4.damaged"
  assert f"moved the damaged checkpoint {out / 'ckpt-4'} aside, into {aside}" in caplog.text
  assert sorted(os.listdir(aside)) == ["ckpt-4.data-00000-of-00001", "ckpt-4.index"]
  assert (aside / os.path.basename(damaged)).read_bytes() == damaged_bytes
  assert not any(f.startswith("ckpt-4.") and not f.endswith(".damaged")
                 for f in os.listdir(out))
  assert tf.train.latest_checkpoint(str(out)) == str(out / "ckpt-2")
  assert "ckpt-4" not in (out / "checkpoint").read_text()
  if what == "truncated":
    # Training on saves a new, complete ckpt-4 that the next start restores (no damage
    # reported); the first damaged copy is kept, a second one gets its own folder.
    trainer.train()
    caplog.clear()
    with caplog.at_level("WARNING"):
      assert builders.pretrainer(out, steps=4).restore() == 4
    assert "damaged" not in caplog.text
    _damage(str(out / "ckpt-4"), what)
    assert builders.pretrainer(out, steps=4).restore() == 2
    assert aside.is_dir() and (out / "ckpt-4.damaged-2" / "ckpt-4.index").exists()


def test_every_checkpoint_damaged_is_refused_never_a_fresh_start(two_layer_run, tmp_path):
  out = _copy(two_layer_run, tmp_path)
  names = [_damage(str(out / "ckpt-4"), "truncated"), _damage(str(out / "ckpt-2"), "index")]
  with pytest.raises(checkpoint_checks.CheckpointDamagedError) as e:
    builders.pretrainer(out, steps=6).train()
  for name in names:
    assert name in str(e.value), str(e.value)
  assert "refusing to start from scratch" in str(e.value)
  # A lost "checkpoint" state file: the newest ckpt-N still found, not a fresh start.
  out = _copy(two_layer_run, tmp_path, "lost_state")
  (out / "checkpoint").unlink()
  assert builders.pretrainer(out, steps=4).restore() == 4


def test_stale_temp_folders_of_an_interrupted_save_are_removed_at_start(two_layer_run,
                                                                       tmp_path):
  out = _copy(two_layer_run, tmp_path)
  stale = out / "ckpt-6_temp"
  stale.mkdir()
  (stale / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half a save")
  keep = out / "notes_temp.txt"
  keep.write_text("not ours to remove")
  trainer = builders.pretrainer(out, steps=6)
  assert not stale.exists() and keep.exists()
  assert trainer.restore() == 4
  assert json.loads((out / "run_config.json").read_text())["bert_config"]["hidden_size"] == 32
