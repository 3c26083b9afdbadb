"""20,000 random Unicode strings through our tokenizer (the batch API, vectorised) and google's
FullTokenizer (tf-models-official's copy, at google's 200-character word limit), for a cased
and an uncased vocabulary: zero mismatches, never an exception.

The strings mix the classes tokenizers get wrong: accented letters (precomposed and with
combining marks), CJK ideographs, kana and Hangul, emoji with skin tones and joiners, control
and format characters, zero-width characters, every Unicode whitespace kind, punctuation of
every script, unassigned code points, lone surrogates, and words near and past 200
characters. The vocabulary is built from the reference's own word split of half the strings,
so WordPiece finds whole words, split words and ## pieces, and misses some ([UNK])."""
import random
import sys
import unicodedata

import pytest
from official.nlp.tools import tokenization as reference

from bert_tf import tokenization

pytestmark = pytest.mark.unit

CASES = 20_000
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WHITESPACE = [chr(c) for c in range(sys.maxunicode + 1)
              if chr(c).isspace() or unicodedata.category(chr(c)) == "Zs"]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
CONTROL = [chr(c) for c in list(range(0, 32)) + list(range(127, 160))]
COMBINING = [chr(c) for c in range(0x300, 0x370)] + ["\u20d7", "\u1ab0", "\ufe20"]
EMOJI = ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤\ufe0f", "🏳\ufe0f\u200d🌈", "\U0001fae0"]


def _pool(lo, hi):
  return [chr(c) for c in range(lo, hi) if unicodedata.category(chr(c))[0] in "LNPS"]


ACCENTED = _pool(0xc0, 0x250) + _pool(0x1e00, 0x1f00)
CJK = _pool(0x4e00, 0x4f00) + _pool(0x3040, 0x3100) + _pool(0xac00, 0xac80) + ["豈", "更"]
SCRIPTS = _pool(0x370, 0x530) + _pool(0x590, 0x700) + _pool(0x900, 0x980) + \
    _pool(0xe00, 0xe60)
PUNCT = _pool(0x21, 0x80) + _pool(0x2010, 0x2060) + _pool(0x3000, 0x3020) + _pool(0xff01, 0xff60)


def _word(rng):
  kind = rng.random()
  if kind < 0.35:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                   for _ in range(rng.randint(1, 9)))
  if kind < 0.5:
    base = "".join(rng.choice("aeiouAEIOUnc") for _ in range(rng.randint(1, 5)))
    return "".join(ch + (rng.choice(COMBINING) if rng.random() < 0.5 else "") for ch in base)
  if kind < 0.6:
    return "".join(rng.choice(ACCENTED) for _ in range(rng.randint(1, 6)))
  if kind < 0.68:
    return "".join(rng.choice(CJK) for _ in range(rng.randint(1, 4)))
  if kind < 0.74:
    return "".join(rng.choice(SCRIPTS) for _ in range(rng.randint(1, 6)))
  if kind < 0.8:
    return rng.choice(EMOJI)
  if kind < 0.87:
    return rng.choice(PUNCT) * rng.randint(1, 2)
  if kind < 0.885:  # at google's 200-character word limit (WordPiece there is quadratic)
    return rng.choice("xéж") * rng.choice([199, 200, 201, 400])
  if kind < 0.95:
    return rng.choice(CONTROL + ZERO_WIDTH) + rng.choice("ab")
  if kind < 0.98:
    return chr(rng.randint(0x80, sys.maxunicode))  # anything, unassigned and private included
  return chr(rng.randint(0xd800, 0xdfff))  # a lone surrogate


def random_strings(seed, count):
  rng = random.Random(seed)
  out = []
  for _ in range(count):
    words = [_word(rng) for _ in range(rng.randint(0, 8))]
    text = ""
    for word in words:
      text += word + "".join(rng.choice(WHITESPACE + [" "] * 8 + ZERO_WIDTH[:2])
                             for _ in range(rng.randint(0 if rng.random() < 0.2 else 1, 3)))
    out.append(text)
  return out


def _vocab(path, texts, lower):
  """Whole words, words cut in two (head + ##tail), characters and ## characters, from the
  reference's basic split of ``texts``; some characters left out so [UNK] happens."""
  rng = random.Random(int(lower))
  basic = reference.BasicTokenizer(do_lower_case=lower)
  words = sorted({w for t in texts for w in basic.tokenize(t) if len(w) < 60
                  and not any(0xd800 <= ord(c) <= 0xdfff for c in w)})  # not writable
  chars = sorted({c for w in words for c in w})
  tokens = list(SPECIALS)
  tokens += [c for c in chars if rng.random() < 0.9]
  tokens += ["##" + c for c in chars if rng.random() < 0.8]
  for w in rng.sample(words, min(len(words), 4000)):
    if len(w) > 2 and rng.random() < 0.5:
      cut = rng.randint(1, len(w) - 1)
      tokens += [w[:cut], "##" + w[cut:]]
    else:
      tokens.append(w)
  tokens = list(dict.fromkeys(tokens))
  path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
  return str(path)


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_20000_random_unicode_strings_match_google_and_never_raise(lower, tmp_path):
  texts = random_strings(seed=16 + lower, count=CASES)
  vocab = _vocab(tmp_path / "vocab.txt", texts[::2], lower)
  ref = reference.FullTokenizer(vocab, do_lower_case=lower)
  ref.wordpiece_tokenizer.max_input_chars_per_word = tokenization.MAX_CHARS_PER_WORD
  ours = tokenization.BertTokenizer(vocab, do_lower_case=lower)
  got = []
  for i in range(0, CASES, 2000):  # the batch API, never raising
    got += ours.encode_batch(texts[i:i + 2000])
  assert len(got) == CASES
  mismatches, unknown = [], 0
  for text, ids in zip(texts, got):
    expected = ref.convert_tokens_to_ids(ref.tokenize(text))
    unknown += expected.count(ref.vocab["[UNK]"])
    if ids != expected:
      mismatches.append(repr(text[:80]))
  print(f"\n{'uncased' if lower else 'cased'}: {CASES} strings, {len(mismatches)} mismatches, "
        f"{unknown} [UNK] pieces")
  assert not mismatches, mismatches[:5]
  assert unknown > 0  # the vocab misses some: the [UNK] paths ran too
