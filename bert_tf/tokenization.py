"""google-compatible WordPiece tokenization, in graph, with tensorflow-text.

``BertTokenizer`` gives exactly the ids of google's ``tokenization.FullTokenizer`` (shipped in
tf-models-official as ``official.nlp.tools.tokenization.FullTokenizer``), for cased and uncased
vocabularies, but runs as TensorFlow ops on whole batches: usable from Python, inside
``tf.data`` and in an exported SavedModel (``TokenizerLayer``).

Why not ``tensorflow_text.BertTokenizer`` / ``FastBertTokenizer`` as they are: they case-fold
(NFKC_Casefold: "Straße" -> "strasse") where google calls ``str.lower()``, turn control
characters into spaces where google deletes them ("a\\x00b" is one word for google), and limit
words in bytes, not in characters. So normalization is spelled out here with regular
expressions whose classes come from Python's ``unicodedata`` (the table google consults).

Pipeline for a batch of strings (all TensorFlow ops):
  1. drop bytes that are not valid UTF-8 (google decodes with ``errors="ignore"``);
  2. delete NUL, U+FFFD and control/format characters except tab, CR and LF;
  3. uncased only: ``str.lower()`` (ICU's, with Greek final sigma as Python's; letters the older
     ICU leaves alone are mapped from Python's table), NFD, delete marks (category Mn);
  4. fast path: ``FastWordpieceTokenizer`` end to end (it splits like google on every code
     point Python assigns), words over ``max_chars_per_word`` *bytes* cut to the unknown token;
  5. exact path, only for rows where step 4 cut a word by bytes or with a code point Python
     leaves unassigned: split with Python's classes, cut words by characters, WordPiece.
``BertTokenizer.encode_batch`` normalizes "plain" lines (ASCII, plus characters normalization
keeps that are words alone: curly quotes, dashes, CJK) with C string methods, then step 4.
Every assigned code point is checked against the reference in tests/test_tokenization.py.
"""
from __future__ import annotations

import gc
import itertools
import logging
import os
import re
from typing import Iterable, Sequence

import tensorflow as tf
import tensorflow_text as tf_text
import tf_keras

from bert_tf.unicode_classes import lower_fixes, patterns, plain_class

# google's WordpieceTokenizer.max_input_chars_per_word. (Model Garden's copy of the reference
# raised it to 400; google's released models were trained with 200.)
MAX_CHARS_PER_WORD = 200

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# ---------------------------------------------------------------------------------------------
# Vocabulary.


def load_vocab(vocab_file: str) -> dict[str, int]:
  """Reads a ``vocab.txt`` (one token a line) into {token: id}, exactly as google does.

  google strips each line (so a token never holds surrounding whitespace) and, for a token
  listed twice, keeps the id of its last line.
  """
  if not tf.io.gfile.exists(vocab_file):
    raise FileNotFoundError(f"vocab file not found: {vocab_file}")
  vocab = {}
  with tf.io.gfile.GFile(vocab_file, "rb") as f:
    for index, line in enumerate(f):
      vocab[line.decode("utf-8", "ignore").strip()] = index
  if not vocab:
    raise ValueError(f"{vocab_file}: the vocab file is empty")
  return vocab


def _id_list(vocab: dict[str, int]) -> list[str]:
  """The vocab as a list indexed by id, as ``FastWordpieceTokenizer`` wants it.

  Ids that google's dict does not map to (a duplicated token's earlier lines, an empty line)
  get a placeholder holding a space: words never contain spaces, so it can never match.
  """
  tokens = [f" <unused {i}>" for i in range(max(vocab.values()) + 1)]
  for token, index in vocab.items():
    if token:
      tokens[index] = token
  return tokens


def _fit_for_wordpiece(vocab: list[str]) -> list[str]:
  # FastWordpieceTokenizer refuses tokens over 256 UTF-8 bytes (none in released vocabs):
  # such a token becomes unmatchable (with a warning) rather than failing the build.
  out = []
  for i, token in enumerate(vocab):
    if len(token.encode("utf-8")) - (2 if token.startswith("##") else 0) > 256:
      logging.warning("vocab token %d is over 256 UTF-8 bytes and will never match", i)
      token = f" <too long {i}>"
    out.append(token)
  return out


# ---------------------------------------------------------------------------------------------
# In-graph tokenization.


class TokenizerLayer(tf_keras.layers.Layer):
  """google-compatible BERT tokenization as a Keras layer (tf.data and SavedModel friendly).

  Args:
    vocab: list of tokens indexed by id, or a path to google's ``vocab.txt``.
    do_lower_case: True for uncased vocabularies (lower case and strip accents).
    max_chars_per_word: words longer than this many characters become ``unk_token``.
    unk_token: the unknown token; must be in the vocabulary.
    output_type: ``tf.int32``, ``tf.int64`` (ids) or ``tf.string`` (word pieces).
    validate_utf8: drop invalid UTF-8 bytes first (as google does); skip only for valid input.
    parallel_chunks: the batch is cut into this many row ranges tokenized by independent ops,
      which TensorFlow runs on different cores (its string kernels are single-threaded).

  Call: string Tensor [batch_size] (or a scalar), UTF-8 -> RaggedTensor [batch_size,
  (num_tokens)] of ``output_type`` (for a scalar, a Tensor [num_tokens]); no [CLS]/[SEP].
  """

  def __init__(self, vocab, do_lower_case: bool = True,
               max_chars_per_word: int = MAX_CHARS_PER_WORD, unk_token: str = "[UNK]",
               output_type=tf.int32, validate_utf8: bool = True, parallel_chunks: int = 2,
               **kwargs):
    super().__init__(**kwargs)
    if isinstance(vocab, (str, os.PathLike)):
      self._vocab_file = os.fspath(vocab)
      vocab = _id_list(load_vocab(self._vocab_file))
    else:
      self._vocab_file = None
      vocab = list(vocab)
    vocab_dict = {t: i for i, t in enumerate(vocab)}  # a repeated token keeps its last id
    if unk_token not in vocab_dict:
      raise ValueError(f"unk_token {unk_token!r} is not in the vocabulary "
                       f"({self._vocab_file or 'list of %d tokens' % len(vocab)})")
    self._set_vocab(vocab)
    vocab = _fit_for_wordpiece(vocab)
    self.do_lower_case, self.max_chars_per_word = bool(do_lower_case), int(max_chars_per_word)
    self.unk_token, self.unk_id = unk_token, vocab_dict[unk_token]
    self.output_type, self.validate_utf8 = tf.dtypes.as_dtype(output_type), bool(validate_utf8)
    self.parallel_chunks = max(1, int(parallel_chunks))
    self._patterns = patterns()
    # Fast path: tensorflow-text's end-to-end FastWordpieceTokenizer splits like google for
    # every code point Python assigns (tests/test_tokenization.py checks all). Its word limit
    # is in bytes: a word it accepts is short enough in characters; longer ones go exact.
    self._fast = tf_text.FastWordpieceTokenizer(
        vocab=vocab, suffix_indicator="##", max_bytes_per_word=self.max_chars_per_word,
        token_out_type=tf.int64, unknown_token=unk_token, no_pretokenization=False)
    # Exact path, for rows with a word over max_chars_per_word bytes or a code point Python
    # leaves unassigned: split with Python-derived classes, cut long words by characters.
    self._exact = tf_text.FastWordpieceTokenizer(
        vocab=vocab, suffix_indicator="##", max_bytes_per_word=4 * self.max_chars_per_word + 4,
        token_out_type=tf.int64, unknown_token=unk_token, no_pretokenization=True)
    self._vocab_tensor = None
    keys, values = lower_fixes() if self.do_lower_case else ((), ())
    self._lower_keys = tf.constant(keys, tf.int32) if keys else None
    self._lower_values = tf.constant(values, tf.int32) if keys else None
    self._lower_pattern = "(?s).*[" + "".join(f"\\x{{{k:X}}}" for k in keys) + "].*"

  @tf.__internal__.tracking.no_automatic_dependency_tracking
  def _set_vocab(self, vocab):  # untracked: Keras wraps a list item by item (0.1 s for 30k)
    self.vocab = vocab

  def normalize(self, strings: tf.Tensor) -> tf.Tensor:
    """google's _clean_text (and lower-casing, accent stripping): string Tensor [batch_size]."""
    text = strings
    if self.validate_utf8:
      text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="ignore")
    text = tf.strings.regex_replace(text, self._patterns["control"], "")
    if self.do_lower_case:
      # Lower-casing the whole line equals google's lower() of each whitespace-separated word:
      # the final-sigma context never crosses whitespace, and google splits punctuation only
      # after lower-casing, as here.
      text = tf.strings.lower(text, encoding="utf-8")
      if self._lower_keys is not None:
        text = tf.cond(tf.reduce_any(tf.strings.regex_full_match(text, self._lower_pattern)),
                       lambda: self._fix_lower(text), lambda: text)
      text = tf_text.normalize_utf8(text, "NFD")
      text = tf.strings.regex_replace(text, self._patterns["mark"], "")
    return text

  def _fix_lower(self, text: tf.Tensor) -> tf.Tensor:
    """Lower-cases the code points ICU left alone but Python's str.lower() maps."""
    chars = tf.strings.unicode_decode(text, "UTF-8")
    flat = chars.flat_values
    index = tf.minimum(tf.searchsorted(self._lower_keys, flat), tf.size(self._lower_keys) - 1)
    hit = tf.gather(self._lower_keys, index) == flat
    flat = tf.where(hit, tf.gather(self._lower_values, index), flat)
    return tf.strings.unicode_encode(chars.with_flat_values(flat), "UTF-8")

  def split_words(self, text: tf.Tensor) -> tf.RaggedTensor:
    """google's word split of normalized text: RaggedTensor [batch_size, (words)], long -> unk."""
    words = tf_text.regex_split(text, self._patterns["split"], self._patterns["keep"])
    too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > self.max_chars_per_word
    return words.with_flat_values(tf.where(too_long, self.unk_token, words.flat_values))

  def _tokenize_chunk(self, strings: tf.Tensor) -> tf.RaggedTensor:
    text = self.normalize(strings)
    ids, starts, ends = self._fast.tokenize_with_offsets(text)
    # An unknown token wider than max_chars_per_word bytes is a word the byte limit cut.
    # (Elementwise ops on the flat values: the same on RaggedTensors cost 5x more.)
    cut = (ids.flat_values == self.unk_id) & (
        ends.flat_values - starts.flat_values > self.max_chars_per_word)
    unassigned = tf.strings.regex_full_match(text, "(?s).*" + self._patterns["unassigned"] + ".*")

    def merge_exact():
      batch = ids.nrows()
      cut_rows = tf.math.unsorted_segment_max(tf.cast(cut, tf.int32), ids.value_rowids(), batch)
      redo = tf.where((cut_rows > 0) | unassigned)[:, 0]
      exact = self._exact.tokenize(self.split_words(tf.gather(text, redo))).merge_dims(1, 2)
      order = tf.tensor_scatter_nd_update(
          tf.range(batch), redo[:, tf.newaxis], batch + tf.range(tf.size(redo, tf.int64)))
      return tf.gather(tf.concat([ids, exact], axis=0), order)

    # Most batches have nothing to redo, and the merge costs as much as the fast path.
    return tf.cond(tf.reduce_any(cut) | tf.reduce_any(unassigned), merge_exact, lambda: ids)

  def call(self, strings):
    strings = tf.convert_to_tensor(strings, tf.string)
    scalar = strings.shape.rank == 0
    if scalar:
      strings = strings[tf.newaxis]
    if self.parallel_chunks == 1:
      ids = self._tokenize_chunk(strings)
    else:
      batch = tf.shape(strings, out_type=tf.int64)[0]
      bounds = [batch * i // self.parallel_chunks for i in range(self.parallel_chunks + 1)]
      ids = tf.concat([self._tokenize_chunk(strings[bounds[i]:bounds[i + 1]])
                       for i in range(self.parallel_chunks)], axis=0)
    if self.output_type == tf.string:
      if self._vocab_tensor is None:
        self._vocab_tensor = tf.constant(self.vocab)
      ids = tf.gather(self._vocab_tensor, ids)
    else:
      ids = tf.cast(ids, self.output_type)
    return ids[0] if scalar else ids

  def get_config(self):
    config = super().get_config()
    config.update(vocab=self._vocab_file or self.vocab, do_lower_case=self.do_lower_case,
                  max_chars_per_word=self.max_chars_per_word, unk_token=self.unk_token,
                  output_type=self.output_type.name, validate_utf8=self.validate_utf8,
                  parallel_chunks=self.parallel_chunks)
    return config


# ---------------------------------------------------------------------------------------------
# Python API.

_SURROGATES = re.compile("[\ud800-\udfff]")
# google's _clean_text deletes these (category Cc, other than tab, LF and CR).
_ASCII_CONTROL = bytes(c for c in range(128) if c < 32 and c not in b"\t\n\r" or c == 127)


def _lists(ids: tf.RaggedTensor | list[tf.Tensor]) -> list[list[int]]:
  """Each row's ids as a list of int, from a RaggedTensor or [flat values, row splits]."""
  values, splits = (ids.flat_values, ids.row_splits) if hasattr(ids, "row_splits") else ids
  # Slicing one flat list is several times faster than RaggedTensor.to_list(); lists of ints
  # make no cycles, so the collector (which thousands of new lists trigger) is paused.
  values, splits = values.numpy().tolist(), splits.numpy().tolist()
  paused = gc.isenabled()
  gc.disable()
  rows = [values[a:b] for a, b in zip(splits[:-1], splits[1:])]
  if paused:
    gc.enable()
  return rows


def _joined(texts: Sequence[str | bytes]) -> str | None:
  """The texts as one NUL-separated str (bytes decoded as google does); None if a text holds
  a NUL or is not str or bytes (or they mix)."""
  try:
    joined = "\0".join(texts)
  except TypeError:
    try:
      joined = b"\0".join(texts).decode("utf-8", "ignore")  # no UTF-8 sequence holds a NUL
    except TypeError:
      return None
  return joined if joined.count("\0") == len(texts) - 1 else None


class BertTokenizer:
  """Drop-in replacement for google's ``FullTokenizer``, batched and in graph.

  Args:
    vocab_file: path to google's ``vocab.txt``.
    do_lower_case: True for uncased vocabularies.
    max_chars_per_word: google's limit (200): longer words become ``[UNK]``.
    unk_token: the unknown token.
    parallel_chunks: see ``TokenizerLayer``.

  Attributes:
    vocab: dict token -> id, as google's ``load_vocab`` builds it.
    inv_vocab: dict id -> token.
  """

  def __init__(self, vocab_file: str, do_lower_case: bool = True,
               max_chars_per_word: int = MAX_CHARS_PER_WORD, unk_token: str = "[UNK]",
               parallel_chunks: int = 2):
    self.vocab_file = vocab_file
    self.vocab = load_vocab(vocab_file)
    self.inv_vocab = {v: k for k, v in self.vocab.items()}
    self.do_lower_case, self.max_chars_per_word = do_lower_case, max_chars_per_word
    self.unk_token = unk_token
    if unk_token not in self.vocab:
      raise ValueError(f"{vocab_file}: unk_token {unk_token!r} is not in the vocabulary")
    # Text reaches the layer as UTF-8 encoded here, so the layer need not validate it.
    self._layer = TokenizerLayer(_id_list(self.vocab), do_lower_case, max_chars_per_word,
                                 unk_token, tf.int32, validate_utf8=False,
                                 parallel_chunks=parallel_chunks)
    # Traced once; batches of any size reuse it. No autograph (tf.cond is explicit): its source
    # rewriting was 0.44 of the plain path's 0.47 s of tracing.
    spec = [tf.TensorSpec([None], tf.string)]
    self._fn = tf.function(self._layer, input_signature=spec, autograph=False)
    self._unplain = re.compile("[^\\x00-\\x7f" + plain_class()[1:])  # see encode_batch
    self._ascii_table = bytes(range(256)).lower() if do_lower_case else None  # ASCII only
    self._plain_fn = tf.function(self._plain_ids, input_signature=spec, autograph=False)
    # A lone surrogate (possible in a Python str, not in UTF-8) is, for google, a character of
    # no category that makes its word [UNK]; so is a private-use character not in the vocab.
    self._surrogate_stand_in = next(chr(cp) for cp in range(0xE000, 0xF8FF)
                                    if chr(cp) not in self.vocab
                                    and "##" + chr(cp) not in self.vocab)

  def keras_layer(self, output_type=tf.int32, **kwargs) -> TokenizerLayer:
    """A new ``TokenizerLayer`` with this tokenizer's vocabulary file and options."""
    return TokenizerLayer(self.vocab_file, self.do_lower_case, self.max_chars_per_word,
                          self.unk_token, output_type, **kwargs)

  def _to_bytes(self, texts: Iterable[str | bytes]) -> list[bytes]:
    out = []
    for t in texts:
      if isinstance(t, bytes):
        t = t.decode("utf-8", "ignore")  # google's convert_to_unicode
      elif not isinstance(t, str):
        raise TypeError(f"expected str or bytes, got {type(t).__name__}: {t!r}")
      try:
        out.append(t.encode("utf-8"))
      except UnicodeEncodeError:
        out.append(_SURROGATES.sub(self._surrogate_stand_in, t).encode("utf-8"))
    return out

  def _plain_ids(self, strings: tf.Tensor) -> list[tf.Tensor]:
    """Ids of plain text already normalized: [flat ids, row splits] per parallel chunk.

    Plain text (see encode_batch) normalizes as ASCII does: delete the ASCII control
    characters and, uncased, lower-case ASCII letters (``_plain_texts``). Its words of more
    than one character are ASCII, so ``FastWordpieceTokenizer``'s byte limit is google's
    character limit, and all its code points are assigned: the output needs no exact path.
    """
    parts, chunks = [], self._layer.parallel_chunks
    batch = tf.shape(strings, out_type=tf.int64)[0]
    for i in range(chunks):
      ids = self._layer._fast.tokenize(strings[batch * i // chunks:batch * (i + 1) // chunks])
      parts += [tf.cast(ids.flat_values, tf.int32), ids.row_splits]
    return parts

  def _plain_lists(self, joined: str) -> list[list[int]]:
    """Ids of NUL-separated plain texts, normalized here in C string methods."""
    normalized = joined.encode("utf-8").translate(self._ascii_table, _ASCII_CONTROL[1:])
    parts = self._plain_fn(tf.constant(normalized.split(b"\0")))
    return [ids for i in range(0, len(parts), 2) for ids in _lists(parts[i:i + 2])]

  def encode_ragged(self, texts: Sequence[str | bytes]) -> tf.RaggedTensor:
    """int32 RaggedTensor of shape [batch_size, (num_tokens)]: the ids of each text."""
    return self._fn(tf.constant(self._to_bytes(texts), tf.string, shape=[len(texts)]))

  def encode_batch(self, texts: Sequence[str | bytes]) -> list[list[int]]:
    """Token ids of each text: list (len batch_size) of lists of int."""
    if not len(texts):
      return []
    # Plain lines (see the module doc) skip the normalization ops; the others take them.
    joined = _joined(texts)
    if joined is None:  # a NUL in a text, or a text of another type (raises the TypeError)
      return _lists(self.encode_ragged(texts))
    unplain = self._unplain.search
    if joined.isascii() or not unplain(joined):
      return self._plain_lists(joined)
    strs = joined.split("\0")
    plain = [t.isascii() or not unplain(t) for t in strs]
    plain_ids = iter(self._plain_lists("\0".join(itertools.compress(strs, plain)))
                     if any(plain) else ())
    other = self._to_bytes([t for t, p in zip(strs, plain) if not p])
    # A few lines run eagerly as one chunk (1 ms for 50 lines; tracing costs 0.5 s of CPU).
    fn = self._fn if len(other) > 1024 else self._layer._tokenize_chunk
    other_ids = iter(_lists(fn(tf.constant(other, tf.string, shape=[len(other)]))))
    return [next(plain_ids) if p else next(other_ids) for p in plain]

  def tokenize_batch(self, texts: Sequence[str | bytes]) -> list[list[str]]:
    """Word pieces of each text: list (len batch_size) of lists of str."""
    inv = self.inv_vocab
    return [[inv[i] for i in row] for row in self.encode_batch(texts)]

  def tokenize(self, text: str | bytes) -> list[str]:
    """FullTokenizer.tokenize: one text -> list of word pieces."""
    return self.tokenize_batch([text])[0]

  def encode(self, text: str | bytes) -> list[int]:
    """One text -> list of ids (FullTokenizer's convert_tokens_to_ids(tokenize(text)))."""
    return self.encode_batch([text])[0]

  def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
    return [self.vocab[t] for t in tokens]

  def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
    return [self.inv_vocab[int(i)] for i in ids]
