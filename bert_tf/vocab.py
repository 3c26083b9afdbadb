"""Learn a WordPiece vocabulary from a corpus, with BERT's special tokens.

The learning is tensorflow-text's (``wordpiece_tokenizer_learner_lib.learn``, the algorithm
behind ``bert_vocab_from_dataset``). Only the word counting is ours: ``bert_vocab_from_dataset``
splits words with tensorflow-text's BasicTokenizer, which case-folds and classifies characters
slightly differently from google's tokenizer; counting the words that ``bert_tf.tokenization``
(google's exact splitting) produces makes the vocabulary fit the tokenizer that will use it.
"""
from __future__ import annotations

import collections
from typing import Iterable, Sequence

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from bert_tf import tokenization

# google's order puts [PAD] first (id 0 = padding in every record) and [MASK] after [SEP].
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def count_words(texts: Iterable[str | bytes], do_lower_case: bool = True,
                batch_size: int = 4096) -> collections.Counter:
  """Counts the words of ``texts`` as google's BasicTokenizer splits them.

  Args:
    texts: iterable of lines (str or UTF-8 bytes).
    do_lower_case: lower-case and strip accents first (uncased vocabulary).

  Returns:
    collections.Counter word (str) -> count.
  """
  layer = tokenization.TokenizerLayer(list(RESERVED_TOKENS) + ["a"], do_lower_case=do_lower_case)
  split = tf.function(lambda s: layer.split_words(layer.normalize(s)).flat_values,
                      input_signature=[tf.TensorSpec([None], tf.string)])
  counts = collections.Counter()
  batch = []

  def flush():
    if batch:
      counts.update(split(tf.constant(batch)).numpy().tolist())
      batch.clear()

  for text in texts:
    batch.append(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if len(batch) >= batch_size:
      flush()
  flush()
  counts.pop(b"[UNK]", None)  # words over 200 characters, as the tokenizer marks them
  return collections.Counter({w.decode("utf-8", "replace"): c for w, c in counts.items()})


def build_vocab(texts: Iterable[str | bytes], vocab_size: int, do_lower_case: bool = True,
                reserved_tokens: Sequence[str] = RESERVED_TOKENS, num_unused: int = 0,
                lower_thresh: int = 2, max_unique_chars: int = 1000) -> list[str]:
  """Learns a WordPiece vocabulary of at most ``vocab_size`` tokens.

  Args:
    texts: iterable of lines of the corpus.
    vocab_size: int, maximum size including the reserved tokens.
    do_lower_case: True for an uncased vocabulary.
    reserved_tokens: tokens that come first, in this order ([PAD] must be id 0).
    num_unused: adds "[unused0]".."[unusedN-1]" placeholders after the reserved tokens, as
      google's vocabularies have, for tokens added later.
    lower_thresh: a word piece needs at least this count (small corpora need a low value).
    max_unique_chars: alphabet size cap (rare characters become [UNK]).

  Returns:
    list of str, the vocabulary in id order.
  """
  reserved = list(reserved_tokens) + [f"[unused{i}]" for i in range(num_unused)]
  if vocab_size <= len(reserved):
    raise ValueError(f"vocab_size {vocab_size} leaves no room after {len(reserved)} reserved tokens")
  counts = count_words(texts, do_lower_case)
  if not counts:
    raise ValueError("the corpus has no words")
  vocab = learner.learn(counts.items(), vocab_size, reserved, lower_thresh=lower_thresh,
                        max_unique_chars=max_unique_chars, num_iterations=4)
  return vocab[:vocab_size]


def write_vocab(vocab: Sequence[str], path: str) -> None:
  """Writes google's vocab.txt: one token a line, in id order."""
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(token + "\n" for token in vocab))
