"""The encoder's configuration: google's ``bert_config.json`` as a frozen dataclass, plus presets."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

# Activations accepted for ``hidden_act``. ``gelu`` is google's, the tanh approximation that
# google's modeling.py computes; ``gelu_exact`` is the erf form under its own name.
ACTIVATIONS = ("gelu", "gelu_exact", "relu", "tanh")


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyper-parameters of a BERT encoder, with google's ``bert_config.json`` key names.

  Attributes mirror google's file one to one, so ``BertConfig.from_json_file(path)`` reads
  a released ``bert_config.json`` unchanged and ``to_json_file`` writes one google's code reads.
  """
  vocab_size: int
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  initializer_range: float = 0.02

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      _check_type(field.name, value, field.type)
    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "max_position_embeddings", "type_vocab_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"BertConfig: '{name}' must be > 0, got {getattr(self, name)}")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f"BertConfig: 'hidden_size' ({self.hidden_size}) must be a multiple of "
          f"'num_attention_heads' ({self.num_attention_heads})")
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(
          f"BertConfig: 'hidden_act' is {self.hidden_act!r}; expected one of {ACTIVATIONS}")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise ValueError(f"BertConfig: '{name}' must be in [0, 1), got {getattr(self, name)}")
    if self.initializer_range <= 0:
      raise ValueError(f"BertConfig: 'initializer_range' must be > 0, got {self.initializer_range}")

  @property
  def head_size(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def from_dict(cls, values: Mapping[str, Any], source: str = "config") -> "BertConfig":
    """Builds a config from a mapping; unknown keys and wrong types raise naming the key."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(
          f"{source}: unknown BertConfig key(s) {unknown}; expected keys are {sorted(known)}")
    if "vocab_size" not in values:
      raise ValueError(f"{source}: required key 'vocab_size' is missing")
    try:
      return cls(**values)
    except (TypeError, ValueError) as e:
      raise ValueError(f"{source}: {e}") from None

  @classmethod
  def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
    """Reads google's ``bert_config.json`` or a Hugging Face ``config.json`` (mapped by
    ``bert_tf.interop.hf_config``), or the one of the two that a folder holds."""
    import tensorflow as tf  # gfile reads local paths and gs:// alike.
    path = os.fspath(path)
    if tf.io.gfile.isdir(path):
      found = [os.path.join(path, n) for n in ("bert_config.json", "config.json")
               if tf.io.gfile.exists(os.path.join(path, n))]
      if not found:
        raise FileNotFoundError(f"{path}: folder holds neither bert_config.json nor config.json")
      path = found[0]
    with tf.io.gfile.GFile(path, "r") as f:
      text = f.read()
    try:
      values = json.loads(text)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}") from None
    if not isinstance(values, dict):
      raise ValueError(f"{path}: expected a JSON object of BertConfig keys, got {type(values).__name__}")
    from bert_tf.interop import hf_config  # pure Python
    if hf_config.is_hf_config(values):
      values = hf_config.from_hf_dict(values, source=path)
    return cls.from_dict(values, source=path)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  def to_json_string(self) -> str:
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

  def to_json_file(self, path: str | os.PathLike) -> None:
    import tensorflow as tf
    with tf.io.gfile.GFile(os.fspath(path), "w") as f:
      f.write(self.to_json_string())

  def replace(self, **changes) -> "BertConfig":
    return dataclasses.replace(self, **changes)


def _check_type(name: str, value: Any, annotation: str) -> None:
  # Annotations are strings under `from __future__ import annotations`.
  expected = {"int": (int,), "float": (int, float), "str": (str,)}[annotation]
  # bool is an int subclass; "num_hidden_layers": true is a mistake, not 1.
  if isinstance(value, bool) or not isinstance(value, expected):
    raise TypeError(
        f"BertConfig key '{name}' must be {annotation}, got {type(value).__name__} {value!r}")


# google's 24 smaller BERT models (Turc et al., 2019): L layers x H hidden, H/64 heads, 4H inner.
_SMALL_NAMES = {(2, 128): "tiny", (4, 256): "mini", (4, 512): "small", (8, 512): "medium"}


def _build_presets() -> dict[str, dict[str, int]]:
  presets = {}
  for layers in (2, 4, 6, 8, 10, 12):
    for hidden in (128, 256, 512, 768):
      shape = dict(num_hidden_layers=layers, hidden_size=hidden,
                   num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
      presets[f"L-{layers}_H-{hidden}_A-{hidden // 64}"] = shape
      if (layers, hidden) in _SMALL_NAMES:
        presets[_SMALL_NAMES[(layers, hidden)]] = shape
  presets["base"] = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                         intermediate_size=3072)
  presets["large"] = dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
                          intermediate_size=4096)
  return presets


PRESETS: dict[str, dict[str, int]] = _build_presets()


def preset(name: str, vocab_size: int = 30522, **overrides) -> BertConfig:
  """Returns a preset config: 'tiny', 'mini', 'small', 'medium', 'base', 'large' or 'L-4_H-256_A-4'.

  The ``bert_`` prefix and google's ``uncased_``/``cased_`` directory prefixes are accepted, so
  ``preset("uncased_L-12_H-768_A-12")`` is BERT-Base.
  """
  key = name.lower()
  for prefix in ("uncased_", "cased_", "bert_", "bert-"):
    if key.startswith(prefix):
      key = key[len(prefix):]
  key = key.replace("l-", "L-").replace("_h-", "_H-").replace("_a-", "_A-")
  if key not in PRESETS:
    raise ValueError(f"unknown BERT preset {name!r}; known presets: {sorted(PRESETS)}")
  return BertConfig(vocab_size=vocab_size, **{**PRESETS[key], **overrides})
