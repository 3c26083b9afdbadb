"""SQuAD data: features equal to Model Garden's copy of google's run_squad (given google's
FullTokenizer) on the committed files, every field; the official evaluation's numbers on a
handcrafted predictions file, by hand and by Model Garden's copies of the official scripts; bad
input named by file, position and question id."""
import json
import os

import numpy as np
import pytest

from bert_tf.data import squad
from bert_tf.tokenization import BertTokenizer

pytestmark = pytest.mark.unit

DATA = os.path.join(os.path.dirname(__file__), "data", "squad")
VOCAB = os.path.join(DATA, "vocab.txt")
FILES = {False: os.path.join(DATA, "tiny-v1.1.json"), True: os.path.join(DATA, "tiny-v2.0.json")}
# Small windows so the long paragraph becomes many overlapping doc spans.
MAX_SEQ, STRIDE, MAX_QUERY = 64, 16, 12


@pytest.fixture(scope="module")
def tokenizers():
  return {case: BertTokenizer(VOCAB, do_lower_case=case) for case in (True, False)}


def _reference(path, v2, training, lower):
  from official.nlp.data import squad_lib
  from official.nlp.tools import tokenization
  examples = squad_lib.read_squad_examples(path, training, v2)
  features = []
  collect = features.append if training else (
      lambda f, is_padding: None if is_padding else features.append(f))
  squad_lib.convert_examples_to_features(
      examples, tokenization.FullTokenizer(VOCAB, lower), MAX_SEQ, STRIDE, MAX_QUERY, training,
      collect, batch_size=4)
  return examples, features


@pytest.mark.parametrize("v2,training,lower", [
    (False, True, True), (False, False, True), (True, True, True), (True, False, True),
    (False, False, False)])
def test_features_equal_model_garden(tokenizers, v2, training, lower):
  path = FILES[v2]
  ref_examples, ref = _reference(path, v2, training, lower)
  examples = squad.read_squad_examples(path, training, v2)
  fields = ("qas_id", "question_text", "doc_tokens", "orig_answer_text", "start_position",
            "end_position", "is_impossible")
  assert [[getattr(e, f) for f in fields] for e in examples] == \
      [[getattr(e, f) for f in fields] for e in ref_examples]
  got = squad.convert_examples_to_features(examples, tokenizers[lower], MAX_SEQ, STRIDE,
                                           MAX_QUERY, training)
  assert len(got) == len(ref) and len(got.spans) == len(ref)
  for i, r in enumerate(ref):
    span = got.spans[i]
    mine = {"unique_id": span.unique_id, "example_index": span.example_index,
            "doc_span_index": span.doc_span_index, "tokens": span.tokens,
            "token_to_orig_map": span.token_to_orig_map,
            "token_is_max_context": span.token_is_max_context,
            **got.padded(i, MAX_SEQ),
            "start_position": int(got.start_positions[i]),
            "end_position": int(got.end_positions[i]),
            # google: the example's flag (Model Garden's is "this span lacks the answer")
            "is_impossible": ref_examples[r.example_index].is_impossible,
            "example_index_array": int(got.example_index[i])}
    theirs = {k: getattr(r, k) for k in mine if hasattr(r, k) and k != "is_impossible"}
    theirs["is_impossible"] = span.is_impossible
    theirs["example_index_array"] = r.example_index
    assert mine == theirs, f"feature {i} differs"
    assert r.class_index == 0  # [CLS] first (Model Garden's XLNet field)
  # The committed file exercises long contexts: one question has many overlapping spans.
  assert max(s.doc_span_index for s in got.spans) >= 5
  if training:
    assert any(got.start_positions > 0) and any(got.start_positions == 0)
  print(f"v2={v2} training={training} lower={lower}: {len(examples)} examples, {len(ref)} "
        "features equal in every field")


def test_training_features_without_spans_match(tokenizers):
  tokenizer = tokenizers[True]
  examples = squad.read_squad_examples(FILES[True], True, True)
  full = squad.convert_examples_to_features(examples, tokenizer, MAX_SEQ, STRIDE, MAX_QUERY, True)
  lean = squad.convert_examples_to_features(examples, tokenizer, MAX_SEQ, STRIDE, MAX_QUERY, True,
                                            keep_spans=False)
  assert lean.spans is None
  assert (lean.ids.ids == full.ids.ids).all() and (lean.end_positions == full.end_positions).all()


def test_postprocess_maps_spans_back_to_the_original_text(tokenizers):
  """Logits that point at the training positions (5 at the answer's start and end, -10
  elsewhere; spans without the answer point at [CLS]) give back the gold answers in their
  original spelling, "" for the unanswerable ones, and null odds of exactly -30 / +30."""
  path = FILES[True]
  train = squad.convert_examples_to_features(squad.read_squad_examples(path, True, True),
                                             tokenizers[True], MAX_SEQ, STRIDE, MAX_QUERY, True)
  examples = squad.read_squad_examples(path, False, True)
  features = squad.convert_examples_to_features(examples, tokenizers[True], MAX_SEQ, STRIDE,
                                                MAX_QUERY, False)
  rows = np.arange(len(features))
  start = np.full((len(features), MAX_SEQ), -10.0, np.float32)
  end = start.copy()
  start[rows, train.start_positions] = end[rows, train.end_positions] = 5.0
  dataset = squad.load_squad_json(path)
  gold = {qa["id"]: (qa["answers"] or [{"text": ""}])[0]["text"]
          for entry in dataset for p in entry["paragraphs"] for qa in p["qas"]}
  options = dict(n_best_size=20, max_answer_length=30, do_lower_case=True,
                 version_2_with_negative=True)
  predictions, nbest, null_odds = squad.postprocess(examples, features.spans, start, end,
                                                    **options)
  # google's own examples of get_final_text: "(1895-1943)." -> "1895" (the improved span),
  # "Japan" inside "Japanese" stays the whole word; "Kobe" is [UNK] in this vocab, so its
  # words are returned as written ("Kobe." with its period); double spaces become one.
  expected = {**gold, "q3": "Japanese", "q9": "Tokyo (東京), Osaka and Kobe.",
              "q13": "naïve flower patterns"}
  assert dict(predictions) == expected
  assert set(null_odds.values()) == {-30.0, 30.0}
  assert all(null_odds[q] == 30.0 for q in ("q15", "q16", "q17"))
  assert nbest["q1"][0]["text"] == "Steve Smith" and nbest["q15"][0]["text"] == ""
  results = squad.evaluate_v2(dataset, predictions, null_odds)
  assert results["exact"] == pytest.approx(100 * 16 / 17)  # all but "Japanese"
  assert results["NoAns_exact"] == 100.0
  # Below -30 every question is predicted unanswerable.
  empty, _, _ = squad.postprocess(examples, features.spans, start, end,
                                  null_score_diff_threshold=-40.0, **options)
  assert set(empty.values()) == {""}


# ---- the official evaluation --------------------------------------------------------------

def _article(*qas):
  return [{"paragraphs": [{"context": "unused", "qas": list(qas)}]}]


def _q(qid, *answers):
  return {"id": qid, "question": "?", "answers": [{"text": a, "answer_start": 0}
                                                  for a in answers]}


V1 = _article(_q("a", "The Eiffel Tower", "Eiffel Tower"), _q("b", "Steve Smith"),
              _q("c", "1895", "in 1895"), _q("d", "blue"), _q("e", "missing"))
V1_PREDICTIONS = {"a": "eiffel tower.", "b": "Smith", "c": "born in 1895", "d": "red"}
V2 = _article(_q("a", "Paris"), _q("b", "the red car"), _q("c", "42 km"), _q("d"), _q("e"),
              _q("f", "a"), _q("g", "big old house"))
V2_PREDICTIONS = {"a": "Paris", "b": "a red car", "c": "", "d": "", "e": "something", "f": "",
                  "g": "old house"}
NULL_ODDS = {"a": -5.0, "b": -3.0, "c": 2.0, "d": 4.0, "e": -1.0, "f": 1.0, "g": 0.0}


def test_evaluation_v1_equals_the_official_numbers():
  # By hand: a EM 1 F1 1; b F1 2/3 (P 1, R 1/2); c max(F1 vs "1895" 1/2, vs "in 1895" 4/5);
  # d 0; e unanswered, 0, but counted. EM 1/5, F1 (1 + 2/3 + 4/5) / 5.
  got = squad.evaluate_v1(V1, V1_PREDICTIONS)
  assert got["exact_match"] == pytest.approx(20.0)
  assert got["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0.8) / 5)
  from official.nlp.tools import squad_evaluate_v1_1
  theirs = squad_evaluate_v1_1.evaluate(V1, V1_PREDICTIONS)  # fractions, not percentages
  assert got["exact_match"] == pytest.approx(100 * theirs["exact_match"])
  assert got["f1"] == pytest.approx(100 * theirs["final_f1"])


def test_evaluation_v2_equals_the_official_numbers():
  # By hand: exact a b d f = 4/7 ("a red car" = "the red car" normalised; "a" normalises to
  # "" so f's only gold is "" and "" matches); F1 adds g 0.8 (P 1, R 2/3): 4.8/7.
  # HasAns a b c f g: exact 3/5, F1 3.8/5; NoAns d e: 1/2. Best thresholds walk the questions
  # by null odds from 2 (no-answer questions counted right): a +1, b +1 -> 4 at -3 (exact);
  # F1 continues e -1, g +0.8, f +1 -> 4.8 at 1.
  got = squad.evaluate_v2(V2, V2_PREDICTIONS, NULL_ODDS)
  expected = {"exact": 400 / 7, "f1": 480 / 7, "total": 7, "HasAns_exact": 60.0,
              "HasAns_f1": 76.0, "HasAns_total": 5, "NoAns_exact": 50.0, "NoAns_f1": 50.0,
              "NoAns_total": 2, "best_exact": 400 / 7, "best_exact_thresh": -3.0,
              "best_f1": 480 / 7, "best_f1_thresh": 1.0}
  assert got == pytest.approx(expected)
  from official.nlp.tools import squad_evaluate_v2_0
  theirs = squad_evaluate_v2_0.evaluate(V2, V2_PREDICTIONS, NULL_ODDS)
  renamed = {k.replace("final_", "best_"): v for k, v in theirs.items()}
  assert {k: renamed[k] for k in expected} == pytest.approx(expected)
  assert squad.evaluate(V2, V2_PREDICTIONS, True)["f1"] == pytest.approx(480 / 7)


def test_evaluation_v2_scores_questions_over_the_null_odds_threshold_as_no_answer():
  """evaluate-v2.0.py's --na-prob-thresh (1.0): odds above it count as "no answer" in exact,
  f1 and the breakdown, even for a non-empty prediction. a ("Paris", right) at odds 3 scores 0;
  e ("something" for an unanswerable question) at 1.5 scores 1. By hand: exact b d e f = 4/7,
  F1 adds g 0.8; HasAns (a b c f g) exact 2/5, F1 2.8/5; NoAns (d e) all right. The
  best-threshold search reads the raw scores, by odds b g f e c a d: 4/7 and 4.8/7 at f's 1.0."""
  odds = {**NULL_ODDS, "a": 3.0, "e": 1.5}
  got = squad.evaluate_v2(V2, V2_PREDICTIONS, odds)
  expected = {"exact": 400 / 7, "f1": 480 / 7, "total": 7, "HasAns_exact": 40.0,
              "HasAns_f1": 56.0, "HasAns_total": 5, "NoAns_exact": 100.0, "NoAns_f1": 100.0,
              "NoAns_total": 2, "best_exact": 400 / 7, "best_exact_thresh": 1.0,
              "best_f1": 480 / 7, "best_f1_thresh": 1.0}
  assert got == pytest.approx(expected)
  from official.nlp.tools import squad_evaluate_v2_0
  theirs = squad_evaluate_v2_0.evaluate(V2, V2_PREDICTIONS, odds)
  renamed = {k.replace("final_", "best_"): v for k, v in theirs.items()}
  assert {k: renamed[k] for k in expected} == pytest.approx(expected)
  # Without odds nothing is thresholded: a is right, e wrong.
  assert squad.evaluate_v2(V2, V2_PREDICTIONS)["HasAns_exact"] == 60.0


# ---- bad input ----------------------------------------------------------------------------

def _write(tmp_path, data, name="bad.json"):
  path = tmp_path / name
  path.write_text(data if isinstance(data, str) else json.dumps({"data": data}),
                  encoding="utf-8")
  return str(path)


def test_malformed_json_names_the_file_and_position(tmp_path):
  path = _write(tmp_path, '{"data": [\n  {"paragraphs": [}\n]}')
  with pytest.raises(squad.SquadFormatError, match=rf"{path}: malformed JSON at line 2 "
                     r"column 19"):
    squad.read_squad_examples(path, False, False)
  with pytest.raises(squad.SquadFormatError, match=r"question 'x1' has no 'question' field"):
    squad.read_squad_examples(_write(tmp_path, [{"paragraphs": [
        {"context": "c", "qas": [{"id": "x1", "answers": []}]}]}]), False, False)


def test_unmatched_answer_is_skipped_counted_and_named(tmp_path, caplog):
  context = "The cat sat on the mat."
  path = _write(tmp_path, [{"paragraphs": [{"context": context, "qas": [
      {"id": "ok", "question": "Who?", "answers": [{"text": "cat", "answer_start": 4}]},
      {"id": "shifted", "question": "Who?", "answers": [{"text": "cat", "answer_start": 9}]},
      {"id": "outside", "question": "Who?", "answers": [{"text": "dog", "answer_start": 99}]},
  ]}]}])
  stats = squad.ReadStats()
  examples = squad.read_squad_examples(path, True, False, stats=stats)
  assert [e.qas_id for e in examples] == ["ok"]
  assert stats.unmatched_answers == ["shifted", "outside"] and stats.questions == 3
  assert "Could not find answer of question shifted" in caplog.text
  # A SQuAD 2.0 file read as 1.1 for training: the unanswerable question is named.
  v2 = _write(tmp_path, [{"paragraphs": [{"context": context, "qas": [
      {"id": "none", "question": "?", "answers": [], "is_impossible": True}]}]}], "v2.json")
  with pytest.raises(squad.SquadFormatError, match=r"question 'none': for training, each "
                     r"answerable question should have exactly 1 answer, found 0 \(a SQuAD 2.0 "
                     r"file\? pass --version_2_with_negative\)"):
    squad.read_squad_examples(v2, True, False)
  # Prediction does not read the answers: every question is kept.
  assert len(squad.read_squad_examples(path, False, False)) == 3


def test_empty_context_is_an_error_or_skipped_and_counted(tmp_path):
  path = _write(tmp_path, [{"paragraphs": [
      {"context": " \t\u202f", "qas": [{"id": "blank", "question": "Why?", "answers": []}]},
      {"context": "Text.", "qas": [{"id": "fine", "question": "What?", "answers": []}]}]}])
  with pytest.raises(squad.SquadFormatError, match=r"question 'blank' .* has an empty context "
                     r"\(--skip_empty_contexts"):
    squad.read_squad_examples(path, False, False)
  stats = squad.ReadStats()
  examples = squad.read_squad_examples(path, False, False, skip_empty_contexts=True, stats=stats)
  assert [e.qas_id for e in examples] == ["fine"] and stats.empty_contexts == ["blank"]


def test_bom_numeric_ids_and_a_1_1_file_with_unanswered_questions(tmp_path):
  """A byte-order mark is skipped; a numeric id is read as its string and scored under it; a
  prediction file read as 1.1 where some questions have no answers is named before predicting
  (the 1.1 evaluation cannot score them: a 2.0 file without --version_2_with_negative)."""
  context = "The cat sat on the mat."
  qas = [{"id": 7, "question": "Who?", "answers": [{"text": "cat", "answer_start": 4}]},
         {"id": "none", "question": "?", "answers": [], "is_impossible": True}]
  path = tmp_path / "v2.json"
  path.write_bytes(b"\xef\xbb\xbf" + json.dumps(
      {"data": [{"paragraphs": [{"context": context, "qas": qas}]}]}).encode())
  assert [e.qas_id for e in squad.read_squad_examples(str(path), False, True)] == ["7", "none"]
  with pytest.raises(squad.SquadFormatError, match=r"question 'none' has no answers while 1 "
                     r"others have some \(a SQuAD 2.0 file\? pass --version_2_with_negative\)"):
    squad.read_squad_examples(str(path), False, False)
  dataset = squad.load_squad_json(str(path))
  assert squad.evaluate_v2(dataset, {"7": "cat", "none": ""})["exact"] == 100.0
  # A context whose words leave no word piece gets no feature: named, not an IndexError.
  tokenless = squad.SquadExample("z", "Who?", ["\x00", "\u200b"])
  examples = squad.read_squad_examples(str(path), False, True) + [tokenless]
  features = squad.convert_examples_to_features(examples, BertTokenizer(VOCAB), MAX_SEQ, STRIDE,
                                                MAX_QUERY, False)
  assert squad.examples_without_features(examples, features) == [2]
  logits = np.zeros((len(features), MAX_SEQ), np.float32)
  with pytest.raises(ValueError, match=r"1 question\(s\) have no feature .*: z$"):
    squad.postprocess(examples, features.spans, logits, logits, n_best_size=2,
                      max_answer_length=5, do_lower_case=True, version_2_with_negative=True)
  assert squad.evaluate_v1(_article(_q(7, "cat")), {"7": "the cat"})["exact_match"] == 100.0
