"""export_model.py's library: round trips ours -> google -> ours, ours -> hf -> ours and
HF -> ours -> HF, bitwise; kinds found from the weights; config and vocab beside the weights;
no overwriting unless asked."""
import json

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from bert_tf import checkpoints, precision
from bert_tf.configs import ClassifierInputConfig, save_resolved_config
from bert_tf.interop import export
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import VOCAB, tiny_config
from bert_tf.vocab import RESERVED_TOKENS

pytestmark = pytest.mark.unit

NLI = ["contradiction", "entailment", "neutral"]  # google's XNLI labels, in its order


def write_vocab(path, tokens=None):
  tokens = tokens or list(RESERVED_TOKENS) + [f"w{i}" for i in range(VOCAB - len(RESERVED_TOKENS))]
  path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
  return tokens


def our_run_dir(path, kind, dtype="fp32", seed=1, config=None, tokens=None):
  """A run directory as the engine leaves it: run_config.json and ckpt-N written by a
  CheckpointManager over tf.train.Checkpoint(model=..., step counter)."""
  config = config or tiny_config()
  with precision.policy_scope(dtype):
    encoder = BertEncoder(config, seed=seed)
    model = BertClassifier(encoder, 3) if kind == "classifier" else BertPretrainer(encoder)
  path.mkdir(parents=True)
  tokens = write_vocab(path / "vocab.txt", tokens)
  data = ClassifierInputConfig(task_name="xnli", data_dir=str(path), vocab_file=str(
      path / "vocab.txt"), do_lower_case=True) if kind == "classifier" else {}
  save_resolved_config(str(path), bert_config=config, data=data)
  step = tf.Variable(7, dtype=tf.int64)
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model, global_step=step),
                                       str(path), max_to_keep=1, checkpoint_name="ckpt")
  manager.save(checkpoint_number=7)
  return model, tokens


def _weights(model):
  return {n: v.numpy() for n, v in checkpoints.google_name_table(model).items()}


def assert_same_weights(a, b):
  wa, wb = _weights(a), _weights(b)
  assert sorted(wa) == sorted(wb)
  for name in wa:
    np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


@pytest.mark.parametrize("kind", ["pretraining", "classifier"])
def test_ours_to_google_to_ours_and_to_hf_to_ours_bitwise(tmp_path, kind):
  model, tokens = our_run_dir(tmp_path / "run", kind)
  # A pretraining run records no vocabulary (unless it masked dynamically): passed here.
  vocab = None if kind == "classifier" else str(tmp_path / "run" / "vocab.txt")
  source = export.load_source(str(tmp_path / "run"), vocab_file=vocab)
  assert source.kind == kind
  assert_same_weights(source.model, model)
  written = export.export(source, "google", str(tmp_path / "google"))
  assert sorted(p.name for p in (tmp_path / "google").iterdir() if "ckpt" not in p.name) == [
      "bert_config.json", "vocab.txt"]
  assert all(tf.io.gfile.exists(p) for p in written)
  again = export.load_source(str(tmp_path / "google" / "bert_model.ckpt"))
  assert again.kind == kind and again.vocab == tokens and again.config == source.config
  assert_same_weights(again.model, model)
  export.export(source, "hf", str(tmp_path / "hf"))
  from_hf = export.load_source(str(tmp_path / "hf"))
  assert from_hf.kind == kind and from_hf.vocab == tokens and from_hf.config == source.config
  assert_same_weights(from_hf.model, model)
  if kind == "classifier":
    assert source.label_names == from_hf.label_names == NLI
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"] == {
        "0": "contradiction", "1": "entailment", "2": "neutral"}
    assert from_hf.do_lower_case is True


def test_fp16_trained_classifier_loads_float32_without_dropout(tmp_path):
  config = tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
  model, _ = our_run_dir(tmp_path / "run", "classifier", dtype="fp16", config=config)
  source = export.load_source(str(tmp_path / "run"))
  assert source.model.encoder.blocks[0].compute_dtype == "float32"
  assert_same_weights(source.model, model)
  assert source.config == config  # what an export writes
  inference = source.model.encoder.bert_config
  assert (inference.hidden_dropout_prob, inference.attention_probs_dropout_prob) == (0, 0)
  assert source.model.classifier.dropout_rate == 0 and source.model.encoder.recompute == "none"


def _random_hf_folder(path, architecture, heads):
  """An HF folder written without bert_tf: transformers' names and layouts ([out, in])."""
  rng = np.random.default_rng(0)
  h, inner = 32, 37
  shapes = {"embeddings.word_embeddings.weight": [VOCAB, h],
            "embeddings.position_embeddings.weight": [64, h],
            "embeddings.token_type_embeddings.weight": [2, h],
            "embeddings.LayerNorm.weight": [h], "embeddings.LayerNorm.bias": [h],
            "pooler.dense.weight": [h, h], "pooler.dense.bias": [h]}
  for i in range(2):
    for part, (out, inp) in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                             "attention.self.value": (h, h), "attention.output.dense": (h, h),
                             "intermediate.dense": (inner, h), "output.dense": (h, inner)}.items():
      shapes[f"encoder.layer.{i}.{part}.weight"] = [out, inp]
      shapes[f"encoder.layer.{i}.{part}.bias"] = [out]
    for part in ("attention.output.LayerNorm", "output.LayerNorm"):
      shapes[f"encoder.layer.{i}.{part}.weight"] = [h]
      shapes[f"encoder.layer.{i}.{part}.bias"] = [h]
  prefix = "" if architecture == "BertModel" else "bert."
  if architecture in ("BertForQuestionAnswering", "BertForMaskedLM"):  # built without a pooler
    shapes = {k: s for k, s in shapes.items() if not k.startswith("pooler.")}
  tensors = {prefix + k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  tensors.update({k: rng.standard_normal(s).astype(np.float32) for k, s in heads.items()})
  path.mkdir()
  save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
  config = {"architectures": [architecture], "model_type": "bert", "hidden_act": "gelu",
            "hidden_size": h, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": inner, "vocab_size": VOCAB, "max_position_embeddings": 64,
            "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02,
            "id2label": {"0": "neg", "1": "pos"}}
  (path / "config.json").write_text(json.dumps(config))
  write_vocab(path / "vocab.txt")
  return tensors, config


@pytest.mark.parametrize("architecture,heads", [
    ("BertModel", {}),
    ("BertForPreTraining", {"cls.predictions.transform.dense.weight": [32, 32],
                            "cls.predictions.transform.dense.bias": [32],
                            "cls.predictions.transform.LayerNorm.weight": [32],
                            "cls.predictions.transform.LayerNorm.bias": [32],
                            "cls.predictions.bias": [VOCAB], "cls.seq_relationship.weight": [2, 32],
                            "cls.seq_relationship.bias": [2]}),
    ("BertForSequenceClassification", {"classifier.weight": [2, 32], "classifier.bias": [2]}),
    ("BertForQuestionAnswering", {"qa_outputs.weight": [2, 32], "qa_outputs.bias": [2]})])
def test_hf_to_ours_to_hf_bitwise(tmp_path, architecture, heads):
  tensors, config = _random_hf_folder(tmp_path / "in", architecture, heads)
  source = export.load_source(str(tmp_path / "in"))
  assert source.kind == {"BertModel": "encoder", "BertForPreTraining": "pretraining",
                         "BertForSequenceClassification": "classifier",
                         "BertForQuestionAnswering": "squad"}[architecture]
  export.export(source, "hf", str(tmp_path / "out"))
  out = load_file(str(tmp_path / "out" / "model.safetensors"))
  assert sorted(out) == sorted(tensors)
  for name, value in tensors.items():
    assert out[name].dtype == value.dtype
    np.testing.assert_array_equal(out[name], value, err_msg=name)
  written = json.loads((tmp_path / "out" / "config.json").read_text())
  for key, value in config.items():
    if key != "id2label" or architecture == "BertForSequenceClassification":
      assert written[key] == value, key
  assert (tmp_path / "out" / "vocab.txt").read_text() == (tmp_path / "in" / "vocab.txt").read_text()


def test_masked_lm_folder_loads_as_pretraining_with_a_warning(tmp_path, caplog):
  """BertForMaskedLM: cls.predictions but no NSP head and no pooler."""
  mlm = {"cls.predictions.transform.dense.weight": [32, 32],
         "cls.predictions.transform.dense.bias": [32],
         "cls.predictions.transform.LayerNorm.weight": [32],
         "cls.predictions.transform.LayerNorm.bias": [32], "cls.predictions.bias": [VOCAB]}
  tensors, _ = _random_hf_folder(tmp_path / "in", "BertForMaskedLM", mlm)
  source = export.load_source(str(tmp_path / "in"))
  assert source.kind == "pretraining"
  assert "bert.pooler.dense.weight" in caplog.text and "cls.seq_relationship.weight" in caplog.text
  np.testing.assert_array_equal(source.model.masked_lm.output_bias.numpy(),
                                tensors["cls.predictions.bias"])
  np.testing.assert_array_equal(source.model.masked_lm.transform.kernel.numpy(),
                                tensors["cls.predictions.transform.dense.weight"].T)


def test_export_refuses_to_overwrite_unless_asked(tmp_path):
  our_run_dir(tmp_path / "run", "classifier")
  source = export.load_source(str(tmp_path / "run"))
  for fmt in ("google", "hf"):
    export.export(source, fmt, str(tmp_path / fmt))
    with pytest.raises(FileExistsError, match="--overwrite"):
      export.export(source, fmt, str(tmp_path / fmt))
    export.export(source, fmt, str(tmp_path / fmt), overwrite=True)


def test_exact_gelu_goes_to_google_format_with_a_warning(tmp_path, caplog):
  config = tiny_config(hidden_act="gelu_exact")
  model = BertEncoder(config)
  tokens = write_vocab(tmp_path / "vocab.txt")
  source = export.Source(model, config, tokens, True, None)
  export.export(source, "google", str(tmp_path / "google"))
  assert "has no google name" in caplog.text
  assert json.loads((tmp_path / "google" / "bert_config.json").read_text())[
      "hidden_act"] == "gelu_exact"


def test_serving_module_of_a_squad_model_returns_span_logits(tmp_path):
  """In process (the fresh-process SavedModel checks are in test_export_serving.py)."""
  from bert_tf.interop import serving
  config = tiny_config()
  tokens = write_vocab(tmp_path / "vocab.txt")
  source = export.Source(export.build("squad", config), config, tokens, True, None)
  module = serving.ServingModule(source, 16, str(tmp_path / "vocab.txt"))
  features = pretraining_features(config, seed=2)
  ids, mask, segments = (features[k] for k in ("input_ids", "input_mask", "segment_ids"))
  got = module.token_ids(ids, mask, segments)
  want = source.model({"input_ids": ids, "input_mask": mask, "segment_ids": segments})
  assert sorted(got) == ["end_logits", "pooled_output", "sequence_output", "start_logits"]
  for key in got:
    np.testing.assert_allclose(got[key].numpy(), want[key].numpy(), atol=1e-6, rtol=0)


def test_token_classification_folder_is_refused_naming_the_key(tmp_path):
  _random_hf_folder(tmp_path / "in", "BertForTokenClassification",
                    {"classifier.weight": [2, 32], "classifier.bias": [2]})
  with pytest.raises(ValueError, match="'architectures' is \\['BertForTokenClassification'\\];"
                     ".*BertForSequenceClassification"):
    export.load_source(str(tmp_path / "in"))


def test_label_names_must_match_the_classifier(tmp_path):
  our_run_dir(tmp_path / "run", "classifier")
  with pytest.raises(ValueError, match="--label_names gives 2 names .* has 3 labels"):
    export.load_source(str(tmp_path / "run"), label_names=["a", "b"])


def test_failed_savedmodel_export_writes_nothing_then_reruns_and_refuses_overwrite(tmp_path):
  config = tiny_config()
  tokens = write_vocab(tmp_path / "vocab.txt")
  source = export.Source(export.build("encoder", config), config, tokens, None, None)
  out = str(tmp_path / "sm")
  with pytest.raises(ValueError, match="casing"):  # google folders do not record it
    export.export(source, "savedmodel", out, max_seq_length=16)
  assert not tf.io.gfile.exists(out)
  source.do_lower_case = True
  with pytest.raises(ValueError, match="--max_seq_length 999"):
    export.export(source, "savedmodel", out, max_seq_length=999)
  assert not tf.io.gfile.exists(out)
  export.export(source, "savedmodel", out, max_seq_length=16)
  with pytest.raises(FileExistsError, match="--overwrite"):
    export.export(source, "savedmodel", out, max_seq_length=16)


def test_serving_module_of_a_one_label_classifier_returns_a_score(tmp_path):
  from bert_tf.interop import serving
  config = tiny_config()
  tokens = write_vocab(tmp_path / "vocab.txt")
  source = export.Source(export.build("classifier", config, 1), config, tokens, True, ["score"])
  module = serving.ServingModule(source, 16, str(tmp_path / "vocab.txt"))
  features = pretraining_features(config, seed=2)
  ids, mask, segments = (features[k] for k in ("input_ids", "input_mask", "segment_ids"))
  got = module.token_ids(ids, mask, segments)
  want = source.model({"input_ids": ids, "input_mask": mask, "segment_ids": segments})
  assert sorted(got) == ["logits", "score"]
  np.testing.assert_allclose(got["score"].numpy(), want["logits"].numpy()[:, 0], atol=1e-6)


def test_encoder_export_reads_the_config_beside_it(tmp_path):
  """<pretraining output_dir>/encoder holds bert_config.json; without it the error names
  --bert_config_file."""
  config = tiny_config()
  folder = tmp_path / "encoder"
  folder.mkdir()
  encoder = BertEncoder(config, seed=3)
  tf.train.Checkpoint(encoder=encoder).write(str(folder / "encoder"))
  config.to_json_file(str(folder / "bert_config.json"))
  source = export.load_source(str(folder / "encoder"))
  assert source.kind == "encoder"
  np.testing.assert_array_equal(source.model.weights[0].numpy(), encoder.weights[0].numpy())
  (folder / "bert_config.json").unlink()
  with pytest.raises(ValueError, match="--bert_config_file"):
    export.load_source(str(folder / "encoder"))


def test_tagging_run_is_refused_naming_the_exportable_kinds(tmp_path):
  from bert_tf.modeling.tagging import BertTagger
  config = tiny_config()
  (tmp_path / "run").mkdir()
  save_resolved_config(str(tmp_path / "run"), bert_config=config, data={})
  model = BertTagger(BertEncoder(config), 5)
  tf.train.Checkpoint(model=model).write(str(tmp_path / "run" / "ckpt-1"))
  with pytest.raises(ValueError, match="not exportable yet.*'classifier'"):
    export.load_source(str(tmp_path / "run" / "ckpt-1"))
