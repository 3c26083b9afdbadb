"""Entity-level scoring as the CoNLL evaluation script (conlleval) and seqeval's default mode
compute it, and the CoNLL-format predictions file conlleval reads.

Chunks (IOB1 and IOB2 alike): a chunk starts at B-X, or at I-X after O or after a tag of
another type; it ends before O, before B-, or before a tag of another type. A predicted chunk
is correct when a gold chunk has the same type, start and end. Precision, recall and F1 per
type and micro-averaged over all chunks; accuracy over all tokens (O included).
"""
from __future__ import annotations

from typing import Sequence

OUTSIDE = "O"


def _split(tag: str) -> tuple[str, str]:
  """(prefix, type): "B-PER" -> ("B", "PER"); "O" or a tag without a B-/I- prefix (counted as
  outside by this scorer) -> ("O", "")."""
  if len(tag) > 2 and tag[1] == "-" and tag[0] in "BI":
    return tag[0], tag[2:]
  return OUTSIDE, ""


def chunks(tags: Sequence[str]) -> set[tuple[str, int, int]]:
  """{(type, first token, last token + 1)} of one sentence's tags."""
  found, start, kind = set(), None, ""
  for i, tag in enumerate(list(tags) + [OUTSIDE]):
    prefix, this = _split(tag)
    ends = start is not None and (prefix in (OUTSIDE, "B") or this != kind)
    if ends:
      found.add((kind, start, i))
      start = None
    if prefix == "B" or (prefix == "I" and start is None):
      start, kind = i, this
  return found


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
  precision = correct / predicted if predicted else 0.0
  recall = correct / gold if gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return precision, recall, f1


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
  """Scores of predicted tag sequences against gold ones (one sequence per sentence):
  {"precision", "recall", "f1", "accuracy", "per_type": {type: (p, r, f1, gold count)}}."""
  counts = {}  # type -> [correct, predicted, gold]
  right = total = 0
  for g, p in zip(gold, predicted, strict=True):
    if len(g) != len(p):
      raise ValueError(f"a sentence has {len(g)} gold tags but {len(p)} predicted")
    right += sum(a == b for a, b in zip(g, p))
    total += len(g)
    gold_chunks, predicted_chunks = chunks(g), chunks(p)
    for index, found in ((1, predicted_chunks), (2, gold_chunks)):
      for chunk in found:
        counts.setdefault(chunk[0], [0, 0, 0])[index] += 1
    for chunk in gold_chunks & predicted_chunks:
      counts[chunk[0]][0] += 1
  totals = [sum(c[i] for c in counts.values()) for i in range(3)]
  precision, recall, f1 = _prf(*totals)
  return {"precision": precision, "recall": recall, "f1": f1,
          "accuracy": right / total if total else 0.0,
          "per_type": {kind: (*_prf(*c), c[2]) for kind, c in sorted(counts.items())}}


def conll_lines(sentences, predicted: Sequence[Sequence[str]]) -> list[str]:
  """CoNLL-format predictions, ``word gold predicted`` a line, a blank line after each
  sentence and a ``-DOCSTART-`` line where a new document begins (conlleval reads it)."""
  lines, document = [], None
  for sentence, tags in zip(sentences, predicted, strict=True):
    if document is not None and sentence.document != document:
      lines += ["-DOCSTART- O O\n", "\n"]
    document = sentence.document
    lines += [f"{w} {g} {p}\n" for w, g, p in zip(sentence.words, sentence.tags, tags)]
    lines.append("\n")
  return lines
