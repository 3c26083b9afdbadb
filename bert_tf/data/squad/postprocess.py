"""Logits -> answers: google's ``write_predictions`` (n-best spans per question, text mapped
back to the original words by ``get_final_text``, softmax over the n-best; SQuAD 2.0: the null
answer's score against the best span's, ``null_score_diff_threshold``).

The logic is Model Garden's ``official.nlp.data.squad_lib.postprocess_output``, google's
function kept line for line (plus one guard google lacks: a 2.0 question whose n-best holds no
span predicts "" instead of failing), reused here rather than copied.
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np

RawResult = collections.namedtuple("RawResult", ["unique_id", "start_logits", "end_logits"])

PREDICTIONS = "predictions.json"
NBEST = "nbest_predictions.json"
NULL_ODDS = "null_odds.json"


def postprocess(examples, spans, start_logits: np.ndarray, end_logits: np.ndarray, *,
                n_best_size: int, max_answer_length: int, do_lower_case: bool,
                version_2_with_negative: bool, null_score_diff_threshold: float = 0.0):
  """(predictions {qas_id: text}, nbest {qas_id: [{text, probability, start_logit,
  end_logit}]}, null_odds {qas_id: score difference}) for ``examples`` given every feature's
  float32 [max_seq_length] start and end logits (row i belongs to ``spans[i]``)."""
  from official.nlp.data import squad_lib
  covered = {span.example_index for span in spans}
  missing = [e.qas_id for i, e in enumerate(examples) if i not in covered]
  if missing:  # squad_lib would fail with an IndexError (2.0) or answer "empty" (1.1)
    raise ValueError(f"{len(missing)} question(s) have no feature to answer from (a context "
                     f"with no word pieces): {', '.join(missing[:10])}")
  results = [RawResult(span.unique_id, start.tolist(), end.tolist())
             for span, start, end in zip(spans, start_logits, end_logits)]
  return squad_lib.postprocess_output(
      examples, spans, results, n_best_size=n_best_size, max_answer_length=max_answer_length,
      do_lower_case=do_lower_case, version_2_with_negative=version_2_with_negative,
      null_score_diff_threshold=null_score_diff_threshold)


def write_json(output_dir: str, name: str, records) -> str:
  """google's JSON output: 4-space indent and a final newline."""
  import tensorflow as tf
  path = os.path.join(output_dir, name)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(records, indent=4) + "\n")
  return path


def write_predictions(output_dir: str, predictions, nbest, null_odds,
                      version_2_with_negative: bool) -> list[str]:
  """``predictions.json``, ``nbest_predictions.json`` and, for 2.0, ``null_odds.json``."""
  paths = [write_json(output_dir, PREDICTIONS, predictions), write_json(output_dir, NBEST, nbest)]
  if version_2_with_negative:
    paths.append(write_json(output_dir, NULL_ODDS, null_odds))
  return paths
