"""Hugging Face folders in: the name table, config.json mapping and refusals, all-or-nothing
loading, and restore_weights / BertConfig.from_json_file taking an HF folder."""
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from bert_tf import checkpoints, features
from bert_tf.configs import BertConfig, FinetuneConfig
from bert_tf.data import classifier as data
from bert_tf.interop import hf
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import tiny_config
from bert_tf.training.classification import ClassificationTask

pytestmark = pytest.mark.unit


def _hf_encoder_names(num_layers, prefix):
  """transformers' BertModel state-dict keys, spelled out independently of bert_tf.interop."""
  names = [f"embeddings.{e}.weight" for e in ("word_embeddings", "position_embeddings",
                                                "token_type_embeddings")]
  names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
            "pooler.dense.weight", "pooler.dense.bias"]
  for i in range(num_layers):
    for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                 "attention.output.dense", "intermediate.dense", "output.dense",
                 "attention.output.LayerNorm", "output.LayerNorm"):
      names += [f"encoder.layer.{i}.{part}.weight", f"encoder.layer.{i}.{part}.bias"]
  return {prefix + n for n in names}


def test_name_table_matches_transformers_state_dict_keys():
  encoder = BertEncoder(tiny_config())
  assert set(hf.hf_name_table(encoder, "")) == _hf_encoder_names(2, "")
  pretrainer = BertPretrainer(BertEncoder(tiny_config()))
  assert set(hf.hf_name_table(pretrainer)) == _hf_encoder_names(2, "bert.") | {
      "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
      "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
      "cls.predictions.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
  classifier = BertClassifier(BertEncoder(tiny_config()), 3)
  table = hf.hf_name_table(classifier)
  assert set(table) == _hf_encoder_names(2, "bert.") | {"classifier.weight", "classifier.bias"}
  # Dense kernels are [out, in] in PyTorch: transposed; the heads' output_weights are not.
  assert table["bert.encoder.layer.1.intermediate.dense.weight"][1]
  assert not table["classifier.weight"][1]
  assert table["classifier.weight"][0] is classifier.classifier.output_weights


def _hf_config(**overrides):
  values = {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
            "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 37, "vocab_size": 99, "max_position_embeddings": 64,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02, "pad_token_id": 0, "transformers_version": "4.8.2",
            "use_cache": True, "gradient_checkpointing": False}
  values.update(overrides)
  return values


def _write(path, values):
  path.write_text(json.dumps(values))
  return path


def test_hf_config_json_maps_to_bert_config(tmp_path):
  config = BertConfig.from_json_file(_write(tmp_path / "config.json", _hf_config()))
  assert config == tiny_config(hidden_act="gelu_exact", hidden_dropout_prob=0.1,
                               attention_probs_dropout_prob=0.1)
  # A folder: its config.json (google's bert_config.json first when both are there).
  assert BertConfig.from_json_file(tmp_path) == config
  for hf_act, ours in (("gelu_new", "gelu"), ("gelu_pytorch_tanh", "gelu"), ("relu", "relu")):
    _write(tmp_path / "config.json", _hf_config(hidden_act=hf_act))
    assert BertConfig.from_json_file(tmp_path).hidden_act == ours


@pytest.mark.parametrize("key,value", [
    ("position_embedding_type", "relative_key"), ("model_type", "roberta"),
    ("architectures", ["RobertaModel"]), ("layer_norm_eps", 1e-5), ("hidden_act", "silu"),
    ("is_decoder", True)])
def test_hf_config_refuses_what_bert_here_cannot_compute(tmp_path, key, value):
  with pytest.raises(ValueError, match=f"'{key}'"):
    BertConfig.from_json_file(_write(tmp_path / "config.json", _hf_config(**{key: value})))


def _hf_folder(model, config, path):
  path.mkdir(parents=True, exist_ok=True)
  hf.save_hf_weights(model, str(path / "model.safetensors"))
  hf.write_config(config, str(path), model)
  return path


def test_restore_weights_takes_an_hf_folder_or_its_safetensors_file(tmp_path):
  config = tiny_config()
  source = BertPretrainer(BertEncoder(config, seed=1))
  folder = _hf_folder(source, config, tmp_path / "hf")
  features = pretraining_features(config, seed=3)
  want = source(features)
  for path in (folder, folder / "model.safetensors"):
    target = BertPretrainer(BertEncoder(config, seed=2))
    assert checkpoints.restore_weights(str(path), target) == "hf"
    got = target(features)
    for key in ("sequence_output", "pooled_output", "mlm_logits", "nsp_logits"):
      np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())
  # Into a classifier: cls.* is not wanted, the classifier head keeps its initial values.
  classifier = BertClassifier(BertEncoder(config, seed=2), 3)
  head = classifier.classifier.output_weights.numpy()
  assert checkpoints.restore_weights(str(folder), classifier) == "hf"
  np.testing.assert_array_equal(classifier.classifier.output_weights.numpy(), head)
  np.testing.assert_array_equal(classifier.encoder.pooler.kernel.numpy(),
                                source.encoder.pooler.kernel.numpy())


def test_extract_features_encoder_takes_an_hf_folder(tmp_path):
  config = tiny_config()
  source = BertClassifier(BertEncoder(config, seed=1), 2)
  folder = _hf_folder(source, config, tmp_path / "hf")  # classifier.* is ignored
  encoder = features.load_encoder(BertConfig.from_json_file(folder), str(folder))
  for a, b in zip(source.encoder.weights, encoder.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bare_bertmodel_file_loads_with_old_gamma_beta_names(tmp_path):
  config = tiny_config()
  source = BertEncoder(config, seed=1)
  hf.save_hf_weights(source, str(tmp_path / "model.safetensors"))  # no "bert." prefix
  tensors = load_file(str(tmp_path / "model.safetensors"))
  assert "embeddings.word_embeddings.weight" in tensors
  old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                  "LayerNorm.beta"): v
         for k, v in tensors.items()}
  old["embeddings.position_ids"] = np.arange(64, dtype=np.int64)[None]
  save_file(old, str(tmp_path / "old.safetensors"))
  target = BertEncoder(config, seed=2)
  checkpoints.restore_weights(str(tmp_path / "old.safetensors"), target)
  for a, b in zip(source.weights, target.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_mismatch_lists_every_problem_and_assigns_nothing(tmp_path):
  source = BertEncoder(tiny_config(), seed=1)
  hf.save_hf_weights(source, str(tmp_path / "model.safetensors"))
  tensors = load_file(str(tmp_path / "model.safetensors"))
  del tensors["encoder.layer.1.output.dense.bias"]
  tensors["encoder.layer.2.output.dense.bias"] = np.zeros([32], np.float32)
  save_file(tensors, str(tmp_path / "model.safetensors"))
  target = BertEncoder(tiny_config(intermediate_size=38), seed=2)
  before = [w.numpy() for w in target.weights]
  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    checkpoints.restore_weights(str(tmp_path), target)
  message = str(error.value)
  assert "1 missing, 1 unexpected, 6 mis-shaped; nothing was assigned" in message
  assert "encoder.layer.1.output.dense.bias" in message
  assert "encoder.layer.2.output.dense.bias" in message
  assert ("encoder.layer.0.intermediate.dense.weight: file [37, 32] vs model [32, 38] "
          "(transposed)") in message
  for value, weight in zip(before, target.weights):
    np.testing.assert_array_equal(value, weight.numpy())


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_files_load_as_float32(tmp_path, dtype):
  import ml_dtypes  # noqa: F401  (numpy's bfloat16, as safetensors reads it; TF depends on it)
  source = BertEncoder(tiny_config(), seed=1)
  hf.save_hf_weights(source, str(tmp_path / "model.safetensors"))
  written = load_file(str(tmp_path / "model.safetensors"))
  half = {k: v.astype(np.dtype(dtype)) for k, v in written.items()}
  save_file(half, str(tmp_path / "model.safetensors"))
  target = BertEncoder(tiny_config(), seed=2)
  checkpoints.restore_weights(str(tmp_path), target)
  table = hf.hf_name_table(target, "")
  for name, value in half.items():
    variable, transposed = table[name]
    assert variable.dtype == "float32"
    want = value.astype(np.float32)
    np.testing.assert_array_equal(variable.numpy(), want.T if transposed else want)


def test_run_classifier_init_from_an_hf_classifier_folder_takes_its_head(tmp_path, caplog):
  """run_classifier's --init_checkpoint: a BertForSequenceClassification folder of this task's
  labels gives the source's predictions (head included); of another number, the encoder."""
  config = tiny_config()
  source = BertClassifier(BertEncoder(config, seed=1), 2)
  folder = str(_hf_folder(source, config, tmp_path / "hf"))
  inputs = {k: v for k, v in pretraining_features(config, seed=3).items()
            if k in ("input_ids", "input_mask", "segment_ids")}
  task = ClassificationTask(data.make_task("sst2"), FinetuneConfig(output_dir=str(tmp_path)))
  target = BertClassifier(BertEncoder(config, seed=2), 2)
  assert task.init_from(folder, target) == "hf"
  np.testing.assert_array_equal(target(inputs)["logits"].numpy(),
                                source(inputs)["logits"].numpy())
  three = BertClassifier(BertEncoder(config, seed=2), 3)  # MNLI's labels: head [3, 32]
  head = three.classifier.output_weights.numpy()
  task = ClassificationTask(data.make_task("mnli"), FinetuneConfig(output_dir=str(tmp_path)))
  assert task.init_from(folder, three) == "hf"
  np.testing.assert_array_equal(three.classifier.output_weights.numpy(), head)
  np.testing.assert_array_equal(three(inputs)["pooled_output"].numpy(),
                                source(inputs)["pooled_output"].numpy())
  assert "classifier.weight: file [2, 32] vs model [3, 32]" in caplog.text
