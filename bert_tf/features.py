"""google's extract_features: per-token values of chosen encoder layers, as JSON lines.

Output lines have google's exact shape, so readers of google's files read ours:
  {"linex_index": 0, "features": [{"token": "[CLS]", "layers": [{"index": -1,
   "values": [0.1234, ...]}, ...]}, ...]}
("linex_index" is google's spelling; values are rounded to 6 decimals as google does.)
"""
from __future__ import annotations

import json
import re
from typing import Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from bert_tf import checkpoints
from bert_tf.configs import BertConfig
from bert_tf.modeling import BertEncoder
from bert_tf.tokenization import BertTokenizer

_PAIR = re.compile(r"^(.*) \|\|\| (.*)$")


def read_examples(lines: Iterable[str | bytes]) -> Iterator[tuple[str, str | None]]:
  """google's read_examples: "text" or "text_a ||| text_b" per line -> (text_a, text_b)."""
  for line in lines:
    if isinstance(line, bytes):
      line = line.decode("utf-8", "ignore")
    line = line.strip()
    m = _PAIR.match(line)
    yield (m.group(1), m.group(2)) if m else (line, None)


def _truncate_seq_pair(tokens_a: list, tokens_b: list, max_length: int) -> None:
  # google's: drop the last token of the longer sequence (of b on a tie) until it fits.
  while len(tokens_a) + len(tokens_b) > max_length:
    (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()


def convert_examples(examples: Sequence[tuple[str, str | None]], tokenizer: BertTokenizer,
                     max_seq_length: int):
  """Tokenizes, truncates and packs as google does.

  Returns:
    (tokens, features): tokens is a list (one per example) of lists of str including [CLS]
    and [SEP]; features a dict of int32 arrays [num_examples, max_seq_length]: input_ids,
    input_mask, segment_ids.
  """
  texts_a = [a for a, _ in examples]
  texts_b = [b for _, b in examples if b is not None]
  pieces_a = tokenizer.tokenize_batch(texts_a) if texts_a else []
  pieces_b = iter(tokenizer.tokenize_batch(texts_b) if texts_b else [])
  all_tokens = []
  ids = np.zeros([len(examples), max_seq_length], np.int32)
  mask, segments = np.zeros_like(ids), np.zeros_like(ids)
  for i, ((_, text_b), tokens_a) in enumerate(zip(examples, pieces_a)):
    tokens_b = next(pieces_b) if text_b is not None else None
    if tokens_b is not None:
      _truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)  # [CLS] a [SEP] b [SEP]
    else:
      tokens_a = tokens_a[:max_seq_length - 2]
    tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
    seg = [0] * len(tokens)
    if tokens_b:
      tokens += tokens_b + ["[SEP]"]
      seg += [1] * (len(tokens_b) + 1)
    all_tokens.append(tokens)
    ids[i, :len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
    mask[i, :len(tokens)] = 1
    segments[i, :len(tokens)] = seg
  return all_tokens, {"input_ids": ids, "input_mask": mask, "segment_ids": segments}


def load_encoder(bert_config: BertConfig, init_checkpoint: str | None) -> BertEncoder:
  """A BertEncoder with weights from a google TF1 checkpoint or one of ours.

  Our checkpoints: ``tf.train.Checkpoint(encoder=...)`` exports and pretraining checkpoints
  (``tf.train.Checkpoint(model=...)``), via ``checkpoints.restore_weights``.
  """
  encoder = BertEncoder(bert_config)
  dummy = tf.zeros([1, 2], tf.int32)
  encoder({"input_ids": dummy, "input_mask": dummy + 1, "segment_ids": dummy})  # build
  if init_checkpoint:
    checkpoints.restore_weights(init_checkpoint, encoder)
  return encoder


def extract_features(lines: Iterable[str | bytes], tokenizer: BertTokenizer,
                     encoder: BertEncoder, layer_indexes: Sequence[int], max_seq_length: int,
                     batch_size: int = 32) -> Iterator[dict]:
  """Yields google's JSON record (a dict) for each input line, in order."""
  num_layers = encoder.bert_config.num_hidden_layers
  for index in layer_indexes:
    if not -num_layers <= index < num_layers:
      raise ValueError(f"layer index {index} out of range for {num_layers} layers "
                       f"(use -{num_layers}..{num_layers - 1})")

  @tf.function
  def run(features):
    outputs = encoder(features, training=False)["encoder_outputs"]
    return [outputs[i] for i in layer_indexes]

  examples = list(read_examples(lines))
  unique_id = 0
  for start in range(0, len(examples), batch_size):
    tokens, features = convert_examples(examples[start:start + batch_size], tokenizer,
                                        max_seq_length)
    layers = [o.numpy() for o in run({k: tf.constant(v) for k, v in features.items()})]
    for row, row_tokens in enumerate(tokens):
      feats = []
      for i, token in enumerate(row_tokens):
        feats.append({"token": token, "layers": [
            {"index": index, "values": [round(float(x), 6) for x in values[row, i]]}
            for index, values in zip(layer_indexes, layers)]})
      yield {"linex_index": unique_id, "features": feats}
      unique_id += 1


def write_json_lines(records: Iterable[dict], path: str) -> int:
  n = 0
  with tf.io.gfile.GFile(path, "w") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")
      n += 1
  return n
