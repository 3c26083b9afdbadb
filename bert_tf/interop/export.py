"""export_model.py's library: any checkpoint kind in, google / Hugging Face / SavedModel out.

``load_source`` reads one of our run directories (``run_config.json`` + ``ckpt-N``), an encoder
export, a google checkpoint (``bert_model.ckpt`` with ``bert_config.json`` and ``vocab.txt``
beside it) or a Hugging Face folder, into the float32 model whose heads the weights have, with
its config, vocabulary, casing and label names. ``export`` writes it with config and vocab.
Loading here is strict (every tensor of the file into the model, every model weight from the
file), unlike ``restore_weights``, which starts fine-tuning from whatever the file has.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Optional

import tensorflow as tf

from bert_tf import checkpoints, precision
from bert_tf.configs import BertConfig
from bert_tf.interop import hf, hf_config
from bert_tf.modeling import BertClassifier, BertEncoder, BertPretrainer
from bert_tf.modeling.squad import BertSpanLabeler

FORMATS = ("google", "hf", "savedmodel")
_NSP = ("cls/seq_relationship/output_weights", "cls/seq_relationship/output_bias")
KINDS = ("pretraining", "classifier", "squad", "encoder")


@dataclasses.dataclass
class Source:
  model: object  # BertPretrainer | BertClassifier | BertSpanLabeler | BertEncoder
  config: BertConfig
  vocab: Optional[list]             # tokens in id order
  do_lower_case: Optional[bool]
  label_names: Optional[list]       # classifier only

  @property
  def kind(self) -> str:
    return {BertPretrainer: "pretraining", BertClassifier: "classifier",
            BertSpanLabeler: "squad", BertEncoder: "encoder"}[type(self.model)]


def build(kind: str, config: BertConfig, num_labels: int = 2):
  """A float32 model of ``kind`` without dropout or recompute (whatever policy and dropout the
  weights trained with): inference only. ``config`` stays the one to export."""
  inference = config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  with precision.policy_scope("fp32"):
    encoder = BertEncoder(inference, recompute="none")
    if kind == "encoder":
      return encoder
    if kind == "pretraining":
      return BertPretrainer(encoder)
    if kind == "classifier":
      return BertClassifier(encoder, num_labels, dropout_rate=0.0)
    if kind == "squad":
      return BertSpanLabeler(encoder)
  raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def _kind_from_names(shapes: dict, heads: dict) -> tuple[str, int]:
  """(kind, num_labels) from the names and shapes a checkpoint holds."""
  for name, kind in heads.items():
    if name in shapes:
      return kind, (shapes[name][0] if kind == "classifier" else 2)
  return "encoder", 2


def _read_vocab(path: str) -> list:
  with tf.io.gfile.GFile(path, "r") as f:
    return [line.rstrip("\n") for line in f]


def _from_hf(path: str) -> Source:
  folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
  values = hf.read_config(folder)
  hf_config.check_exportable(values, os.path.join(folder, hf.CONFIG_NAME))
  config = BertConfig.from_json_file(os.path.join(folder, hf.CONFIG_NAME))
  shapes = {k: v.shape for k, v in hf.read_tensors(path).items()}
  kind, labels = _kind_from_names(shapes, {"classifier.weight": "classifier",
                                           "qa_outputs.weight": "squad",
                                           "cls.seq_relationship.weight": "pretraining",
                                           "cls.predictions.bias": "pretraining"})
  model = build(kind, config, labels)
  # BertForQuestionAnswering and BertForMaskedLM save no pooler, BertForMaskedLM no NSP head:
  # those keep their initial values, said in a warning.
  result = hf.load_hf_weights(path, model, allow_missing=hf.POOLER + _NSP)
  if result["missing_allowed"]:
    logging.warning("%s has no %s: initial values kept", path, result["missing_allowed"])
  vocab, lower = hf.vocab_and_casing(folder)
  names = hf_config.label_names(values) if kind == "classifier" else None
  return Source(model, config, vocab, lower, names)


def _from_google(path: str) -> Source:
  prefix = checkpoints.checkpoint_prefix(path)
  folder = os.path.dirname(prefix)
  config = BertConfig.from_json_file(os.path.join(folder, "bert_config.json"))
  shapes = dict(tf.train.list_variables(prefix))
  kind, labels = _kind_from_names(shapes, {"output_weights": "classifier",
                                           "cls/squad/output_weights": "squad",
                                           "cls/seq_relationship/output_weights": "pretraining"})
  model = build(kind, config, labels)
  checkpoints.load_google_checkpoint(prefix, model)
  vocab_file = os.path.join(folder, "vocab.txt")
  vocab = _read_vocab(vocab_file) if tf.io.gfile.exists(vocab_file) else None
  return Source(model, config, vocab, None, None)


def _from_ours(path: str) -> Source:
  """One of our run directories (run_config.json) or a checkpoint prefix inside one."""
  folder = path if tf.io.gfile.isdir(path) else os.path.dirname(path)
  with tf.io.gfile.GFile(os.path.join(folder, "run_config.json")) as f:
    run = json.load(f)
  config = BertConfig.from_dict(run["bert_config"], source="run_config.json bert_config")
  prefix = checkpoints.checkpoint_prefix(path)
  shapes = {n.split("/.ATTRIBUTES")[0]: s for n, s in tf.train.list_variables(prefix)}
  if any(n.startswith("model/tagger/") for n in shapes):
    raise ValueError(f"{path}: a run_tagging.py output (token tagger): tagging models are not "
                     f"exportable yet; export_model.py exports {list(KINDS)} models, as "
                     f"{list(FORMATS)}")
  kind, labels = _kind_from_names(shapes, {"model/classifier/output_weights": "classifier",
                                           "model/span_head/output_weights": "squad",
                                           "model/masked_lm/output_bias": "pretraining"})
  model = build(kind, config, labels)
  _read_all(prefix, tf.train.Checkpoint(model=model))
  data = run.get("data") or {}
  vocab = _read_vocab(data["vocab_file"]) if data.get("vocab_file") else None
  names = None
  if kind == "classifier" and data.get("task_name"):
    from bert_tf.data.classifier import tasks  # lazily: only classifier runs name labels
    names = list(tasks.make_task(data["task_name"]).labels) or None
  return Source(model, config, vocab, data.get("do_lower_case"), names)


def _read_all(prefix: str, root: tf.train.Checkpoint) -> None:
  status = root.read(prefix)
  status.expect_partial()  # optimizer slots and step counters
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise checkpoints.CheckpointMismatchError(
        f"{prefix}: does not hold all of this model's weights: {str(e)[:2000]}") from None


def load_source(checkpoint: str, bert_config_file: str | None = None,
                vocab_file: str | None = None, do_lower_case: bool | None = None,
                label_names: list | None = None) -> Source:
  """Any checkpoint kind -> Source; the keyword arguments override or fill in what the
  checkpoint's folder does not say (``bert_config_file`` only for encoder exports)."""
  if hf.weights_file(checkpoint):
    source = _from_hf(checkpoint)
  else:
    prefix = checkpoints.checkpoint_prefix(checkpoint)
    folder = os.path.dirname(prefix)
    if checkpoints.is_google_checkpoint(prefix):
      source = _from_google(prefix)
    elif tf.io.gfile.exists(os.path.join(folder, "run_config.json")):
      source = _from_ours(prefix)
    else:  # an encoder export: tf.train.Checkpoint(encoder=...)
      config = (BertConfig.from_json_file(bert_config_file) if bert_config_file
                else _encoder_config(checkpoint, folder))
      model = build("encoder", config)
      _read_all(prefix, tf.train.Checkpoint(encoder=model))
      source = Source(model, config, None, None, None)
  if vocab_file:
    source.vocab = _read_vocab(vocab_file)
  if do_lower_case is not None:
    source.do_lower_case = do_lower_case
  if label_names:
    source.label_names = list(label_names)
  if source.kind == "classifier" and source.label_names is None:
    # transformers' default names, so an HF export round-trips its config unchanged.
    source.label_names = [f"LABEL_{i}" for i in range(source.model.num_labels)]
  if source.kind == "classifier" and len(source.label_names) != source.model.num_labels:
    raise ValueError(f"--label_names gives {len(source.label_names)} names "
                     f"({source.label_names}) but the classifier has "
                     f"{source.model.num_labels} labels")
  if source.vocab is not None and len(source.vocab) != source.config.vocab_size:
    raise ValueError(f"the vocabulary has {len(source.vocab)} tokens but the model's "
                     f"vocab_size is {source.config.vocab_size}")
  return source


def _encoder_config(checkpoint: str, folder: str) -> BertConfig:
  """An encoder export's config: its folder's bert_config.json (training writes one into
  <output_dir>/encoder), else the run's: the parent folder's run_config.json."""
  beside = os.path.join(folder, "bert_config.json")
  if tf.io.gfile.exists(beside):
    return BertConfig.from_json_file(beside)
  run_config = os.path.join(os.path.dirname(folder), "run_config.json")
  if tf.io.gfile.exists(run_config):
    with tf.io.gfile.GFile(run_config) as f:
      return BertConfig.from_dict(json.load(f)["bert_config"], source=run_config)
  raise ValueError(f"{checkpoint}: an encoder export with no bert_config.json beside it and no "
                   f"run_config.json above it; pass --bert_config_file")


def _refuse_overwrite(output_dir: str, names: list, overwrite: bool) -> None:
  existing = [n for n in names if tf.io.gfile.exists(os.path.join(output_dir, n))]
  if existing and not overwrite:
    raise FileExistsError(f"{output_dir} already holds {existing}; pass --overwrite to "
                          "replace them")


def _write_vocab(source: Source, output_dir: str) -> None:
  if source.vocab is None:
    raise ValueError("the checkpoint's folder has no vocabulary; pass --vocab_file")
  with tf.io.gfile.GFile(os.path.join(output_dir, "vocab.txt"), "w") as f:
    f.write("".join(t + "\n" for t in source.vocab))


def export(source: Source, fmt: str, output_dir: str, overwrite: bool = False,
           max_seq_length: int = 128) -> list:
  """Writes ``source`` as ``fmt`` into ``output_dir``; returns the paths written."""
  if fmt not in FORMATS:
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
  # Every check before anything is written: a refused export leaves no file to block its rerun.
  if source.vocab is None:
    raise ValueError("the checkpoint's folder has no vocabulary; pass --vocab_file")
  if fmt == "savedmodel":
    from bert_tf.interop import serving  # lazily: builds the tokenizer
    serving.check(source, max_seq_length)
  tf.io.gfile.makedirs(output_dir)
  if fmt == "google":
    names = ["bert_model.ckpt.index", "bert_config.json", "vocab.txt"]
    _refuse_overwrite(output_dir, names, overwrite)
    if source.config.hidden_act == "gelu_exact":
      logging.warning(
          "hidden_act 'gelu_exact' has no google name: google's modeling.py calls the tanh "
          "approximation 'gelu' and refuses 'gelu_exact'; bert_config.json keeps 'gelu_exact' "
          "(bert_tf reads it; google's code needs hidden_act edited, at a ~1e-3 cost)")
    _write_vocab(source, output_dir)
    checkpoints.export_google_checkpoint(source.model, source.config, output_dir,
                                         overwrite=True)
  elif fmt == "hf":
    names = [hf.WEIGHTS_NAME, hf.CONFIG_NAME, "vocab.txt", "tokenizer_config.json"]
    _refuse_overwrite(output_dir, names, overwrite)
    _write_vocab(source, output_dir)
    hf.save_hf_weights(source.model, os.path.join(output_dir, hf.WEIGHTS_NAME))
    hf.write_config(source.config, output_dir, source.model, source.label_names)
    tokenizer = {"tokenizer_class": "BertTokenizer", "model_max_length":
                 source.config.max_position_embeddings}
    if source.do_lower_case is not None:
      tokenizer["do_lower_case"] = source.do_lower_case
    with tf.io.gfile.GFile(os.path.join(output_dir, "tokenizer_config.json"), "w") as f:
      f.write(json.dumps(tokenizer, indent=2) + "\n")
  else:
    names = ["saved_model.pb", "bert_config.json", "vocab.txt"]
    _refuse_overwrite(output_dir, names, overwrite)
    _write_vocab(source, output_dir)
    serving.save(source, output_dir, os.path.join(output_dir, "vocab.txt"), max_seq_length)
    source.config.to_json_file(os.path.join(output_dir, "bert_config.json"))
  return [os.path.join(output_dir, n) for n in names]
