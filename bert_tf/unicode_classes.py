"""Character classes for google-compatible tokenization, computed from Python's
``unicodedata`` (the very table google's ``BasicTokenizer`` consults), as regular-expression
classes that TensorFlow's RE2 ops apply in graph (see ``bert_tf.tokenization``)."""
from __future__ import annotations

import functools
import logging
import sys
import unicodedata

import numpy as np
import tensorflow as tf

# google's BasicTokenizer._is_chinese_char ranges: CJK Unified Ideographs and extensions, CJK
# compatibility ideographs. Hangul, Hiragana and Katakana are not in them on purpose.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


@functools.lru_cache(maxsize=None)
def _categories() -> np.ndarray:
  """Python's general category of every code point: str array [0x110000] (about 0.15 s;
  map and a fixed U2 dtype take half the time of a list comprehension and inferring it)."""
  return np.array(list(map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))), "U2")


def _char_class(mask: np.ndarray) -> str:
  """An RE2 character class ``[...]`` of the code points where ``mask`` (bool [0x110000])."""
  mask = mask.copy()
  mask[0xD800:0xE000] = False  # surrogates never occur in valid UTF-8
  edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
  parts = [f"\\x{{{lo:X}}}" if lo == hi - 1 else f"\\x{{{lo:X}}}-\\x{{{hi - 1:X}}}"
           for lo, hi in zip(edges[::2], edges[1::2])]
  return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=None)
def patterns() -> dict[str, str]:
  """RE2 patterns of google's character classes, computed once per process."""
  cats = _categories()
  cps = np.arange(len(cats))
  tab_lf_cr = np.isin(cps, [0x09, 0x0A, 0x0D])
  # google's _clean_text: NUL, U+FFFD and categories Cc/Cf are deleted; tab, LF, CR are spaces.
  control = (np.isin(cats, ["Cc", "Cf"]) & ~tab_lf_cr) | np.isin(cps, [0, 0xFFFD])
  # google's _is_whitespace (space, \t, \n, \r, Zs), plus what str.split() splits on, since
  # google splits words with str.split() (that adds U+2028 and U+2029).
  whitespace = (cats == "Zs") | tab_lf_cr | (cps == 0x20)
  whitespace[[cp for cp in range(0x3001) if chr(cp).isspace()]] = True
  # google's _is_punctuation: every non-alphanumeric printable ASCII, and categories P*.
  punctuation = (np.char.startswith(cats, "P") | ((cps >= 33) & (cps <= 47)) |
                 ((cps >= 58) & (cps <= 64)) | ((cps >= 91) & (cps <= 96)) |
                 ((cps >= 123) & (cps <= 126)))
  cjk = np.zeros(len(cats), bool)
  for lo, hi in _CJK_RANGES:
    cjk[lo:hi + 1] = True
  punct_or_cjk = _char_class(punctuation | cjk)
  return {
      "control": _char_class(control),
      "mark": _char_class(cats == "Mn"),
      "split": f"{_char_class(whitespace & ~control)}+|{punct_or_cjk}",
      "keep": punct_or_cjk,
      "unassigned": _char_class(cats == "Cn"),
  }


@functools.lru_cache(maxsize=None)
def lower_fixes() -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(code points, their lower case) where TensorFlow's ICU and Python's str.lower() disagree.

  TensorFlow's ICU may be of an older Unicode version than Python's unicodedata (TF 2.20
  does not lower-case the Unicode 14 letters that Python 3.11 does, e.g. U+2C2F, U+10570).
  Only single code point mappings are listed; no multi-character one has differed so far.
  """
  cats = _categories()
  # Only letters, letter numbers (Roman numerals) and symbols (circled letters) have a case.
  maybe = np.flatnonzero(np.isin(cats, ["Lu", "Lt", "Ll", "Lm", "Lo", "Nl", "So", "Mn"]))
  cased = [chr(cp) for cp in maybe.tolist() if chr(cp).lower() != chr(cp)]
  icu = tf.strings.lower(tf.constant([c.encode("utf-8") for c in cased]), encoding="utf-8")
  keys, values = [], []
  for c, lowered in zip(cased, icu.numpy()):
    if lowered.decode("utf-8") != c.lower():
      if len(c.lower()) != 1:
        logging.warning("lower-casing of U+%04X differs from Python's and is not fixed", ord(c))
        continue
      keys.append(ord(c))
      values.append(ord(c.lower()))
  return tuple(keys), tuple(values)


@functools.lru_cache(maxsize=None)
def plain_class() -> str:
  """A Python ``re`` class of the non-ASCII code points google's normalization leaves alone
  and that never sit inside a word: punctuation (P*), space separators (Zs) and the CJK
  ideographs google splits off, each unchanged by ``str.lower()`` and by NFD. Text whose
  non-ASCII characters are all in it normalizes as ASCII text does (see
  ``bert_tf.tokenization.BertTokenizer.encode_batch``)."""
  cats = _categories()
  candidates = np.char.startswith(cats, "P") | (cats == "Zs")
  for lo, hi in _CJK_RANGES:
    candidates[lo:hi + 1] = True
  candidates[:128] = False
  keep = [cp for cp in np.flatnonzero(candidates).tolist()
          if chr(cp).lower() == chr(cp) and unicodedata.normalize("NFD", chr(cp)) == chr(cp)]
  parts, start = [], None
  for i, cp in enumerate(keep):  # ranges of consecutive code points
    if start is None:
      start = cp
    if i + 1 == len(keep) or keep[i + 1] != cp + 1:
      parts.append(f"\\U{start:08X}" if start == cp else f"\\U{start:08X}-\\U{cp:08X}")
      start = None
  return "[" + "".join(parts) + "]"
