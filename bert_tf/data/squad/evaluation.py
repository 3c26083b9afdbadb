"""Exact match and F1 as the official SQuAD evaluation scripts compute them.

``evaluate_v1`` is ``evaluate-v1.1.py``: normalised answers (lower case, no punctuation, no
articles a/an/the, single spaces), the maximum over the gold answers, a question without a
prediction scores 0. ``evaluate_v2`` is ``evaluate-v2.0.py``: the same normalisation, empty
gold answers dropped and an unanswerable question's only gold answer "" (F1 is 1 when both are
empty, else 0), the HasAns / NoAns breakdown and, given the null odds
(``--na-prob-file null_odds.json``), questions whose odds exceed ``--na-prob-thresh`` (1.0)
scored as "no answer" and the best threshold on the odds (``best_exact``, ``best_f1`` and
their thresholds: google's README sets ``--null_score_diff_threshold`` from
``best_f1_thresh``). Results are percentages, as the scripts print them.
"""
from __future__ import annotations

import collections
import re
import string
from typing import Optional

from absl import logging

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(s: str) -> str:
  """Lower text and remove punctuation, articles and extra whitespace."""
  s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
  return " ".join(_ARTICLES.sub(" ", s).split())


def _f1(prediction_tokens: list, gold_tokens: list) -> float:
  common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
  num_same = sum(common.values())
  if num_same == 0:
    return 0.0
  precision = num_same / len(prediction_tokens)
  recall = num_same / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def f1_v1(prediction: str, gold: str) -> float:
  return _f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def f1_v2(prediction: str, gold: str) -> float:
  prediction_tokens = normalize_answer(prediction).split() if prediction else []
  gold_tokens = normalize_answer(gold).split() if gold else []
  if not prediction_tokens or not gold_tokens:  # no-answer: 1 if both agree
    return float(prediction_tokens == gold_tokens)
  return _f1(prediction_tokens, gold_tokens)


def exact(prediction: str, gold: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(gold))


def _questions(dataset: list):
  for article in dataset:
    for paragraph in article["paragraphs"]:
      yield from paragraph["qas"]


def evaluate_v1(dataset: list, predictions: dict) -> dict:
  """``{"exact_match", "f1"}`` in percent over every question of ``dataset``."""
  em = f1 = total = 0.0
  for qa in _questions(dataset):
    total += 1
    qid = str(qa["id"])  # the reader's key (an id written as a JSON number too)
    if qid not in predictions:
      logging.warning("Unanswered question %s will receive score 0.", qid)
      continue
    golds = [a["text"] for a in qa["answers"]]
    prediction = predictions[qid]
    em += max(exact(prediction, g) for g in golds)
    f1 += max(f1_v1(prediction, g) for g in golds)
  return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}


def _best_threshold(predictions, scores, na_probs, has_answer):
  """The null-odds threshold that maximises the score if every question above it answered
  "" (the official ``find_best_thresh``)."""
  score = best = sum(1 for qid in has_answer if not has_answer[qid])
  best_thresh = 0.0
  for qid in sorted(na_probs, key=lambda k: na_probs[k]):
    if qid not in scores:
      continue
    if has_answer[qid]:
      score += scores[qid]
    else:
      score += -1 if predictions[qid] else 0
    if score > best:
      best, best_thresh = score, na_probs[qid]
  return 100.0 * best / len(scores), best_thresh


def _apply_no_answer_threshold(scores, na_probs, has_answer, na_prob_thresh):
  """A question whose null odds exceed ``na_prob_thresh`` scores as answered "" (the official
  ``apply_no_ans_threshold``): 1 if it has no answer, else 0, whatever was predicted."""
  return {qid: float(not has_answer[qid]) if na_probs.get(qid, na_prob_thresh) > na_prob_thresh
          else score for qid, score in scores.items()}


def evaluate_v2(dataset: list, predictions: dict, na_probs: Optional[dict] = None,
                na_prob_thresh: float = 1.0) -> dict:
  """``exact``, ``f1``, ``total``, ``HasAns_*`` / ``NoAns_*`` and, with ``na_probs``,
  ``best_exact(_thresh)`` / ``best_f1(_thresh)``, in percent. Questions without a prediction
  are left out (the official script reports them missing).

  With ``na_probs``, as ``evaluate-v2.0.py --na-prob-file`` (and Model Garden's
  ``squad_evaluate_v2_0``): a question whose null odds exceed ``na_prob_thresh``
  (``--na-prob-thresh``, default 1.0) counts as predicted "no answer" in exact, f1 and the
  HasAns / NoAns breakdown; the best-threshold search reads the raw scores."""
  has_answer, exact_raw, f1_raw = {}, {}, {}
  for qa in _questions(dataset):
    qid = str(qa["id"])  # the reader's key (an id written as a JSON number too)
    has_answer[qid] = bool(qa.get("answers"))
    if qid not in predictions:
      logging.warning("Missing prediction for %s", qid)
      continue
    golds = [a["text"] for a in qa.get("answers", ()) if normalize_answer(a["text"])] or [""]
    exact_raw[qid] = max(exact(predictions[qid], g) for g in golds)
    f1_raw[qid] = max(f1_v2(predictions[qid], g) for g in golds)

  def scores(qids):
    qids = [q for q in qids if q in exact_raw]
    return {"exact": 100.0 * sum(exact_scored[q] for q in qids) / len(qids),
            "f1": 100.0 * sum(f1_scored[q] for q in qids) / len(qids), "total": len(qids)}

  exact_scored, f1_scored = exact_raw, f1_raw
  if na_probs is not None:
    exact_scored = _apply_no_answer_threshold(exact_raw, na_probs, has_answer, na_prob_thresh)
    f1_scored = _apply_no_answer_threshold(f1_raw, na_probs, has_answer, na_prob_thresh)
  results = scores(list(exact_raw))
  for prefix, wanted in (("HasAns", True), ("NoAns", False)):
    qids = [q for q, h in has_answer.items() if h == wanted and q in exact_raw]
    if qids:
      results.update({f"{prefix}_{k}": v for k, v in scores(qids).items()})
  if na_probs is not None:
    results["best_exact"], results["best_exact_thresh"] = _best_threshold(
        predictions, exact_raw, na_probs, has_answer)
    results["best_f1"], results["best_f1_thresh"] = _best_threshold(
        predictions, f1_raw, na_probs, has_answer)
  return results


def evaluate(dataset: list, predictions: dict, version_2_with_negative: bool,
             na_probs: Optional[dict] = None) -> dict:
  """The script of the version: ``evaluate_v2`` (with the null odds) or ``evaluate_v1``."""
  if version_2_with_negative:
    return evaluate_v2(dataset, predictions, na_probs)
  return evaluate_v1(dataset, predictions)
