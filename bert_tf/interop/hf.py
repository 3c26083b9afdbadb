"""Hugging Face BERT folders (``model.safetensors`` + ``config.json``) <-> our variables.

The name table is derived, one rule per kind of name, from google's explicit table
(``checkpoints.google_name_table``): both formats name the same tensors of the same TF1/PyTorch
module tree, so spelling the HF names out a second time would only be a second place to get
them wrong. Dense kernels are stored [out, in] by PyTorch and [in, out] here (transposed);
google's ``output_weights`` heads are already [out, in]. The masked-LM decoder is tied to the
word embeddings (transformers ties ``cls.predictions.decoder.weight``/``.bias`` to the
embeddings and ``cls.predictions.bias``), so it is neither read nor written.

Tensors are read and written with the ``safetensors`` package's NumPy API: no PyTorch needed.
"""
from __future__ import annotations

import json
import logging
import os
import re

import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.interop import hf_config
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.modeling.squad import BertSpanLabeler

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# google name -> HF name where the generic rule does not apply (the heads).
_SPECIAL = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    "output_weights": "classifier.weight",
    "output_bias": "classifier.bias",
    "cls/squad/output_weights": "qa_outputs.weight",
    "cls/squad/output_bias": "qa_outputs.bias",
}
# Stored by some transformers versions but not weights: buffers and the tied decoder.
_NOT_WEIGHTS = re.compile(r"(^|\.)(position_ids|cls\.predictions\.decoder\.(weight|bias))$")
_HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")


def hf_name(google_name: str, encoder_prefix: str = "bert.") -> tuple[str, bool]:
  """(HF name, transposed?) of one google name. ``encoder_prefix``: "bert." for BertFor*
  models, "" for a bare ``BertModel``."""
  if google_name in _SPECIAL:
    return _SPECIAL[google_name], False
  if google_name.startswith("bert/"):
    name = google_name[len("bert/"):]
  else:  # cls/predictions/transform/...: a head, outside the encoder
    name, encoder_prefix = google_name, ""
  name = re.sub(r"layer_(\d+)", r"layer.\1", name).replace("/", ".")
  if name.endswith(".kernel"):
    return encoder_prefix + name[:-len("kernel")] + "weight", True
  if name.endswith(".gamma"):
    return encoder_prefix + name[:-len("gamma")] + "weight", False
  if name.endswith(".beta"):
    return encoder_prefix + name[:-len("beta")] + "bias", False
  if name.endswith("_embeddings"):
    return encoder_prefix + name + ".weight", False
  return encoder_prefix + name, False  # biases


def hf_name_table(model, encoder_prefix: str = "bert.") -> dict[str, tuple[tf.Variable, bool]]:
  """HF name -> (our variable, transposed?) for every weight of ``model``."""
  table = {}
  for google, variable in checkpoints.google_name_table(model).items():
    name, transposed = hf_name(google, encoder_prefix)
    table[name] = (variable, transposed)
  return table


def architecture(model) -> str:
  """The transformers class whose state dict matches ``model``."""
  for cls, arch in ((BertPretrainer, "BertForPreTraining"),
                    (BertClassifier, "BertForSequenceClassification"),
                    (BertSpanLabeler, "BertForQuestionAnswering"), (BertEncoder, "BertModel")):
    if isinstance(model, cls):
      return arch
  raise TypeError(f"no Hugging Face architecture for {type(model).__name__}")


def weights_file(path: str) -> str | None:
  """The ``model.safetensors`` of an HF folder or the file itself; None if ``path`` is neither."""
  path = os.fspath(path)
  if path.endswith(".safetensors") and tf.io.gfile.exists(path):
    return path
  candidate = os.path.join(path, WEIGHTS_NAME)
  if tf.io.gfile.isdir(path) and tf.io.gfile.exists(candidate):
    return candidate
  return None


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of the file, as NumPy arrays (bfloat16 through ml_dtypes)."""
  from safetensors.numpy import load, load_file  # lazily: only HF folders need the package
  path = weights_file(path) or path
  if os.path.exists(path):
    return load_file(path)  # memory-mapped; the only reader that knows BF16
  with tf.io.gfile.GFile(path, "rb") as f:  # gs:// and other gfile paths
    return load(f.read())


def load_hf_weights(path: str, model, allow_missing: tuple[str, ...] = (),
                    ignore_prefixes: tuple[str, ...] = ()) -> dict[str, list]:
  """Assigns an HF ``model.safetensors`` to ``model``'s variables, all or nothing.

  Every missing (beyond ``allow_missing``), unexpected (beyond ``ignore_prefixes``) and
  mis-shaped tensor is listed in one ``CheckpointMismatchError``; nothing is assigned then.
  Accepts files saved from ``BertModel`` (no "bert." prefix) and from ``BertFor*`` models.
  Returns ``{"loaded": [...], "skipped": [...], "missing_allowed": [...]}`` (HF names).
  """
  source = weights_file(path) or path
  tensors = read_tensors(path)
  prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""
  table = hf_name_table(model, prefix)
  # Old checkpoints (transformers < 3) name LayerNorm parameters gamma / beta.
  tensors = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight",
                    re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
             for k, v in tensors.items()}
  skipped = sorted(k for k in tensors if _NOT_WEIGHTS.search(k) or (
      k.startswith(ignore_prefixes) and k not in table))
  present = set(tensors) - set(skipped)
  allowed = {hf_name(g, prefix)[0] for g in allow_missing}
  missing = sorted(set(table) - present - allowed)
  unexpected = sorted(present - set(table))
  shaped = []
  for name, (variable, transposed) in table.items():
    if name in tensors:
      shape = list(tensors[name].shape[::-1] if transposed else tensors[name].shape)
      if shape != variable.shape.as_list():
        shaped.append(f"{name}: file {list(tensors[name].shape)} vs model "
                      f"{variable.shape.as_list()}{' (transposed)' if transposed else ''}")
  if missing or unexpected or shaped:
    raise checkpoints.CheckpointMismatchError(
        f"{source}: does not match {type(model).__name__} ({len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(shaped)} mis-shaped; nothing was assigned; does "
        f"the config match these weights?)\n  missing from file: {missing}\n  unexpected in "
        f"file: {unexpected}\n  mis-shaped: {shaped}")
  loaded = []
  for name, (variable, transposed) in table.items():
    if name in tensors:
      value = tensors[name].T if transposed else tensors[name]
      variable.assign(np.ascontiguousarray(value).astype(variable.dtype.as_numpy_dtype))
      loaded.append(name)
  return {"loaded": loaded, "skipped": skipped,
          "missing_allowed": sorted(set(table) - set(loaded))}


def restore_hf_weights(path: str, model) -> str:
  """``checkpoints.restore_weights`` for HF folders: heads the file lacks keep their initial
  values (a pooler too, with a warning: transformers' BertForMaskedLM saves none), heads the
  model lacks (``cls.`` into an encoder or a classifier) are ignored. Returns ``"hf"``."""
  google = checkpoints.google_name_table(model)
  heads = tuple(n for n in google if not n.startswith("bert/")) + POOLER
  wanted = {hf_name(n)[0].split(".")[0] + "." for n in google if not n.startswith("bert/")}
  result = load_hf_weights(path, model, allow_missing=heads,
                           ignore_prefixes=tuple(p for p in _HEAD_PREFIXES if p not in wanted))
  if any(n.endswith("pooler.dense.weight") for n in result["missing_allowed"]):
    logging.warning("%s: no pooler weights; the pooler keeps its initial values", path)
  return "hf"


POOLER = ("bert/pooler/dense/kernel", "bert/pooler/dense/bias")


def save_hf_weights(model, path: str) -> None:
  """Writes ``model``'s weights as a ``model.safetensors`` transformers loads. A span labeler's
  pooler (unused) is left out: ``BertForQuestionAnswering`` has none."""
  from safetensors.numpy import save_file
  prefix = "" if isinstance(model, BertEncoder) else "bert."
  skip = {hf_name(n, prefix)[0] for n in POOLER} if isinstance(model, BertSpanLabeler) else ()
  tensors = {}
  for name, (variable, transposed) in hf_name_table(model, prefix).items():
    if name in skip:
      continue
    value = variable.numpy()
    tensors[name] = np.ascontiguousarray(value.T if transposed else value)
  save_file(tensors, path, metadata={"format": "pt"})  # transformers wants "pt"


def read_config(folder: str) -> dict:
  path = os.path.join(folder, CONFIG_NAME)
  with tf.io.gfile.GFile(path, "r") as f:
    return json.load(f)


def write_config(config, folder: str, model, label_names=None) -> None:
  values = hf_config.to_hf_dict(config, architecture(model), label_names)
  with tf.io.gfile.GFile(os.path.join(folder, CONFIG_NAME), "w") as f:
    f.write(json.dumps(values, indent=2, sort_keys=True) + "\n")


def vocab_and_casing(folder: str) -> tuple[list[str] | None, bool | None]:
  """The folder's vocabulary (from ``vocab.txt``, else a WordPiece ``tokenizer.json``) and
  ``do_lower_case`` (``tokenizer_config.json``, else the ``tokenizer.json`` normalizer);
  None for what the folder does not say."""
  vocab = lower = None
  vocab_txt, tok_json = os.path.join(folder, "vocab.txt"), os.path.join(folder, "tokenizer.json")
  tokenizer = None
  if tf.io.gfile.exists(tok_json):
    with tf.io.gfile.GFile(tok_json, "r") as f:
      tokenizer = json.load(f)
  if tf.io.gfile.exists(vocab_txt):
    with tf.io.gfile.GFile(vocab_txt, "r") as f:
      vocab = [line.rstrip("\n") for line in f]
  elif tokenizer and tokenizer.get("model", {}).get("type") == "WordPiece":
    ids = tokenizer["model"]["vocab"]
    vocab = sorted(ids, key=ids.get)
  tok_config = os.path.join(folder, "tokenizer_config.json")
  if tf.io.gfile.exists(tok_config):
    with tf.io.gfile.GFile(tok_config, "r") as f:
      lower = json.load(f).get("do_lower_case")
  if lower is None and tokenizer and tokenizer.get("normalizer"):
    lower = tokenizer["normalizer"].get("lowercase")
  return vocab, lower
