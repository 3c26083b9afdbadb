"""bert_tf.tokenization against google's FullTokenizer (tf-models-official's copy)."""
import collections
import os
import random
import sys
import tempfile
import unicodedata

import bert_tf  # noqa: F401  (before tensorflow: selects Keras 2)
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.nlp.tools import tokenization as reference

from bert_tf import tokenization

pytestmark = pytest.mark.unit

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

EDGE_CASES = [
    "Hello, World! It's 3:45 p.m.; isn't it?",
    "Café naïve résumé ÉCOLE Ångström Straße İstanbul ǅemal ﬁne ½ ² Ⅻ",
    "ΟΔΟΣ ΑΣ. Σ σ ΣΑ ΑΣ\u00ad ὈΔΥΣΣΕΎΣ",  # Greek final sigma (context-dependent lower())
    "中文字符测试，你好！ 日本語のテキストです。 한국어 텍스트 豈更",  # CJK, kana, Hangul, compat
    "a\x00b\u00adc\u200bd\x7fe\tf\r\ng\x0bh\x1ci\u2028j\u2029k\x85l\ufeffm\ufffdn",  # controls
    "emoji 😀👍🏽 👨‍👩‍👧 ok 🇫🇷 ❤️",
    "¿Qué? «quotes» — dash… ‘’ “” $^`~ § ¶ † ‰ ※ ⁂ 〜 ・ ﹏",
    "x" * 199 + " " + "y" * 200 + " " + "z" * 201 + " " + "é" * 150 + " " + "ж" * 201,
    "Ελληνικά κείμενο, русский текст, עברית, العربية, हिन्दी, ไทยภาษาไทยไม่มีช่องว่าง" * 3,
    "ไทย" * 80,  # one 240-char word of 720 bytes: [UNK] by characters, not by bytes
    "ab\u0301\u0327c A\u030a\u0323 \u1fef x\u1fefy",  # combining marks, NFD producing '`'
    "unassigned \U0001b4e0 mid\u1b4eword \U00011b00",  # unassigned in Python's Unicode 14
    "   leading and trailing   ",
    "",
    "\u3000full\u3000width\u3000ｆｕｌｌ ＡＢＣ！",
    "tab\tsep\u00a0nbsp\u2003em\u202fnarrow",
]


def _corpus_lines():
  import pydoc_data.topics
  text = "\n".join(pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)[:40])
  return [line for line in text.split("\n") if line.strip()]


def _write_vocab(path, lines, do_lower_case, seed=0):
  """A vocab that exercises WordPiece: every char, ## chars, whole words, split words."""
  basic = reference.BasicTokenizer(do_lower_case=do_lower_case)
  counts, chars = collections.Counter(), set()
  for line in lines:
    for word in basic.tokenize(line):
      counts[word] += 1
      chars.update(word)
  rng = random.Random(seed)
  tokens = SPECIALS + sorted(chars)[:-50] + ["##" + c for c in sorted(chars)[:-80]]
  tokens += [w for w, _ in counts.most_common(1500) if 1 < len(w) < 100]
  for w, _ in counts.most_common(3000):
    if 3 < len(w) < 100:
      k = rng.randint(1, len(w) - 1)
      tokens += [w[:k], "##" + w[k:]]
  tokens += ["the", "", "[unused0]", "the"]  # an empty line and a duplicate, as google allows
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def corpus():
  return _corpus_lines() + EDGE_CASES


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def tokenizers(request, corpus, tmp_path_factory):
  lower = request.param
  vocab = _write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt", corpus, lower)
  ref = reference.FullTokenizer(vocab, do_lower_case=lower)
  # google's released tokenization.py limits words to 200 characters (Model Garden: 400).
  ref.wordpiece_tokenizer.max_input_chars_per_word = tokenization.MAX_CHARS_PER_WORD
  return ref, tokenization.BertTokenizer(vocab, do_lower_case=lower)


def _reference_ids(ref, line):
  return ref.convert_tokens_to_ids(ref.tokenize(line))


def test_ids_identical_to_reference(tokenizers, corpus):
  ref, ours = tokenizers
  assert ours.vocab == ref.vocab
  got = ours.encode_batch(corpus)
  for line, ids in zip(corpus, got):
    assert ids == _reference_ids(ref, line), repr(line[:80])
  assert ours.tokenize(EDGE_CASES[1]) == ref.tokenize(EDGE_CASES[1])


def test_bytes_input_and_invalid_utf8(tokenizers):
  ref, ours = tokenizers
  lines = [b"ab\xffcd \xe2\x82xy\xed\xa0\x80z \xc3\xa9t\xc3", "caf\u00e9".encode("utf-8"),
           b"\xf0\x9f\x98 ok", b"\x80\x80\x80"]
  assert ours.encode_batch(lines) == [_reference_ids(ref, line) for line in lines]
  # In graph, the layer drops the invalid bytes itself.
  layer = ours.keras_layer()
  assert layer(tf.constant(lines)).to_list() == [_reference_ids(ref, line) for line in lines]


def test_every_code_point_matches_reference(tokenizers):
  """Every assigned code point (and a sample of the rest) between two letters, both cases.

  The vocab holds every character the reference produces as a token and a ##suffix, so the
  ids spell out the exact characters after cleaning, lower-casing, accent stripping and
  splitting: any disagreement on a character's class or mapping changes the ids.
  """
  ref, _ = tokenizers
  lower = ref.basic_tokenizer.do_lower_case
  cps = [cp for cp in range(sys.maxunicode + 1)
         if not 0xD800 <= cp <= 0xDFFF
         and (unicodedata.category(chr(cp)) not in ("Cn", "Co") or cp % 97 == 0)]
  lines = [" ".join("x%sx" % chr(cp) for cp in cps[i:i + 200]) for i in range(0, len(cps), 200)]
  basic = reference.BasicTokenizer(do_lower_case=lower)
  # Unassigned code points stay out of the vocab, as in every real one: their words are [UNK]
  # for both (newer ICU tables may decompose or split them; the result is [UNK] all the same).
  chars = sorted({c for line in lines for word in basic.tokenize(line) for c in word
                  if unicodedata.category(c) != "Cn"})
  vocab = SPECIALS + chars + ["##" + c for c in chars]
  ref_all = reference.FullTokenizer.__new__(reference.FullTokenizer)
  ref_all.vocab = {t: i for i, t in enumerate(vocab)}
  ref_all.basic_tokenizer = basic
  ref_all.wordpiece_tokenizer = reference.WordpieceTokenizer(ref_all.vocab,
                                                             max_input_chars_per_word=200)
  layer = tokenization.TokenizerLayer(vocab, do_lower_case=lower)
  got = layer(tf.constant([line.encode("utf-8") for line in lines])).to_list()
  for line, ids in zip(lines, got):
    expected = _reference_ids(ref_all, line)
    if ids != expected:  # name the first differing character
      diff = next(i for i, (a, b) in enumerate(zip(ids + [-1], expected + [-1])) if a != b)
      pytest.fail(f"code point mismatch near ours={vocab[ids[diff]] if diff < len(ids) else None!r}"
                  f" reference={vocab[expected[diff]] if diff < len(expected) else None!r}")


def test_plain_lines_batch_paths_match_reference(tokenizers):
  """encode_batch's plain-line path (normalized with C string methods, no normalization ops):
  all-plain batches, mixed batches, bytes, a NUL inside a line, long words, ASCII controls."""
  ref, ours = tokenizers
  plain = ["Hello, World! It\u2019s \u201cquoted\u201d \u2014 ok\u2026 \u4e2d\u6587\u3002\u3000x",
           "ASCII ctrl\x01\x7f\x0bhere\ttab\r\nEND", "x" * 200 + " " + "y" * 201 + "\u2019" + "z" * 200,
           "", "   ", "MiXeD CaSe 3:45 p.m.; isn't it?", "\u00a0nbsp\u2003em\u3000ideo"]
  other = ["Caf\u00e9 \u00c9COLE", "\uf900 compat", "\u0394\u0399\u039f\u03a3", "a\u00adb", "\u00df"]
  cases = [plain, plain + other, other + plain[::-1], [t.encode("utf-8") for t in plain + other],
           [b"plain \xff\xe2\x80 bytes", b"\xe2\x80\x99q"], ["a\x00b " + plain[0]] + plain,
           [plain[0].encode("utf-8"), plain[1]], [plain[0]] * 3, plain + other * 221]
  for batch in cases:  # the last: over 1024 other lines, in parallel chunks
    assert ours.encode_batch(batch) == [_reference_ids(ref, t) for t in batch], batch[:2]
  with pytest.raises(TypeError):
    ours.encode_batch(["ok", 3])


def test_every_plain_code_point_matches_reference(tokenizers):
  """Each code point of the plain class (unicode_classes.plain_class) through encode_batch's
  plain path, between ASCII letters in both cases, with every character in the vocab."""
  from bert_tf.unicode_classes import plain_class
  import re
  ref, _ = tokenizers
  lower = ref.basic_tokenizer.do_lower_case
  plain_re = re.compile(plain_class())
  cps = [cp for cp in range(0x80, sys.maxunicode + 1)
         if not 0xD800 <= cp <= 0xDFFF and plain_re.match(chr(cp))]
  assert 0x2019 in cps and 0x4E2D in cps and 0xE9 not in cps and 0xF900 not in cps
  lines = ["".join("xX%sYy" % chr(cp) for cp in cps[i:i + 100]) for i in range(0, len(cps), 100)]
  chars = sorted({c for line in lines for c in line.lower()} | set("xXyY"))
  vocab = SPECIALS + chars + ["##" + c for c in chars] + ["xx", "##yy", "yyxx", "##yyxx"]
  path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in vocab))
  ref_all = reference.FullTokenizer(path, do_lower_case=lower)
  ours = tokenization.BertTokenizer(path, do_lower_case=lower)
  assert ours._unplain.search("".join(lines)) is None  # all on the plain path
  assert ours.encode_batch(lines) == [_reference_ids(ref_all, line) for line in lines]


def test_random_unicode_never_raises_and_matches(tokenizers):
  ref, ours = tokenizers
  rng = random.Random(1)
  def rand_char():
    r = rng.random()
    if r < 0.5:
      return chr(rng.randint(0x20, 0x7e))
    if r < 0.8:
      return chr(rng.randint(0x80, 0x3000))
    return chr(rng.randint(0, sys.maxunicode))  # may be a lone surrogate
  lines = ["".join(rand_char() for _ in range(rng.randint(0, 300))) for _ in range(300)]
  got = ours.encode_batch(lines)  # must not raise
  assert len(got) == len(lines)
  for line, ids in zip(lines, got):
    assert ids == _reference_ids(ref, line), repr(line[:60])


def test_keras_layer_in_tf_data_and_saved_model(tokenizers, tmp_path):
  ref, ours = tokenizers
  lines = EDGE_CASES[:6]
  expected = [_reference_ids(ref, line) for line in lines]
  layer = ours.keras_layer()
  ds = tf.data.Dataset.from_tensor_slices(lines).batch(3).map(layer)
  assert [row for batch in ds for row in batch.to_list()] == expected
  # Scalar input gives a dense vector.
  assert layer(tf.constant(lines[0])).numpy().tolist() == expected[0]

  inputs = tf_keras.Input(shape=(), dtype=tf.string)
  model = tf_keras.Model(inputs, layer(inputs).to_tensor())
  model.save(str(tmp_path / "tok"), include_optimizer=False)
  restored = tf.saved_model.load(str(tmp_path / "tok"))
  padded = restored(tf.constant(lines)).numpy()
  for row, ids in zip(padded, expected):
    assert row[:len(ids)].tolist() == ids and not np.any(row[len(ids):])
  # get_config round trip.
  clone = tokenization.TokenizerLayer.from_config(layer.get_config())
  assert clone(tf.constant(lines)).to_list() == expected


def test_bad_vocab_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.txt"):
    tokenization.BertTokenizer(str(tmp_path / "missing.txt"))
  no_unk = tmp_path / "no_unk.txt"
  no_unk.write_text("[PAD]\na\n##b\n")
  with pytest.raises(ValueError, match=r"no_unk.txt.*\[UNK\]"):
    tokenization.BertTokenizer(str(no_unk))
