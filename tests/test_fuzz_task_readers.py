"""The SQuAD JSON reader and the CoNLL reader against random files (seeded): quotes, tabs,
``\\r\\n`` / ``\\r``-only / ``\\n`` line ends, byte-order marks, invalid UTF-8, short and long
rows, bad tags, every kind of Unicode whitespace, CJK, emoji, combining and zero-width marks.

CoNLL: the sentences read (words, tags, document) equal those written, or the error names
``file:line`` of the first bad line; with ``skip_malformed`` the sentences holding a bad line
are skipped and counted, the others read exactly. Then every file read is featurized (the
tokenizer never fails on what the reader returns).

SQuAD: well-formed files read as Model Garden's copy of google's reader reads them (every
field, training and prediction, 1.1 and 2.0) and featurize; each broken file (malformed JSON,
invalid UTF-8, a missing field, a field of the wrong type, an empty context, a duplicate id) is
a ``SquadFormatError`` naming the file and where (the question id where there is one), and an
answer outside its context is skipped and counted by question id. Never another exception.
"""
import collections
import copy
import json
import os
import random
import re

import pytest

from bert_tf import tokenization
from bert_tf.data import squad
from bert_tf.data import tagging
from bert_tf.data.classifier.reading import MalformedRowError

pytestmark = pytest.mark.unit

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CONLL_FILES, SQUAD_FILES = 160, 140
# Word characters: no space, tab, CR or LF (the separators); other whitespace is text.
_CHARS = ("abZé\"'“”«»\\,.;!?-_ 中文😀👍🏽\u0301\u200b\u00a0\u3000\x0b\x0c\x1c\x85\u2028"
          "\x00\x7f\ufeffİß").replace(" ", "")
_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG")
_BLANKS = ("", " ", "\t", " \t ", "\x0b", "\u3000", "\u00a0")


def _word(rng, allow_cr):
  chars = _CHARS + ("\r" if allow_cr else "")
  while True:
    word = "".join(rng.choice(chars) for _ in range(rng.randint(1, 6)))
    # Not all whitespace (a line of whitespace ends a sentence), no \r at either end (a line
    # end), no byte-order mark first (the file's would be taken for it).
    if (word != "-DOCSTART-" and word.strip() and word[0] not in "\ufeff\r" and
        word[-1] != "\r"):
      return word


def _separator(rng):
  return rng.choice([" ", " ", "\t", "  ", " \t"])


def _write_conll(rng, path):
  """One random CoNLL file. Returns (read_conll keywords, expected sentences as (words, tags,
  document) of the good ones, the bad line numbers, the sentence count, the sentences with a
  bad line)."""
  if rng.random() < 0.5:
    task, width, label_column = "conll2003", 4, -1
  else:
    width = rng.randint(2, 5)
    task, label_column = "bio", rng.choice([c for c in range(-width + 1, width) if c != 0])
  labels = None if rng.random() < 0.9 else list(_TAGS[:-1])  # evaluation: I-ORG unknown
  ending = rng.choice([b"\n", b"\r\n", b"\r"])
  lines, expected, bad = [], [], []
  sentences = bad_sentences = 0
  document = 0
  first_token_line = True
  for _ in range(rng.choice([0, 1, 1, 2, 3])):
    if rng.random() < 0.7:
      lines.append(_separator(rng).join(["-DOCSTART-", "-X-", "-X-", "O"][:width]))
      document += 1
      lines.append(rng.choice(_BLANKS))
    for _ in range(rng.randint(0 if rng.random() < 0.05 else 1, 4)):
      words, tags, broken = [], [], False
      for _ in range(rng.randint(1, 5)):
        word, tag = _word(rng, ending != b"\r"), rng.choice(_TAGS)
        columns = [word] + [_word(rng, ending != b"\r") for _ in range(width - 1)]
        columns[label_column] = tag
        kind = rng.random() if not (first_token_line and task == "bio") else 1.0
        first_token_line = False
        if kind < 0.01:
          columns = columns[:-1]                                  # short
        elif kind < 0.02:
          columns.append(_word(rng, ending != b"\r"))             # long
        elif kind < 0.025:
          columns[label_column] = rng.choice(["S-PER", "B-", "o", "B-PER\u00a0"])  # not BIO
        lead = rng.choice(["", "", "", " ", "\t"])
        raw = (lead + "".join(c + _separator(rng) for c in columns[:-1]) + columns[-1] +
               rng.choice(["", "", " ", "\t"])).encode("utf-8")
        if 0.025 <= kind < 0.035:
          cut = rng.randint(0, len(raw))
          raw = raw[:cut] + rng.choice([b"\xff", b"\xed\xa0\x80", b"\xc3("]) + raw[cut:]
        if kind < 0.035 or (labels is not None and tag not in labels):
          bad.append(len(lines) + 1)
          broken = True
        lines.append(raw)
        words.append(word)
        tags.append(tag)
      sentences += 1
      if broken:
        bad_sentences += 1
      else:
        expected.append((tuple(words), tuple(tags), document))
      for _ in range(rng.randint(1, 2)):
        lines.append(rng.choice(_BLANKS))
  if lines and rng.random() < 0.3:
    lines.pop()  # no blank line after the last sentence
  body = ending.join(x if isinstance(x, bytes) else x.encode() for x in lines)
  body += ending if lines and rng.random() < 0.8 else b""
  with open(path, "wb") as f:
    f.write((b"\xef\xbb\xbf" if rng.random() < 0.2 else b"") + body)
  keywords = dict(task=task, label_column=label_column, labels=labels)
  return keywords, expected, bad, sentences, bad_sentences


@pytest.fixture(scope="module")
def conll_tokenizer():
  return tokenization.BertTokenizer(os.path.join(DATA, "conll", "vocab.txt"),
                                    do_lower_case=False)


def test_random_conll_files_read_exactly_or_name_the_first_bad_line(tmp_path,
                                                                    conll_tokenizer):
  rng = random.Random(1613)
  outcomes = collections.Counter()
  ids = {tag: i for i, tag in enumerate(_TAGS)}
  for i in range(CONLL_FILES):
    path = str(tmp_path / f"{i}.txt")
    keywords, expected, bad, sentences, bad_sentences = _write_conll(rng, path)
    read = lambda **kw: [(s.words, s.tags, s.document)  # noqa: E731
                         for s in tagging.read_conll(path, **keywords, **kw)]
    if bad:
      with pytest.raises(MalformedRowError, match=rf"^{re.escape(path)}:{bad[0]}: "):
        read()
      outcomes["bad line named"] += 1
    else:
      assert read() == expected, path
      outcomes["read exactly" if expected else "no sentences"] += 1
    stats = tagging.ReadStats()
    got = read(skip_malformed=True, stats=stats)
    assert got == expected, path
    assert (stats.rows, stats.skipped) == (sentences, bad_sentences), path
    if got:  # what the reader returns always tokenizes and aligns
      features = tagging.featurize(tagging.read_conll(path, **keywords, skip_malformed=True),
                                   conll_tokenizer, 16, ids, doc_context=rng.random() < 0.5)
      assert features.num_words == sum(len(words) for words, _, _ in got)
  print(f"CoNLL fuzz: {CONLL_FILES} random files, each read strict and skipping: "
        f"{dict(outcomes)}")
  assert min(outcomes.values()) >= 10 and len(outcomes) == 3


# ---- SQuAD --------------------------------------------------------------------------------

_SPACES = (" ", " ", " ", "  ", "\t", "\n", "\r\n", "\u202f")   # google's whitespace
_SQUAD_CHARS = ("abcxyzKLMé0123\"'“”«»\\/{}[],.:;!?中文東京😀👍🏽\u0301\u200b\u00a0\u3000\x0b\x85"
                "\u2028\x00\x7f\ufeffİß")


def _context(rng):
  words = ["".join(rng.choice(_SQUAD_CHARS) for _ in range(rng.randint(1, 7)))
           for _ in range(rng.randint(1, 30))]
  text = rng.choice(["", " ", "\n"])
  starts = []
  for w in words:
    starts.append(len(text))
    text += w + rng.choice(_SPACES)
  return text, words, starts


def _squad_document(rng, v2):
  """A well-formed random SQuAD document; every answerable question has one answer, some of
  whose offsets are shifted (google skips those whose text is then not found)."""
  articles, n = [], 0
  for _ in range(rng.randint(1, 3)):
    paragraphs = []
    for _ in range(rng.randint(1, 3)):
      context, words, starts = _context(rng)
      qas = []
      for _ in range(rng.randint(1, 4)):
        n += 1
        question = "".join(rng.choice(_SQUAD_CHARS + " ") for _ in range(rng.randint(1, 20)))
        qa = {"id": rng.choice([f"q{n}", f"Ид-{n}\u00e9", n]), "question": question}
        if v2 and rng.random() < 0.3:
          qa.update(answers=[], is_impossible=True)
        else:
          i = rng.randrange(len(words))
          j = min(len(words) - 1, i + rng.randint(0, 3))
          start = starts[i] + (rng.randint(-3, 3) if rng.random() < 0.15 else 0)
          text = context[starts[i]:starts[j] + len(words[j])]
          start = max(0, min(start, len(context) - len(text)))  # inside: google indexes it
          qa["answers"] = [{"text": text, "answer_start": start}]
          if v2:
            qa["is_impossible"] = False
        qas.append(qa)
      paragraphs.append({"context": context, "qas": qas})
    articles.append({"title": "t", "paragraphs": paragraphs})
  return {"version": "2.0" if v2 else "1.1", "data": articles}


def _questions(document):
  return [(a, p, qa) for a, article in enumerate(document["data"])
          for p, paragraph in enumerate(article["paragraphs"]) for qa in paragraph["qas"]]


# Each breakage: (what it does to one random question / paragraph / article / the file, the
# message after "path: " (a regex; {id} is the question's id), errors in training, in
# prediction). A breakage that is not an error in one mode must read there as before.
def _set(key, value, level="qa"):
  return level, lambda obj: obj.__setitem__(key, value)


def _drop(key, level="qa"):
  return level, lambda obj: obj.pop(key)


def _answer(key, value):
  return "qa", lambda qa: qa["answers"][0].__setitem__(key, value) if qa.get("answers") else \
      qa.__setitem__("answers", [{"text": "x", key: value}])


BREAKAGES = {
    "no question": (_drop("question"), r"question {id} has no 'question' field", True, True),
    "question a list": (_set("question", ["Who?"]),
                        r"question {id}: 'question' is list \[\"Who\?\"\], expected a string",
                        True, True),
    "no id": (_drop("id"), r"question \d+ of article \d+ paragraph \d+ has no 'id' field",
              True, True),
    "id null": (_set("id", None), r"'id' is NoneType null, expected a string or an integer",
                True, True),
    "id true": (_set("id", True), r"'id' is bool true, expected a string or an integer",
                True, True),
    "is_impossible a string": (_set("is_impossible", "false"),
                               r"question {id}: 'is_impossible' is str \"false\", expected "
                               r"true or false", True, True),
    "answers a string": (_set("answers", "Paris"),
                         r"question {id}: 'answers' is str \"Paris\", expected a list",
                         True, True),
    "answer text a number": (_answer("text", 1895), r"question {id} answer 0: 'text' is int "
                             r"1895, expected a string", True, True),
    "answer_start a string": (_answer("answer_start", "12"), r"question {id} answer 0: "
                              r"'answer_start' is str \"12\", expected an integer", True, False),
    "answer_start a float": (_answer("answer_start", 1.0), r"'answer_start' is float 1.0, "
                             r"expected an integer", True, False),
    "answer_start missing": (("qa", lambda qa: qa.__setitem__("answers", [
        {"text": a["text"]} for a in qa.get("answers") or [{"text": "x"}]])),
                             r"question {id} answer 0 has no 'answer_start' field", True, False),
    "no context": (_drop("context", "paragraph"), r"article \d+ paragraph \d+ has no "
                   r"'context' field", True, True),
    "context null": (_set("context", None, "paragraph"), r"'context' is NoneType null, "
                     r"expected a string", True, True),
    "empty context": (_set("context", " \u202f\n\t", "paragraph"), r"question {id} \(article "
                      r"\d+ paragraph \d+\) has an empty context \(--skip_empty_contexts", True,
                      True),
    "qas an object": (_set("qas", {}, "paragraph"), r"'qas' is dict \{\}, expected a list",
                      True, True),
    "question a string": (("paragraph", lambda p: p["qas"].insert(0, "Who?")),
                          r"question 0 of article \d+ paragraph \d+ is str \"Who\?\", "
                          r"expected an object", True, True),
    "paragraphs a string": (_set("paragraphs", "text", "article"), r"article \d+: "
                            r"'paragraphs' is str \"text\", expected a list", True, True),
    "article a number": (("data", lambda data: data.insert(0, 7)), r"article 0 is int 7, "
                         r"expected an object", True, True),
    "duplicate id": (("paragraph", lambda p: p["qas"].append(copy.deepcopy(p["qas"][0]))),
                     r"question id {id} \(article \d+ paragraph \d+\) is used twice", False,
                     True),
    "no data": (("file", lambda d: d.pop("data")), r"expected a JSON object with a 'data' "
                r"list", True, True),
    "truncated": (("text", None), r"malformed JSON at line \d+ column \d+", True, True),
    "invalid utf-8": (("bytes", None), r"not valid UTF-8 at line \d+ column \d+ \(byte 0x",
                      True, True),
}


def _break(rng, document, name):
  """Applies breakage ``name``; returns (bytes to write, the id of the question it names)."""
  (level, change), *_ = BREAKAGES[name]
  a, p, qa = rng.choice(_questions(document))
  article = document["data"][a]
  paragraph = article["paragraphs"][p]
  qid = qa["id"]
  if level == "qa":
    change(qa)
  elif level == "paragraph":
    change(paragraph)
    first = paragraph["qas"][0] if isinstance(paragraph["qas"], list) else None
    qid = first["id"] if isinstance(first, dict) else None
  elif level == "article":
    change(article)
  elif level in ("data", "file"):
    change(document["data"] if level == "data" else document)
  text = json.dumps(document, ensure_ascii=rng.random() < 0.3, indent=rng.choice([None, 1]))
  if level == "text":
    text = text[:rng.randint(1, len(text) - 1)]
  raw = text.encode("utf-8")
  if level == "bytes":
    cut = rng.randint(0, len(raw))
    raw = raw[:cut] + b"\xff" + raw[cut:]
  return raw, qid


def _fields(example):
  return (str(example.qas_id), example.question_text, example.doc_tokens,
          example.orig_answer_text, example.start_position, example.end_position,
          example.is_impossible)


@pytest.fixture(scope="module")
def squad_tokenizer():
  return tokenization.BertTokenizer(os.path.join(DATA, "squad", "vocab.txt"))


@pytest.fixture
def quiet_absl():
  """google's reader (and ours) log every unmatched answer: hundreds of lines here."""
  from absl import logging
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  yield
  logging.set_verbosity(verbosity)


def test_random_squad_files_read_as_google_or_fail_naming_the_question(tmp_path,
                                                                       squad_tokenizer,
                                                                       quiet_absl):
  from official.nlp.data import squad_lib
  rng = random.Random(1316)
  outcomes = collections.Counter()
  names = sorted(BREAKAGES)
  for i in range(SQUAD_FILES):
    v2 = rng.random() < 0.5
    document = _squad_document(rng, v2)
    path = str(tmp_path / f"{i}.json")
    if i % 2 == 0:  # well formed: as Model Garden reads it
      text = json.dumps(document, ensure_ascii=rng.random() < 0.3, indent=rng.choice([None, 2]))
      if rng.random() < 0.2:
        text = text.replace("\n", "\r\n")
      with open(path, "wb") as f:
        f.write((b"\xef\xbb\xbf" if rng.random() < 0.2 else b"") + text.encode("utf-8"))
      with open(path + ".plain", "w", encoding="utf-8") as f:  # json.load refuses a BOM
        f.write(text)
      for training in (True, False):
        stats = squad.ReadStats()
        ours = squad.read_squad_examples(path, training, v2, stats=stats)
        theirs = squad_lib.read_squad_examples(path + ".plain", training, v2)
        assert [_fields(e) for e in ours] == [_fields(e) for e in theirs], path
        assert stats.questions == len(_questions(document))
        assert len(ours) + len(stats.unmatched_answers) == stats.questions
        outcomes["skipped unmatched answers"] += bool(stats.unmatched_answers)
        features = squad.convert_examples_to_features(ours, squad_tokenizer, 48, 16, 12,
                                                      training)
        assert set(features.example_index.tolist()) == set(range(len(ours)))
      outcomes["read as google"] += 1
      continue
    name = names[(i // 2) % len(names)]
    raw, qid = _break(rng, document, name)
    with open(path, "wb") as f:
      f.write(raw)
    _, pattern, in_training, in_prediction = BREAKAGES[name]
    pattern = pattern.replace("{id}", re.escape(repr(str(qid))))
    for training, fails in ((True, in_training), (False, in_prediction)):
      if fails:
        with pytest.raises(squad.SquadFormatError) as error:
          squad.read_squad_examples(path, training, v2)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and re.search(pattern, message), (name, message)
        assert len(message) < 400
      else:
        examples = squad.read_squad_examples(path, training, v2, stats=squad.ReadStats())
        assert examples
    outcomes[f"broken: {name}"] += 1
  # Answers outside their context: skipped and counted by id, never an IndexError.
  document = _squad_document(rng, False)
  _, _, qa = _questions(document)[0]
  qa["answers"][0]["answer_start"] = 10 ** 6
  path = tmp_path / "outside.json"
  path.write_text(json.dumps(document), encoding="utf-8")
  stats = squad.ReadStats()
  squad.read_squad_examples(str(path), True, False, stats=stats)
  assert stats.unmatched_answers[0] == str(qa["id"])
  print(f"SQuAD fuzz: {SQUAD_FILES} random files ({SQUAD_FILES // 2} well formed, read for "
        f"training and prediction; {len(names)} kinds of breakage): {dict(outcomes)}")
  assert outcomes["read as google"] == SQUAD_FILES // 2
  assert outcomes["skipped unmatched answers"] >= 5
  assert all(outcomes[f"broken: {name}"] >= 3 for name in names)
