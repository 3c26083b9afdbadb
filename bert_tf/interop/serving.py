"""A SavedModel for serving (TF Serving, ``saved_model_cli``, ``tf.saved_model.load``).

Signatures, as Model Garden's serving modules name their inputs:
  serving_default / token_ids: ``input_word_ids``, ``input_mask``, ``input_type_ids`` int32 [B, S].
  serialized_example: ``examples``, serialized ``tf.train.Example``s [B] with google's
    fixed-length int64 features ``input_ids``, ``input_mask``, ``segment_ids`` [max_seq_length].
  text: ``text`` [B] strings; text_pair: ``text_a``, ``text_b`` [B] (an empty ``text_b`` is a
    single text). Tokenized in the graph by the project's ``TokenizerLayer`` (google's
    FullTokenizer's ids) with the checkpoint's vocab and casing, truncated as google's
    ``_truncate_seq_pair``, [CLS] a [SEP] (b [SEP]), padded to max_seq_length; these two also
    return the ``input_word_ids`` / ``input_mask`` / ``input_type_ids`` they computed.
Outputs: a classifier's ``logits``, ``probabilities``, ``label_names`` [B, num_labels] and
``predicted_label`` [B]; a one-label (regression, STS-B) classifier's ``logits`` [B, 1] and
``score`` [B] (no softmax, no label); otherwise the encoder's ``pooled_output`` and ``sequence_output``, and
for a SQuAD model also ``start_logits`` and ``end_logits`` [B, S].
The model is float32 (built so whatever it trained in), called with ``training=False`` (no
dropout) and without recompute.
"""
from __future__ import annotations

import types

import tensorflow as tf

from bert_tf import tokenization
from bert_tf.modeling import BertClassifier, BertPretrainer
from bert_tf.modeling.squad import BertSpanLabeler


def check(source, max_seq_length: int) -> None:
  """What a SavedModel needs beyond the weights; export calls it before writing anything."""
  if source.do_lower_case is None:
    raise ValueError("a SavedModel tokenizes text: it needs the checkpoint's casing "
                     "(pass --do_lower_case or --nodo_lower_case)")
  if max_seq_length > source.config.max_position_embeddings:
    raise ValueError(f"--max_seq_length {max_seq_length} exceeds the model's "
                     f"max_position_embeddings ({source.config.max_position_embeddings})")


class ServingModule(tf.Module):

  def __init__(self, source, max_seq_length: int, vocab_file: str):
    """``vocab_file``: the checkpoint's vocab.txt, read as google's load_vocab reads it."""
    super().__init__(name="bert_serving")
    check(source, max_seq_length)
    # The Keras model is held untracked (a SimpleNamespace is not trackable) and its weights
    # tracked as a plain list: tf.saved_model.save then writes only these signatures, not
    # tf_keras' per-layer call traces (which took most of the export time).
    self._held = types.SimpleNamespace(model=source.model)
    self.weights = list(source.model.weights)
    self.is_classifier = isinstance(source.model, BertClassifier)
    self.max_seq_length = max_seq_length
    self.tokenizer = tokenization.TokenizerLayer(vocab_file, source.do_lower_case,
                                                 output_type=tf.int32)
    vocab = tokenization.load_vocab(vocab_file)
    self.cls_id, self.sep_id = vocab["[CLS]"], vocab["[SEP]"]
    self.is_regression = self.is_classifier and source.model.num_labels == 1
    if self.is_classifier:
      self.label_names = tf.constant(source.label_names)

  def outputs(self, ids, mask, segments):
    model = self._held.model
    if isinstance(model, BertPretrainer):  # the heads need masked positions: encoder only
      model = model.encoder
    out = model({"input_ids": ids, "input_mask": mask, "segment_ids": segments}, training=False)
    if not self.is_classifier:
      result = {"pooled_output": tf.cast(out["pooled_output"], tf.float32),
                "sequence_output": tf.cast(out["sequence_output"], tf.float32)}
      if isinstance(model, BertSpanLabeler):
        result.update(start_logits=out["start_logits"], end_logits=out["end_logits"])
      return result
    logits = out["logits"]
    if self.is_regression:  # one output (STS-B): a score, no softmax and no label
      return {"logits": logits, "score": logits[:, 0]}
    batch = tf.shape(logits)[0]
    return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1),
            "label_names": tf.tile(self.label_names[tf.newaxis], [batch, 1]),
            "predicted_label": tf.gather(self.label_names, tf.argmax(logits, axis=-1))}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, "input_word_ids"),
                                tf.TensorSpec([None, None], tf.int32, "input_mask"),
                                tf.TensorSpec([None, None], tf.int32, "input_type_ids")])
  def token_ids(self, input_word_ids, input_mask, input_type_ids):
    return self.outputs(input_word_ids, input_mask, input_type_ids)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "examples")])
  def serialized_example(self, examples):
    spec = {name: tf.io.FixedLenFeature([self.max_seq_length], tf.int64)
            for name in ("input_ids", "input_mask", "segment_ids")}
    parsed = tf.io.parse_example(examples, spec)
    as_int = lambda name: tf.cast(parsed[name], tf.int32)
    return self.outputs(as_int("input_ids"), as_int("input_mask"), as_int("segment_ids"))

  def _pack(self, a: tf.RaggedTensor, b: tf.RaggedTensor):
    """google's convert_single_example: longest-first truncation, [CLS] a [SEP] (b [SEP])."""
    la, lb = a.row_lengths(), b.row_lengths()
    has_b = lb > 0
    budget = tf.where(has_b, self.max_seq_length - 3, self.max_seq_length - 2)
    budget = tf.cast(budget, la.dtype)
    # google pops from the longer list (b on ties) until the pair fits: a keeps
    # max(budget - len(b), ceil(budget / 2)) tokens at most, b the rest of the budget.
    keep_a = tf.where(la + lb <= budget, la,
                      tf.minimum(la, tf.maximum(budget - lb, (budget + 1) // 2)))
    keep_b = tf.minimum(lb, budget - keep_a)
    trim = lambda x, keep: tf.ragged.boolean_mask(
        x, tf.ragged.range(x.row_lengths()) < keep[:, tf.newaxis])
    a, b = trim(a, keep_a), trim(b, keep_b)
    batch = tf.shape(la, out_type=tf.int64)[0]
    token = lambda value, count: tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(count)], value), count)
    ones = tf.ones([batch], tf.int64)
    b_sep = token(self.sep_id, tf.cast(has_b, tf.int64))
    ids = tf.concat([token(self.cls_id, ones), a, token(self.sep_id, ones), b, b_sep], axis=1)
    first = keep_a + 2
    segments = tf.cast(tf.ragged.range(ids.row_lengths()) >= first[:, tf.newaxis], tf.int32)
    shape = [None, self.max_seq_length]
    return (ids.to_tensor(0, shape=shape), tf.ones_like(ids).to_tensor(0, shape=shape),
            segments.to_tensor(0, shape=shape))

  def _from_text(self, text_a, text_b):
    ids, mask, segments = self._pack(self.tokenizer(text_a), self.tokenizer(text_b))
    return {**self.outputs(ids, mask, segments), "input_word_ids": ids, "input_mask": mask,
            "input_type_ids": segments}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "text")])
  def text(self, text):
    return self._from_text(text, tf.fill(tf.shape(text), ""))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, "text_a"),
                                tf.TensorSpec([None], tf.string, "text_b")])
  def text_pair(self, text_a, text_b):
    return self._from_text(text_a, text_b)


def save(source, output_dir: str, vocab_file: str, max_seq_length: int = 128) -> ServingModule:
  module = ServingModule(source, max_seq_length, vocab_file)
  signatures = {"serving_default": module.token_ids, "token_ids": module.token_ids,
                "serialized_example": module.serialized_example, "text": module.text,
                "text_pair": module.text_pair}
  tf.saved_model.save(module, output_dir, signatures=signatures)
  return module
