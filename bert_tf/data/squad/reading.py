"""Reading SQuAD JSON (1.1 and 2.0) into examples, as google's ``read_squad_examples`` does.

The context is split on whitespace (google's set: space, tab, CR, LF and U+202F) into
``doc_tokens``; an answer's character offsets become word positions. Bad input gets a message
naming the file and where: malformed JSON or invalid UTF-8 (line and column), a missing field
or one of the wrong type (the article, paragraph or question id), a question id used twice in a
prediction file, a 1.1 prediction file where only some questions have answers. A UTF-8
byte-order mark is skipped. A training answer whose text is not found at its offset is skipped
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
  """The ``data`` list of a SQuAD JSON file; errors name the file (and line and column). A UTF-8
  byte-order mark is skipped (json.load alone refuses it)."""
  import tensorflow as tf  # gfile: local paths and gs:// alike
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: no such SQuAD file")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    document = json.loads(raw.decode("utf-8-sig"))
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    raise SquadFormatError(f"{path}: not valid UTF-8 at line {line} column {column} (byte "
                           f"0x{raw[e.start]:02x} at offset {e.start}: {e.reason})") from None
  except json.JSONDecodeError as e:
    raise SquadFormatError(f"{path}: malformed JSON at line {e.lineno} column {e.colno} "
                           f"(character {e.pos}): {e.msg}") from None
  except RecursionError:
    raise SquadFormatError(f"{path}: malformed JSON: nested too deeply") from None
  if not isinstance(document, dict) or not isinstance(document.get("data"), list):
    raise SquadFormatError(f"{path}: expected a JSON object with a 'data' list (SQuAD format)")
  return document["data"]


_KINDS = {str: "a string", list: "a list", dict: "an object", int: "an integer",
          bool: "true or false"}


def _field(obj, key, path, where, kind=None):
  """``obj[key]``, checked to be of ``kind`` (a type or a tuple of types, as isinstance)."""
  if not isinstance(obj, dict):
    raise SquadFormatError(f"{path}: {where} is {_name(obj)}, expected an object")
  if key not in obj:
    raise SquadFormatError(f"{path}: {where} has no '{key}' field")
  value = obj[key]
  kinds = kind if isinstance(kind, tuple) else (kind,)
  # bool is an int in Python, but never a valid offset or id.
  if kind is not None and (not isinstance(value, kinds) or
                           (isinstance(value, bool) and bool not in kinds)):
    expected = " or ".join(_KINDS[k] for k in kinds)
    raise SquadFormatError(f"{path}: {where}: '{key}' is {_name(value)}, expected {expected}")
  return value


def _name(value) -> str:
  text = json.dumps(value, ensure_ascii=False)
  return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


def _answer_texts(qa, qas_id, path, training, required):
  """The question's answers (a list, possibly empty), each an object with a string 'text' (and
  an integer 'answer_start' for training): evaluation reads every answer's text."""
  where = f"question {qas_id!r}"
  answers = _field(qa, "answers", path, where, list) if required or "answers" in qa else []
  for i, answer in enumerate(answers):
    _field(answer, "text", path, f"{where} answer {i}", str)
    if training:
      _field(answer, "answer_start", path, f"{where} answer {i}", int)
  return answers


def _answer_positions(qa, qas_id, doc_tokens, char_to_word_offset, path):
  """(answer text, start word, end word), or None when the text is not at its offset."""
  answers = _answer_texts(qa, qas_id, path, training=True, required=True)
  if len(answers) != 1:
    hint = (" (a SQuAD 2.0 file? pass --version_2_with_negative)" if not answers and
            "is_impossible" in qa else "")
    raise SquadFormatError(f"{path}: question {qas_id!r}: for training, each answerable "
                           f"question should have exactly 1 answer, found {len(answers)}{hint}")
  text, offset = answers[0]["text"], answers[0]["answer_start"]
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
  seen, answered, first_unanswered = {}, 0, None
  for a, entry in enumerate(load_squad_json(path) if dataset is None else dataset):
    for p, paragraph in enumerate(_field(entry, "paragraphs", path, f"article {a}", list)):
      where = f"article {a} paragraph {p}"
      context = _field(paragraph, "context", path, where, str)
      doc_tokens, char_to_word_offset = split_context(context)
      for q, qa in enumerate(_field(paragraph, "qas", path, where, list)):
        qas_id = str(_field(qa, "id", path, f"question {q} of {where}", (str, int)))
        question = _field(qa, "question", path, f"question {qas_id!r}", str)
        impossible = qa.get("is_impossible", False)
        if not isinstance(impossible, bool):
          raise SquadFormatError(f"{path}: question {qas_id!r}: 'is_impossible' is "
                                 f"{_name(impossible)}, expected true or false")
        if _answer_texts(qa, qas_id, path, is_training, required=False):
          answered += 1
        elif not version_2_with_negative and first_unanswered is None:
          first_unanswered = qas_id
        if not is_training and qas_id in seen:
          # Predictions are keyed by id: a second question with the same id would overwrite
          # the first's answer.
          raise SquadFormatError(f"{path}: question id {qas_id!r} ({where}) is used twice "
                                 f"(first in {seen[qas_id]}); predictions are keyed by id")
        seen[qas_id] = where
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
          example.is_impossible = bool(version_2_with_negative and impossible)
          if example.is_impossible:
            example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
          else:
            found = _answer_positions(qa, qas_id, doc_tokens, char_to_word_offset, path)
            if found is None:
              stats.unmatched_answers.append(qas_id)
              continue
            example.orig_answer_text, example.start_position, example.end_position = found
        examples.append(example)
  if not is_training and answered and first_unanswered is not None:
    # The 1.1 evaluation scores each question against its answers: a question without any
    # cannot be scored (the official script fails on it after prediction).
    raise SquadFormatError(f"{path}: question {first_unanswered!r} has no answers while "
                           f"{answered} others have some (a SQuAD 2.0 file? pass "
                           "--version_2_with_negative)")
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
