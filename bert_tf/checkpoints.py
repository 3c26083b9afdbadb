"""google's TF1 name-based BERT checkpoints <-> our variables, through one explicit table.

google's ``bert_model.ckpt`` stores variables by their TF1 graph names
(``bert/encoder/layer_3/attention/self/query/kernel``). ``google_name_table`` lists, for a
model of ours, every google name next to the variable that holds it; loading and exporting
both go through that one table, so a name is spelled in exactly one place.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import tensorflow as tf

from bert_tf.configs import BertConfig
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.modeling.squad import BertSpanLabeler

# Stored in google's checkpoints but not model weights: the step counter and the optimizer's
# slots (google's AdamWeightDecayOptimizer names them <var>/adam_m and <var>/adam_v).
_NON_MODEL_SUFFIXES = ("/adam_m", "/adam_v")
_NON_MODEL_NAMES = ("global_step", "_CHECKPOINTABLE_OBJECT_GRAPH")


class CheckpointMismatchError(ValueError):
  """A checkpoint and a model disagree on variable names or shapes."""


def _encoder_table(encoder: BertEncoder) -> dict[str, tf.Variable]:
  emb = encoder.embeddings
  table = {
      "bert/embeddings/word_embeddings": emb.word_embeddings,
      "bert/embeddings/token_type_embeddings": emb.token_type_embeddings,
      "bert/embeddings/position_embeddings": emb.position_embeddings,
      "bert/embeddings/LayerNorm/gamma": emb.layer_norm.gamma,
      "bert/embeddings/LayerNorm/beta": emb.layer_norm.beta,
  }
  for i, block in enumerate(encoder.blocks):
    p = f"bert/encoder/layer_{i}"
    att = block.attention
    table.update({
        f"{p}/attention/self/query/kernel": att.query.kernel,
        f"{p}/attention/self/query/bias": att.query.bias,
        f"{p}/attention/self/key/kernel": att.key.kernel,
        f"{p}/attention/self/key/bias": att.key.bias,
        f"{p}/attention/self/value/kernel": att.value.kernel,
        f"{p}/attention/self/value/bias": att.value.bias,
        f"{p}/attention/output/dense/kernel": block.attention_output.kernel,
        f"{p}/attention/output/dense/bias": block.attention_output.bias,
        f"{p}/attention/output/LayerNorm/gamma": block.attention_layer_norm.gamma,
        f"{p}/attention/output/LayerNorm/beta": block.attention_layer_norm.beta,
        f"{p}/intermediate/dense/kernel": block.intermediate.kernel,
        f"{p}/intermediate/dense/bias": block.intermediate.bias,
        f"{p}/output/dense/kernel": block.output_dense.kernel,
        f"{p}/output/dense/bias": block.output_dense.bias,
        f"{p}/output/LayerNorm/gamma": block.output_layer_norm.gamma,
        f"{p}/output/LayerNorm/beta": block.output_layer_norm.beta,
    })
  table["bert/pooler/dense/kernel"] = encoder.pooler.kernel
  table["bert/pooler/dense/bias"] = encoder.pooler.bias
  return table


def google_name_table(model) -> dict[str, tf.Variable]:
  """google TF1 name -> our variable, for a BertEncoder, BertPretrainer, BertClassifier or
  BertSpanLabeler (SQuAD)."""
  if isinstance(model, BertEncoder):
    return _encoder_table(model)
  if isinstance(model, BertPretrainer):
    mlm, nsp = model.masked_lm, model.next_sentence
    table = _encoder_table(model.encoder)
    table.update({
        "cls/predictions/transform/dense/kernel": mlm.transform.kernel,
        "cls/predictions/transform/dense/bias": mlm.transform.bias,
        "cls/predictions/transform/LayerNorm/gamma": mlm.layer_norm.gamma,
        "cls/predictions/transform/LayerNorm/beta": mlm.layer_norm.beta,
        "cls/predictions/output_bias": mlm.output_bias,
        "cls/seq_relationship/output_weights": nsp.output_weights,
        "cls/seq_relationship/output_bias": nsp.output_bias,
    })
    return table
  if isinstance(model, BertClassifier):
    table = _encoder_table(model.encoder)
    # google's run_classifier.py creates these two at the top level, outside "bert/".
    table["output_weights"] = model.classifier.output_weights
    table["output_bias"] = model.classifier.output_bias
    return table
  if isinstance(model, BertSpanLabeler):
    table = _encoder_table(model.encoder)
    # google's run_squad.py: the span head under cls/squad/.
    table["cls/squad/output_weights"] = model.span_head.output_weights
    table["cls/squad/output_bias"] = model.span_head.output_bias
    return table
  raise TypeError(f"no google name table for {type(model).__name__}")


def _is_non_model(name: str) -> bool:
  return name in _NON_MODEL_NAMES or name.endswith(_NON_MODEL_SUFFIXES)


def checkpoint_prefix(path: str) -> str:
  """Accepts a checkpoint prefix or a directory holding one (``checkpoint`` file or single
  ``*.index``); raises naming the path otherwise."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest:
      return latest
    indexes = tf.io.gfile.glob(os.path.join(path, "*.index"))
    if len(indexes) == 1:
      return indexes[0][:-len(".index")]
    raise FileNotFoundError(
        f"{path}: directory holds {len(indexes)} checkpoint index files; pass the checkpoint "
        "prefix (e.g. .../bert_model.ckpt)")
  if not tf.io.gfile.exists(path + ".index"):
    raise FileNotFoundError(f"{path}: no checkpoint here (expected {path}.index)")
  return path


# The old private name, still called by bert_tf/training/distillation.py (not renamed there yet).
_checkpoint_prefix = checkpoint_prefix


def is_google_checkpoint(path: str) -> bool:
  """True if ``path`` is a TF1 name-based checkpoint with google's BERT variable names."""
  names = {name for name, _ in tf.train.list_variables(checkpoint_prefix(path))}
  return "bert/embeddings/word_embeddings" in names


def load_google_checkpoint(path: str, model, allow_missing: tuple[str, ...] = (),
                           allow_unexpected_prefixes: tuple[str, ...] = ()) -> dict[str, list]:
  """Assigns a google TF1 checkpoint to ``model``'s variables.

  Every table name must be in the checkpoint and every checkpoint model variable in the table:
  otherwise ``CheckpointMismatchError`` lists the missing and unexpected names. Optimizer slots
  and ``global_step`` are skipped. ``allow_missing``: table names that may be absent (e.g. the
  classifier head when starting fine-tuning). ``allow_unexpected_prefixes``: checkpoint names
  to ignore (e.g. ``("cls/",)`` to load a pretraining checkpoint into an encoder).

  Returns ``{"loaded": [...], "skipped": [...], "missing_allowed": [...]}``.
  """
  prefix = checkpoint_prefix(path)
  reader = tf.train.load_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  table = google_name_table(model)
  # An ignored prefix never hides a name the model wants (cls/ vs the SQuAD head cls/squad/).
  skipped = sorted(n for n in shapes if _is_non_model(n) or (
      n.startswith(tuple(allow_unexpected_prefixes)) and n not in table))
  model_names = set(shapes) - set(skipped)
  missing = sorted(set(table) - model_names - set(allow_missing))
  unexpected = sorted(model_names - set(table))
  if missing or unexpected:
    raise CheckpointMismatchError(
        f"{prefix}: checkpoint does not match {type(model).__name__} "
        f"({len(missing)} missing, {len(unexpected)} unexpected).\n"
        f"  missing from checkpoint: {missing}\n  unexpected in checkpoint: {unexpected}")
  mismatched = [f"{n}: checkpoint {list(shapes[n])} vs model {v.shape.as_list()}"
                for n, v in table.items() if n in shapes and list(shapes[n]) != v.shape.as_list()]
  if mismatched:
    raise CheckpointMismatchError(
        f"{prefix}: shape mismatch for {len(mismatched)} variable(s) (does bert_config.json "
        "match this checkpoint?):\n  " + "\n  ".join(mismatched))
  loaded = []
  for name, variable in table.items():
    if name in shapes:
      variable.assign(reader.get_tensor(name).astype(variable.dtype.as_numpy_dtype))
      loaded.append(name)
  return {"loaded": loaded, "skipped": skipped,
          "missing_allowed": sorted(set(table) - set(loaded))}


def export_google_checkpoint(model, config: BertConfig, output_dir: str,
                             name: str = "bert_model.ckpt", overwrite: bool = False) -> str:
  """Writes ``model``'s weights as a google TF1 checkpoint plus ``bert_config.json``.

  The result loads with google's ``tf.train.init_from_checkpoint`` recipes and with
  Model Garden's TF1 converter. Refuses to overwrite an existing checkpoint unless
  ``overwrite``. Returns the checkpoint prefix.
  """
  tf.io.gfile.makedirs(output_dir)
  prefix = os.path.join(output_dir, name)
  if not overwrite and tf.io.gfile.exists(prefix + ".index"):
    raise FileExistsError(f"{prefix}.index already exists; pass overwrite=True to replace it")
  values = {n: v.numpy() for n, v in google_name_table(model).items()}
  # TF1 name-based checkpoints are written by a v1 Saver over graph variables whose names are
  # the google names; TF2's object-based tf.train.Checkpoint cannot produce these keys.
  with tf.Graph().as_default():
    variables = [tf.compat.v1.get_variable(n, shape=v.shape, dtype=tf.as_dtype(v.dtype),
                                           initializer=tf.compat.v1.zeros_initializer())
                 for n, v in values.items()]
    saver = tf.compat.v1.train.Saver(variables, write_version=tf.compat.v1.train.SaverDef.V2)
    with tf.compat.v1.Session() as session:
      for variable, value in zip(variables, values.values()):
        # Fed, not embedded as constants: BERT-Large's 1.3 GB would hit the 2 GB GraphDef limit.
        variable.load(value, session)
      saver.save(session, prefix, write_meta_graph=False, write_state=False)
  config.to_json_file(os.path.join(output_dir, "bert_config.json"))
  return prefix


def checkpoint_values(path: str) -> Mapping[str, np.ndarray]:
  """All model variables of a google checkpoint as numpy arrays (for inspection and tests)."""
  reader = tf.train.load_checkpoint(checkpoint_prefix(path))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if not _is_non_model(n)}


def restore_weights(path: str, model) -> str:
  """Loads weights only into a ``BertPretrainer``, ``BertClassifier``, ``BertSpanLabeler`` or
  ``BertEncoder``.

  Accepts google TF1 checkpoints (with or without ``cls/`` heads), our pretraining checkpoints
  (``tf.train.Checkpoint(model=...)``; a pipeline run's output too, which saves the same names
  as a non-pipelined model), our encoder exports (``tf.train.Checkpoint(encoder=...)``), a
  Hugging Face BERT folder or its ``model.safetensors`` (``interop.hf``) and, into a
  ``BertSpanLabeler``, a SQuAD run's checkpoint with its span head. Heads the checkpoint lacks
  keep their initial values. Returns which kind was found: ``google``, ``pretraining``,
  ``encoder``, ``hf`` or ``squad``.
  """
  from bert_tf.interop import hf  # lazily: an HF folder or model.safetensors -> "hf"
  if hf.weights_file(path):
    return hf.restore_hf_weights(path, model)
  prefix = checkpoint_prefix(path)
  names = [name for name, _ in tf.train.list_variables(prefix)]
  encoder = model if isinstance(model, BertEncoder) else model.encoder
  if "bert/embeddings/word_embeddings" in names:
    heads = [n for n in google_name_table(model) if not n.startswith("bert/")]
    # A pretraining checkpoint's cls/ heads are not wanted by an encoder or a classifier.
    load_google_checkpoint(
        prefix, model, allow_missing=tuple(heads),
        allow_unexpected_prefixes=() if isinstance(model, BertPretrainer) else ("cls/",))
    return "google"
  if isinstance(model, BertSpanLabeler) and any(n.startswith("model/span_head/") for n in names):
    kind = "squad"  # a SQuAD run's own checkpoint (run_squad.py's --output_dir): all of it
    root = tf.train.Checkpoint(model=model)
  elif any(n.startswith("model/encoder/") for n in names):
    kind = "pretraining"
    # The pretraining model's encoder, and its heads when the target has the same heads.
    root = tf.train.Checkpoint(model=model if isinstance(model, BertPretrainer)
                               else tf.train.Checkpoint(encoder=encoder))
  elif any(n.startswith("encoder/") for n in names):
    kind = "encoder"
    root = tf.train.Checkpoint(encoder=encoder)
  else:
    raise CheckpointMismatchError(
        f"{prefix}: neither a google BERT checkpoint (bert/...) nor one of ours (model/... or "
        f"encoder/...); first names: {names[:5]}")
  from bert_tf import checkpoint_checks  # pylint: disable=import-outside-toplevel (a cycle)
  # Both ways: every weight of `root` from the file, and every encoder weight of the file
  # used (a 2-layer checkpoint into a 1-layer model is refused, listing what would be
  # dropped); heads the target lacks by design, optimizer slots and counters may be left.
  # read(), not restore(): restore() would also expect the root's save counter, which
  # Checkpoint.write() (our encoder export) does not store.
  checkpoint_checks.read_all_used(root, prefix, model, within=(
      "encoder/" if kind == "encoder" else "model/encoder/",))
  return kind
