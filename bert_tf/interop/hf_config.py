"""Hugging Face ``config.json`` <-> ``BertConfig`` (pure Python: no TensorFlow, no PyTorch).

transformers' ``BertConfig`` has more keys than google's ``bert_config.json``. The ones that
change the computation and that BERT here cannot represent are refused with an error naming the
key; keys about tokens, labels, dtypes and generation do not change the encoder and are ignored.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

# transformers' "gelu" is the exact erf GELU; "gelu_new" and "gelu_pytorch_tanh" are the tanh
# approximation that google's modeling.py computes and calls "gelu".
HF_TO_OURS_ACT = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
                  "gelu_python": "gelu_exact", "relu": "relu", "tanh": "tanh"}
OURS_TO_HF_ACT = {"gelu_exact": "gelu", "gelu": "gelu_new", "relu": "relu", "tanh": "tanh"}

_COPIED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
           "intermediate_size", "hidden_dropout_prob", "attention_probs_dropout_prob",
           "max_position_embeddings", "type_vocab_size", "initializer_range")
# Keys with the only value our encoder computes (a key absent from the file takes
# transformers' default, which is this value).
_REQUIRED_VALUES = {"model_type": "bert", "position_embedding_type": "absolute",
                    "is_decoder": False, "add_cross_attention": False}
_LAYER_NORM_EPS = 1e-12  # every LayerNorm here (google's value)


def is_hf_config(values: Mapping[str, Any]) -> bool:
  """True for a transformers ``config.json`` (google's bert_config.json has none of these)."""
  return any(k in values for k in ("model_type", "architectures", "transformers_version",
                                   "layer_norm_eps"))


def from_hf_dict(values: Mapping[str, Any], source: str = "config.json") -> dict[str, Any]:
  """The ``BertConfig`` fields of a transformers BERT ``config.json``; refuses the rest."""
  for key, wanted in _REQUIRED_VALUES.items():
    if values.get(key, wanted) != wanted:
      raise ValueError(f"{source}: '{key}' is {values[key]!r}; BERT here supports only "
                       f"{wanted!r}")
  archs = [a for a in values.get("architectures") or [] if not a.startswith("Bert")]
  if archs:
    raise ValueError(f"{source}: 'architectures' lists {archs}; only Bert* models load here")
  eps = values.get("layer_norm_eps", _LAYER_NORM_EPS)
  if not math.isclose(eps, _LAYER_NORM_EPS, rel_tol=1e-6):
    raise ValueError(f"{source}: 'layer_norm_eps' is {eps}; BERT here uses {_LAYER_NORM_EPS}")
  act = values.get("hidden_act", "gelu")
  if act not in HF_TO_OURS_ACT:
    raise ValueError(f"{source}: 'hidden_act' is {act!r}; expected one of "
                     f"{sorted(HF_TO_OURS_ACT)}")
  if "vocab_size" not in values:
    raise ValueError(f"{source}: required key 'vocab_size' is missing")
  fields = {k: values[k] for k in _COPIED if k in values}
  fields["hidden_act"] = HF_TO_OURS_ACT[act]
  return fields


# transformers architectures export_model.py reads, and the model kind each becomes.
EXPORTABLE_ARCHITECTURES = ("BertModel", "BertForPreTraining", "BertForMaskedLM",
                            "BertForSequenceClassification", "BertForQuestionAnswering")


def check_exportable(values: Mapping[str, Any], source: str = "config.json") -> None:
  """Refuses an ``architectures`` entry export_model.py has no model for (token
  classification, multiple choice, ...): its heads would be read as another kind's.
  ``--init_checkpoint`` does not call this: any Bert* encoder can start fine-tuning."""
  archs = [a for a in values.get("architectures") or [] if a not in EXPORTABLE_ARCHITECTURES]
  if archs:
    raise ValueError(f"{source}: 'architectures' is {archs}; export_model.py reads only "
                     f"{list(EXPORTABLE_ARCHITECTURES)}")


def to_hf_dict(config, architecture: str = "BertModel",
               label_names: list[str] | None = None) -> dict[str, Any]:
  """A transformers ``config.json`` for ``config`` (a ``BertConfig``)."""
  out = {k: getattr(config, k) for k in _COPIED}
  out.update(architectures=[architecture], model_type="bert",
             hidden_act=OURS_TO_HF_ACT[config.hidden_act], layer_norm_eps=_LAYER_NORM_EPS,
             position_embedding_type="absolute", pad_token_id=0)
  if label_names is not None:
    out["id2label"] = {str(i): name for i, name in enumerate(label_names)}
    out["label2id"] = {name: i for i, name in enumerate(label_names)}
  return out


def label_names(values: Mapping[str, Any]) -> list[str] | None:
  """Label names in id order from ``id2label``, or None when the file has none."""
  id2label = values.get("id2label")
  if not id2label:
    return None
  return [id2label[str(i)] if str(i) in id2label else id2label[i]
          for i in range(len(id2label))]
