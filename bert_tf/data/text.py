"""Raw prose -> google's pretraining input format, and the embedded demo corpus.

google's ``create_pretraining_data.py`` reads one sentence per line with a blank line between
documents (sentence boundaries feed next-sentence prediction). ``split_sentences`` and
``text_to_documents`` turn plain prose into that; ``demo_documents`` builds a real English
corpus from the Python documentation that CPython ships (``pydoc_data.topics``), so the demo
works offline without copying anyone's prose into this repository.

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


# ---------------------------------------------------------------------------------------------
# The embedded demo corpus.

_HEADING_RULE = re.compile(r"^(\*+|=+|-+|~+)$")


def _is_code(paragraph_lines: list[str]) -> bool:
  first = paragraph_lines[0]
  return (first.startswith((">>>", "...", "$ ")) or
          any(line.lstrip().startswith(("+-", "+=", "| ", "===")) for line in paragraph_lines) or
          all(line.startswith("   ") for line in paragraph_lines) and
          any(c in "".join(paragraph_lines) for c in "()=[]{}:") and
          not any(line.rstrip().endswith(".") for line in paragraph_lines))


def demo_documents() -> list[list[str]]:
  """English prose from CPython's bundled documentation (``pydoc_data.topics``).

  Each section (a heading underlined with ``*``, ``=`` or ``-``) becomes a document; code
  examples, tables and grammar productions are left out, prose paragraphs are split into sentences.

  Returns:
    list of documents (lists of sentences), in a fixed order (sorted topic names).
  """
  import pydoc_data.topics
  documents = []
  for name in sorted(pydoc_data.topics.topics):
    sections = [[]]
    lines = pydoc_data.topics.topics[name].splitlines()
    for i, line in enumerate(lines):
      if _HEADING_RULE.match(line.strip()) and i > 0 and lines[i - 1].strip():
        sections[-1].pop()  # the heading text itself
        sections.append([])
      else:
        sections[-1].append(line)
    for section in sections:
      doc = []
      for block in re.split(r"\n\s*\n", "\n".join(section)):
        block_lines = [line for line in block.splitlines() if line.strip()]
        if not block_lines or _is_code(block_lines):
          continue
        doc.extend(s for s in split_sentences(" ".join(block_lines)) if len(s.split()) >= 3)
      if len(doc) >= 2:
        documents.append(doc)
  return documents
