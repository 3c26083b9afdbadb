"""Raw prose -> google's pretraining input format.

google's ``create_pretraining_data.py`` reads one sentence per line with a blank line between
documents (sentence boundaries feed next-sentence prediction). ``split_sentences`` and
``text_to_documents`` turn plain prose into that; ``write_documents`` writes it
(``bert_tf.data.demo.corpus`` uses them on the Python documentation for the demo corpus).

No library here does sentence splitting without a model download (NLTK's punkt and spaCy need
data files), so a rule-based splitter is written by hand: good enough for demo-scale prose.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

# Abbreviations after which a period does not end a sentence (lower-cased, without the dot).
_ABBREVIATIONS = frozenset("""
e.g i.e etc vs cf al fig figs eq eqs no nos vol pp ed eds approx dept est inc ltd co corp jr sr
mr mrs ms dr prof st mt rev gen col lt sgt capt jan feb mar apr jun jul aug sep sept oct nov dec
""".split())

# A candidate boundary: sentence-final punctuation, optional closing quotes/brackets, spaces,
# then something that can start a sentence (capital, digit, opening quote or bracket).
_BOUNDARY = re.compile(r"""([.!?]+["')\]]*)\s+(?=["'(\[]?[A-Z0-9])""")


def split_sentences(paragraph: str) -> list[str]:
  """Splits one paragraph of prose into sentences.

  Args:
    paragraph: str; internal newlines and runs of spaces are treated as single spaces.

  Returns:
    list of str, the sentences in order, stripped; [] for a blank paragraph.
  """
  text = " ".join(paragraph.split())
  sentences, start = [], 0
  for m in _BOUNDARY.finditer(text):
    end = m.end(1)
    word = text[start:m.start(1)].rsplit(" ", 1)[-1]
    # "e.g." / "Dr." / a lone initial "J." / a version "3.": not the end of a sentence.
    if m.group(1).startswith(".") and len(m.group(1)) == 1 and (
        word.lower().rstrip(".") in _ABBREVIATIONS or len(word) == 1 or word[-1:].isdigit()):
      continue
    sentences.append(text[start:end].strip())
    start = m.end()
  tail = text[start:].strip()
  if tail:
    sentences.append(tail)
  return [s for s in sentences if s]


def paragraphs(text: str) -> list[str]:
  """Blank-line separated blocks of ``text``, each with its lines joined by spaces."""
  return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def text_to_documents(text: str, document_per: str = "file") -> list[list[str]]:
  """Plain prose -> documents as lists of sentences.

  Args:
    text: str, paragraphs separated by blank lines.
    document_per: "file" (all of ``text`` is one document) or "paragraph" (each paragraph is).

  Returns:
    list of documents, each a non-empty list of sentences (str).
  """
  if document_per not in ("file", "paragraph"):
    raise ValueError(f"document_per must be 'file' or 'paragraph', got {document_per!r}")
  docs = [split_sentences(p) for p in paragraphs(text)]
  if document_per == "file":
    docs = [[s for d in docs for s in d]]
  return [d for d in docs if d]


def format_documents(documents: Iterable[list[str]]) -> Iterator[str]:
  """Yields google's input format: one sentence a line, a blank line after each document."""
  for doc in documents:
    for sentence in doc:
      # A sentence must stay on one line: a newline inside would start another sentence.
      yield " ".join(sentence.split()) + "\n"
    yield "\n"


def write_documents(documents: Iterable[list[str]], path: str) -> int:
  """Writes documents in google's input format to ``path``; returns the number of documents."""
  import tensorflow as tf  # gfile: local paths and gs:// alike
  n = 0
  with tf.io.gfile.GFile(path, "w") as f:
    for line in format_documents(documents):
      f.write(line)
      n += line == "\n"
  return n
