"""google TF1 checkpoints: the name table, load, export, errors; TF2 save/restore."""
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer

from bert_tf.testing.numerics import assert_all_close
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import tiny_config

pytestmark = pytest.mark.unit


def _google_table_names(num_layers):
  """google's variable names, spelled out independently of bert_tf.checkpoints."""
  names = ["bert/embeddings/word_embeddings", "bert/embeddings/token_type_embeddings",
           "bert/embeddings/position_embeddings", "bert/embeddings/LayerNorm/gamma",
           "bert/embeddings/LayerNorm/beta", "bert/pooler/dense/kernel", "bert/pooler/dense/bias"]
  for i in range(num_layers):
    for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                 "attention/output/dense", "intermediate/dense", "output/dense"):
      names += [f"bert/encoder/layer_{i}/{part}/kernel", f"bert/encoder/layer_{i}/{part}/bias"]
    for part in ("attention/output/LayerNorm", "output/LayerNorm"):
      names += [f"bert/encoder/layer_{i}/{part}/gamma", f"bert/encoder/layer_{i}/{part}/beta"]
  return names


def _write_tf1_checkpoint(path, values):
  with tf.Graph().as_default():
    variables = [tf.compat.v1.Variable(v, name=n) for n, v in values.items()]
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      tf.compat.v1.train.Saver(variables).save(sess, path, write_meta_graph=False)
  return path


def test_table_covers_every_variable_with_google_names():
  config = tiny_config()
  model = BertPretrainer(BertEncoder(config))
  table = checkpoints.google_name_table(model)
  cls = ["cls/predictions/transform/dense/kernel", "cls/predictions/transform/dense/bias",
         "cls/predictions/transform/LayerNorm/gamma", "cls/predictions/transform/LayerNorm/beta",
         "cls/predictions/output_bias", "cls/seq_relationship/output_weights",
         "cls/seq_relationship/output_bias"]
  assert sorted(table) == sorted(_google_table_names(config.num_hidden_layers) + cls)
  # One-to-one: each trainable variable appears exactly once.
  assert {v.ref() for v in table.values()} == {v.ref() for v in model.trainable_variables}
  assert len(table) == len(model.trainable_variables)
  assert table["cls/seq_relationship/output_weights"].shape == (2, config.hidden_size)


def test_export_then_load_gives_identical_outputs(tmp_path):
  config = tiny_config()
  source = BertPretrainer(BertEncoder(config))
  prefix = checkpoints.export_google_checkpoint(source, config, str(tmp_path))
  assert os.path.exists(tmp_path / "bert_config.json")
  target = BertPretrainer(BertEncoder(config))
  report = checkpoints.load_google_checkpoint(prefix, target)
  assert len(report["loaded"]) == len(target.trainable_variables) and not report["missing_allowed"]
  f = pretraining_features(config)
  a, b = source(f), target(f)
  for key in ("sequence_output", "pooled_output", "mlm_logits", "nsp_logits"):
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  with pytest.raises(FileExistsError, match="bert_model.ckpt.index already exists"):
    checkpoints.export_google_checkpoint(source, config, str(tmp_path))


def test_export_is_read_by_model_garden_converter(tmp_path):
  """Model Garden's own TF1->TF2 converter reads our export (an independent name check) and its
  BertPretrainerV2 then gives our encoder outputs and masked-LM logits."""
  from official.legacy.bert import configs as mg_configs
  from official.nlp.tools import tf2_bert_encoder_checkpoint_converter as converter
  config = tiny_config()
  ours = BertPretrainer(BertEncoder(config))
  prefix = checkpoints.export_google_checkpoint(ours, config, str(tmp_path / "google"))
  mg_config = mg_configs.BertConfig.from_json_file(str(tmp_path / "google" / "bert_config.json"))
  converter.convert_checkpoint(mg_config, str(tmp_path / "v2" / "ckpt"), prefix,
                               converted_model="pretrainer")
  mg = converter._create_bert_pretrainer_model(mg_config)
  tf.train.Checkpoint(model=mg).restore(
      tf.train.latest_checkpoint(str(tmp_path / "v2"))).assert_existing_objects_matched()
  f = pretraining_features(config)
  theirs = mg({"input_word_ids": f["input_ids"], "input_mask": f["input_mask"],
               "input_type_ids": f["segment_ids"],
               "masked_lm_positions": f["masked_lm_positions"]})
  mine = ours(f)
  assert_all_close(mine["sequence_output"], theirs["sequence_output"], 1e-5, "sequence_output")
  assert_all_close(mine["mlm_logits"], theirs["mlm_logits"], 1e-5, "mlm_logits")


def test_google_checkpoint_with_optimizer_slots_loads(tmp_path):
  """google's pretraining checkpoints also hold global_step and adam_m/adam_v slots."""
  config = tiny_config()
  source = BertPretrainer(BertEncoder(config))
  values = {n: v.numpy() for n, v in checkpoints.google_name_table(source).items()}
  values.update({f"{n}/adam_m": np.zeros_like(v) for n, v in values.items()})
  values["global_step"] = np.int64(1000)
  prefix = _write_tf1_checkpoint(str(tmp_path / "bert_model.ckpt"), values)
  target = BertPretrainer(BertEncoder(config))
  report = checkpoints.load_google_checkpoint(prefix, target)
  assert "global_step" in report["skipped"]
  assert checkpoints.is_google_checkpoint(str(tmp_path))  # a directory works too
  f = pretraining_features(config)
  np.testing.assert_array_equal(source(f)["mlm_logits"], target(f)["mlm_logits"])


def test_encoder_only_and_pretraining_checkpoints_restore_into_classifier(tmp_path):
  config = tiny_config()
  pretrained = BertPretrainer(BertEncoder(config))
  prefix = checkpoints.export_google_checkpoint(pretrained, config, str(tmp_path / "full"))
  classifier = BertClassifier(BertEncoder(config), num_labels=3)
  report = checkpoints.load_google_checkpoint(
      prefix, classifier, allow_missing=("output_weights", "output_bias"),
      allow_unexpected_prefixes=("cls/",))
  assert report["missing_allowed"] == ["output_bias", "output_weights"]
  f = pretraining_features(config)
  np.testing.assert_array_equal(classifier(f)["pooled_output"], pretrained(f)["pooled_output"])
  # An encoder-only export (no cls/ at all) restores into the classifier as well.
  encoder_prefix = checkpoints.export_google_checkpoint(pretrained.encoder, config,
                                                        str(tmp_path / "encoder"))
  classifier2 = BertClassifier(BertEncoder(config), num_labels=3)
  checkpoints.load_google_checkpoint(encoder_prefix, classifier2,
                                     allow_missing=("output_weights", "output_bias"))
  np.testing.assert_array_equal(classifier2(f)["pooled_output"], pretrained(f)["pooled_output"])


def test_mismatches_list_names_and_shapes(tmp_path):
  config = tiny_config()
  source = BertPretrainer(BertEncoder(config))
  values = {n: v.numpy() for n, v in checkpoints.google_name_table(source).items()}
  values.pop("bert/pooler/dense/bias")
  values["bert/encoder/layer_9/extra/kernel"] = np.zeros(3, np.float32)
  prefix = _write_tf1_checkpoint(str(tmp_path / "a" / "bert_model.ckpt"), values)
  with pytest.raises(checkpoints.CheckpointMismatchError) as e:
    checkpoints.load_google_checkpoint(prefix, BertPretrainer(BertEncoder(config)))
  message = str(e.value)
  assert "1 missing, 1 unexpected" in message
  assert "bert/pooler/dense/bias" in message and "layer_9/extra/kernel" in message

  bigger = tiny_config(intermediate_size=40)
  prefix = checkpoints.export_google_checkpoint(BertPretrainer(BertEncoder(bigger)), bigger,
                                                str(tmp_path / "b"))
  target = BertPretrainer(BertEncoder(config))
  before = [v.numpy() for v in target.trainable_variables]
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match=r"layer_0/intermediate/dense/kernel: checkpoint \[32, 40\] vs model "
                           r"\[32, 37\]"):
    checkpoints.load_google_checkpoint(prefix, target)
  # A refused checkpoint leaves the model untouched.
  for a, b in zip(before, target.trainable_variables):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(FileNotFoundError, match="no checkpoint here"):
    checkpoints.load_google_checkpoint(str(tmp_path / "nope" / "bert_model.ckpt"), target)


def test_tf2_checkpoint_save_restore_identical_outputs(tmp_path):
  config = tiny_config()
  model = BertPretrainer(BertEncoder(config))
  path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
  restored = BertPretrainer(BertEncoder(config))
  tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
  f = pretraining_features(config)
  np.testing.assert_array_equal(model(f)["mlm_logits"], restored(f)["mlm_logits"])
  np.testing.assert_array_equal(model(f)["nsp_logits"], restored(f)["nsp_logits"])


def test_restore_weights_puts_a_google_pretraining_checkpoint_into_a_classifier(tmp_path):
  config = tiny_config()
  pretrained = BertPretrainer(BertEncoder(config))
  prefix = checkpoints.export_google_checkpoint(pretrained, config, str(tmp_path))
  classifier = BertClassifier(BertEncoder(config), num_labels=3)
  assert checkpoints.restore_weights(prefix, classifier) == "google"
  f = pretraining_features(config)
  np.testing.assert_array_equal(classifier(f)["pooled_output"], pretrained(f)["pooled_output"])


def test_squad_head_has_google_names_and_round_trips(tmp_path):
  from bert_tf.modeling.squad import BertSpanLabeler
  config = tiny_config()
  model = BertSpanLabeler(BertEncoder(config))
  table = checkpoints.google_name_table(model)
  squad_names = ["cls/squad/output_weights", "cls/squad/output_bias"]
  assert sorted(table) == sorted(_google_table_names(config.num_hidden_layers) + squad_names)
  assert {v.ref() for v in table.values()} == {v.ref() for v in model.variables}
  assert table["cls/squad/output_weights"].shape == (2, config.hidden_size)
  assert table["cls/squad/output_bias"].shape == (2,)
  # A google-format SQuAD checkpoint, written from google's names alone, loads in full.
  rng = np.random.default_rng(0)
  values = {n: rng.normal(size=v.shape).astype(np.float32) for n, v in table.items()}
  values["global_step"] = np.int64(7)
  prefix = _write_tf1_checkpoint(str(tmp_path / "squad" / "model.ckpt"), values)
  assert checkpoints.restore_weights(prefix, model) == "google"
  np.testing.assert_array_equal(model.span_head.output_weights.numpy(),
                                values["cls/squad/output_weights"])
  # Export, then load into a fresh model: identical logits.
  exported = checkpoints.export_google_checkpoint(model, config, str(tmp_path / "export"))
  assert checkpoints.checkpoint_values(exported)["cls/squad/output_bias"].shape == (2,)
  other = BertSpanLabeler(BertEncoder(config))
  report = checkpoints.load_google_checkpoint(exported, other)
  assert not report["missing_allowed"] and len(report["loaded"]) == len(table)
  f = pretraining_features(config)
  np.testing.assert_array_equal(model(f)["logits"], other(f)["logits"])
  # A SQuAD run's own checkpoint (the engine's Checkpoint(model=...)) restores in full.
  run_prefix = tf.train.Checkpoint(model=model).save(str(tmp_path / "run" / "ckpt"))
  again = BertSpanLabeler(BertEncoder(config))
  assert checkpoints.restore_weights(run_prefix, again) == "squad"
  np.testing.assert_array_equal(model(f)["logits"], again(f)["logits"])
  # A pretraining checkpoint (cls/predictions, cls/seq_relationship) gives the encoder only.
  pretrained = BertPretrainer(BertEncoder(config))
  pre_prefix = checkpoints.export_google_checkpoint(pretrained, config, str(tmp_path / "pre"))
  fresh = BertSpanLabeler(BertEncoder(config))
  head = fresh.span_head.output_weights.numpy()
  assert checkpoints.restore_weights(pre_prefix, fresh) == "google"
  np.testing.assert_array_equal(fresh(f)["sequence_output"], pretrained(f)["sequence_output"])
  np.testing.assert_array_equal(fresh.span_head.output_weights.numpy(), head)
