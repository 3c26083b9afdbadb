"""The embedded demo corpus: English prose from the Python documentation that CPython ships
(``pydoc_data.topics``), so the demo works offline without copying anyone's prose into this
repository."""
from __future__ import annotations

import re

from bert_tf.data.text import split_sentences

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
