"""Reading SQuAD JSON (1.1 and 2.0) into examples, as google's ``read_squad_examples`` does.

The context is split on whitespace (google's set: space, tab, CR, LF and U+202F) into
``doc_tokens``; an answer's character offsets become word positions. Bad input gets a message
naming the file and where: malformed JSON (line and column), a missing field (the article,
paragraph or question id). A training answer whose text is not found at its offset is skipped
and counted as google's reader does ("Could not find answer"), now with the question id; an
empty context is an error naming the question, or, with ``skip_empty_contexts``, skipped and
counted.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

from absl import logging


class SquadFormatError(ValueError):
  """The file is not a SQuAD JSON file we can read; the message names the file and where."""


@dataclasses.dataclass
class SquadExample:
  """One question on one paragraph (google's ``SquadExample``). Positions are word indexes
  into ``doc_tokens`` (-1 for an impossible answer, None when not training)."""
  qas_id: str
  question_text: str
  doc_tokens: list
  orig_answer_text: Optional[str] = None
  start_position: Optional[int] = None
  end_position: Optional[int] = None
  is_impossible: bool = False


@dataclasses.dataclass
class ReadStats:
  questions: int = 0
  unmatched_answers: list = dataclasses.field(default_factory=list)  # question ids skipped
  empty_contexts: list = dataclasses.field(default_factory=list)     # question ids skipped

  def summary(self, path: str) -> str:
    return (f"{path}: {self.questions} questions; skipped {len(self.unmatched_answers)} whose "
            f"answer is not in its context, {len(self.empty_contexts)} with an empty context")


def is_whitespace(c: str) -> bool:
  """google's run_squad whitespace: space, tab, CR, LF and the narrow no-break space."""
  return c in " \t\r\n" or ord(c) == 0x202F


def split_context(text: str) -> tuple[list, list]:
  """(doc_tokens, char_to_word_offset): whitespace-separated words and, for each character,
  the index of the word it belongs to (whitespace: the word before it; -1 before the first)."""
  doc_tokens, char_to_word_offset = [], []
  prev_is_whitespace = True
  for c in text:
    if is_whitespace(c):
      prev_is_whitespace = True
    else:
      if prev_is_whitespace:
        doc_tokens.append(c)
      else:
        doc_tokens[-1] += c
      prev_is_whitespace = False
    char_to_word_offset.append(len(doc_tokens) - 1)
  return doc_tokens, char_to_word_offset


def load_squad_json(path: str) -> list:
  """The ``data`` list of a SQuAD JSON file; errors name the file (and line and column)."""
  import tensorflow as tf  # gfile: local paths and gs:// alike
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no such SQuAD file")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    document = json.loads(raw.decode("utf-8"))
  except UnicodeDecodeError as e:
    raise SquadFormatError(f"{path}: not UTF-8 at byte {e.start}: {e.reason}") from None
  except json.JSONDecodeError as e:
    raise SquadFormatError(f"{path}: malformed JSON at line {e.lineno} column {e.colno} "
                           f"(character {e.pos}): {e.msg}") from None
  if not isinstance(document, dict) or not isinstance(document.get("data"), list):
    raise SquadFormatError(f"{path}: expected a JSON object with a 'data' list (SQuAD format)")
  return document["data"]


def _field(obj, key, path, where):
  if not isinstance(obj, dict) or key not in obj:
    raise SquadFormatError(f"{path}: {where} has no '{key}' field")
  return obj[key]


def _answer_positions(qa, qas_id, doc_tokens, char_to_word_offset, path):
  """(answer text, start word, end word), or None when the text is not at its offset."""
  answers = _field(qa, "answers", path, f"question {qas_id!r}")
  if len(answers) != 1:
    hint = (" (a SQuAD 2.0 file? pass --version_2_with_negative)" if not answers and
            "is_impossible" in qa else "")
    raise SquadFormatError(f"{path}: question {qas_id!r}: for training, each answerable "
                           f"question should have exactly 1 answer, found {len(answers)}{hint}")
  text = _field(answers[0], "text", path, f"the answer of question {qas_id!r}")
  offset = _field(answers[0], "answer_start", path, f"the answer of question {qas_id!r}")
  end = offset + len(text) - 1
  if not text or not 0 <= offset <= end < len(char_to_word_offset):
    logging.warning("Could not find answer of question %s: offset %s, %d characters, outside "
                    "its context of %d", qas_id, offset, len(text), len(char_to_word_offset))
    return None
  start_position, end_position = char_to_word_offset[offset], char_to_word_offset[end]
  # Only answers whose text is recovered from the document (google: "likely due to weird
  # Unicode stuff"); the others are skipped.
  actual_text = " ".join(doc_tokens[start_position:end_position + 1])
  cleaned_answer_text = " ".join(text.split())
  if actual_text.find(cleaned_answer_text) == -1:
    logging.warning("Could not find answer of question %s: '%s' vs. '%s'", qas_id,
                    actual_text, cleaned_answer_text)
    return None
  return text, start_position, end_position


def read_squad_examples(path: str, is_training: bool, version_2_with_negative: bool,
                        skip_empty_contexts: bool = False,
                        stats: Optional[ReadStats] = None,
                        dataset: Optional[list] = None) -> list[SquadExample]:
  """google's ``read_squad_examples``: one ``SquadExample`` per question, in file order.

  Training: each answerable question needs exactly one answer (google's rule); with
  ``version_2_with_negative``, ``is_impossible`` questions get positions -1. Answers not found
  in their context are skipped and counted in ``stats.unmatched_answers``. ``dataset``: the
  file's ``data`` list if already loaded (``load_squad_json``).
  """
  stats = stats if stats is not None else ReadStats()
  examples = []
  for a, entry in enumerate(load_squad_json(path) if dataset is None else dataset):
    for p, paragraph in enumerate(_field(entry, "paragraphs", path, f"article {a}")):
      where = f"article {a} paragraph {p}"
      context = _field(paragraph, "context", path, where)
      doc_tokens, char_to_word_offset = split_context(context)
      for qa in _field(paragraph, "qas", path, where):
        qas_id = str(_field(qa, "id", path, f"a question of {where}"))
        question = _field(qa, "question", path, f"question {qas_id!r}")
        stats.questions += 1
        if not doc_tokens:
          if not skip_empty_contexts:
            raise SquadFormatError(f"{path}: question {qas_id!r} ({where}) has an empty "
                                   "context (--skip_empty_contexts skips and counts such "
                                   "questions)")
          stats.empty_contexts.append(qas_id)
          continue
        example = SquadExample(qas_id, question, doc_tokens)
        if is_training:
          example.is_impossible = bool(version_2_with_negative and qa.get("is_impossible"))
          if example.is_impossible:
            example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
          else:
            found = _answer_positions(qa, qas_id, doc_tokens, char_to_word_offset, path)
            if found is None:
              stats.unmatched_answers.append(qas_id)
              continue
            example.orig_answer_text, example.start_position, example.end_position = found
        examples.append(example)
  if stats.unmatched_answers or stats.empty_contexts:
    logging.warning("%s (answers not found: %s%s; empty contexts: %s)", stats.summary(path),
                    ", ".join(stats.unmatched_answers[:20]),
                    " ..." if len(stats.unmatched_answers) > 20 else "",
                    ", ".join(stats.empty_contexts[:20]))
  return examples


def has_answers(dataset: list) -> bool:
  """True when the file carries gold answers (or 2.0 impossibility marks) to score against."""
  return any(qa.get("answers") or qa.get("is_impossible")
             for entry in dataset for paragraph in entry.get("paragraphs", ())
             for qa in paragraph.get("qas", ()))
