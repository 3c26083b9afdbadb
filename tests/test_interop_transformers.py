"""transformers reads our exports (optional: needs PyTorch and transformers 4.x, the
``transformers`` extra: ``pip install -e .[transformers]``; skipped with the reason otherwise).

* ``hf``: ``BertModel`` / ``BertForPreTraining`` / ``BertForSequenceClassification``
  ``.from_pretrained`` load with no missing or unexpected keys and compute our outputs.
* ``google``: ``load_tf_weights_in_bert`` (removed in transformers 5) fills ``BertForPreTraining``
  (``cls/`` heads included) from our google export, with the same outputs.
"""
import numpy as np
import pytest

from bert_tf.interop import export
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import tiny_config
from test_export import write_vocab

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e "
                            ".[transformers] for the transformers-side checks)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed")

pytestmark = pytest.mark.unit

ARCH = {"encoder": "BertModel", "pretraining": "BertForPreTraining",
        "classifier": "BertForSequenceClassification", "squad": "BertForQuestionAnswering"}


def _randomized(kind, config, tokens, labels=None):
  """A model whose every weight is random (no zero bias or unit LayerNorm scale to match a
  fresh PyTorch model by chance)."""
  model = export.build(kind, config, 3)
  rng = np.random.default_rng(0)
  for variable in model.weights:
    if variable.dtype == "float32":
      variable.assign(0.1 * rng.standard_normal(variable.shape).astype(np.float32))
  return export.Source(model, config, tokens, True, labels)


def _ours_and_theirs(source, features, theirs):
  ours = source.model(features)
  with torch.no_grad():
    out = theirs(input_ids=torch.tensor(features["input_ids"].numpy(), dtype=torch.long),
                 attention_mask=torch.tensor(features["input_mask"].numpy(), dtype=torch.long),
                 token_type_ids=torch.tensor(features["segment_ids"].numpy(), dtype=torch.long),
                 output_hidden_states=True)
  mask = features["input_mask"].numpy().astype(bool)
  diffs = {"sequence": np.abs(out.hidden_states[-1].numpy() - ours["sequence_output"].numpy())[
      mask].max()}
  if source.kind == "pretraining":
    positions = features["masked_lm_positions"].numpy()
    theirs_mlm = np.take_along_axis(out.prediction_logits.numpy(), positions[..., None], 1)
    diffs["mlm"] = np.abs(theirs_mlm - ours["mlm_logits"].numpy()).max()
    diffs["nsp"] = np.abs(out.seq_relationship_logits.numpy() - ours["nsp_logits"].numpy()).max()
  elif source.kind == "classifier":
    diffs["logits"] = np.abs(out.logits.numpy() - ours["logits"].numpy()).max()
  elif source.kind == "squad":
    for key in ("start_logits", "end_logits"):
      diffs[key] = np.abs(getattr(out, key).numpy() - ours[key].numpy())[mask].max()
  else:
    diffs["pooled"] = np.abs(out.pooler_output.numpy() - ours["pooled_output"].numpy()).max()
  return diffs


@pytest.mark.parametrize("kind", ["encoder", "pretraining", "classifier", "squad"])
@pytest.mark.parametrize("act", ["gelu", "gelu_exact"])
def test_transformers_from_pretrained_loads_our_hf_export(tmp_path, kind, act):
  config = tiny_config(hidden_act=act)
  source = _randomized(kind, config, write_vocab(tmp_path / "vocab.txt"),
                      ["a", "b", "c"] if kind == "classifier" else None)
  export.export(source, "hf", str(tmp_path / "hf"))
  cls = getattr(transformers, ARCH[kind])
  theirs, info = cls.from_pretrained(str(tmp_path / "hf"), output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info
  assert not info["mismatched_keys"], info
  theirs.eval()
  if kind == "classifier":
    assert theirs.config.id2label == {0: "a", 1: "b", 2: "c"}
  diffs = _ours_and_theirs(source, pretraining_features(config, seed=4), theirs)
  print(kind, act, {k: f"{v:.1e}" for k, v in diffs.items()})
  assert max(diffs.values()) <= 1e-5, diffs


def test_transformers_load_tf_weights_in_bert_reads_our_google_export(tmp_path):
  config = tiny_config()
  source = _randomized("pretraining", config, write_vocab(tmp_path / "vocab.txt"))
  export.export(source, "google", str(tmp_path / "google"))
  hf_config = transformers.BertConfig.from_json_file(str(tmp_path / "google" /
                                                         "bert_config.json"))
  hf_config.hidden_act = "gelu_new"  # google's "gelu" is the tanh form; transformers' is erf
  theirs = transformers.BertForPreTraining(hf_config)
  before = {k: v.clone() for k, v in theirs.state_dict().items()}
  transformers.load_tf_weights_in_bert(theirs, hf_config,
                                       str(tmp_path / "google" / "bert_model.ckpt"))
  changed = [k for k, v in theirs.state_dict().items() if not torch.equal(v, before[k])]
  # Every tensor was read (the tied decoder shares the embeddings' and the bias' storage).
  assert set(before) - set(changed) <= {"bert.embeddings.position_ids"}  # a buffer
  theirs.eval()
  diffs = _ours_and_theirs(source, pretraining_features(config, seed=4), theirs)
  print({k: f"{v:.1e}" for k, v in diffs.items()})
  assert max(diffs.values()) <= 1e-5, diffs
