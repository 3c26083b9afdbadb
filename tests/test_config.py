"""BertConfig: google's bert_config.json, validation, presets."""
import json

import pytest

from bert_tf import configs
from bert_tf.configs import BertConfig

pytestmark = pytest.mark.unit

# google's released uncased_L-12_H-768_A-12/bert_config.json, key for key.
GOOGLE_BASE_JSON = """{
  "attention_probs_dropout_prob": 0.1,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 768,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 512,
  "num_attention_heads": 12,
  "num_hidden_layers": 12,
  "type_vocab_size": 2,
  "vocab_size": 30522
}"""


def test_google_config_loads_unchanged_and_round_trips(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text(GOOGLE_BASE_JSON)
  config = BertConfig.from_json_file(path)
  assert config == configs.preset("base")
  assert config.to_dict() == json.loads(GOOGLE_BASE_JSON)
  config.to_json_file(tmp_path / "again.json")
  assert BertConfig.from_json_file(tmp_path / "again.json") == config


def test_unknown_key_is_rejected_by_name(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text(json.dumps({**json.loads(GOOGLE_BASE_JSON), "hiden_size": 12}))
  with pytest.raises(ValueError, match=r"hiden_size") as e:
    BertConfig.from_json_file(path)
  assert str(path) in str(e.value)


@pytest.mark.parametrize("key,value", [("num_hidden_layers", "12"), ("hidden_size", 768.0),
                                       ("num_hidden_layers", True), ("hidden_act", 3),
                                       ("hidden_dropout_prob", "0.1")])
def test_wrong_type_is_rejected_by_name(key, value):
  with pytest.raises(ValueError, match=key):
    BertConfig.from_dict({**json.loads(GOOGLE_BASE_JSON), key: value})


@pytest.mark.parametrize("changes,match", [
    ({"hidden_size": 100}, "multiple of"), ({"hidden_act": "swish"}, "hidden_act"),
    ({"hidden_dropout_prob": 1.0}, "hidden_dropout_prob"), ({"vocab_size": 0}, "vocab_size")])
def test_invalid_values_are_rejected(changes, match):
  with pytest.raises(ValueError, match=match):
    BertConfig.from_dict({**json.loads(GOOGLE_BASE_JSON), **changes})


def test_invalid_json_names_file_and_line(tmp_path):
  path = tmp_path / "bert_config.json"
  path.write_text('{\n  "vocab_size": 10,\n  oops\n}')
  with pytest.raises(ValueError, match=r"bert_config.json: not valid JSON \(line 3"):
    BertConfig.from_json_file(path)


def test_presets_cover_google_small_models_base_and_large():
  grid = [k for k in configs.PRESETS if k.startswith("L-")]
  assert len(grid) == 24
  for name in grid:
    c = configs.preset(name)
    assert c.num_attention_heads == c.hidden_size // 64
    assert c.intermediate_size == 4 * c.hidden_size
  expected = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512),
              "base": (12, 768), "large": (24, 1024)}
  for name, (layers, hidden) in expected.items():
    c = configs.preset(name)
    assert (c.num_hidden_layers, c.hidden_size) == (layers, hidden), name
  assert configs.preset("uncased_L-4_H-256_A-4") == configs.preset("mini")
  assert configs.preset("large").num_attention_heads == 16
  with pytest.raises(ValueError, match="unknown BERT preset"):
    configs.preset("huge")
