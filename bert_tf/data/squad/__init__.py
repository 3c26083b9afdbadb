"""SQuAD 1.1 / 2.0 data: reading, features, batches, post-processing and evaluation.

Reading order: ``read_squad_examples`` (google's reader: questions with word-level answer
positions; malformed JSON, unmatched answers and empty contexts reported by question id),
``convert_examples_to_features`` (google's doc spans with a stride, max-context marks,
start/end positions), ``plan_steps`` + ``make_dataset`` (batches), ``postprocess`` (google's
n-best answers and null odds) and ``evaluate`` (the official v1.1 / v2.0 scores).

Modules:
  reading      load_squad_json, read_squad_examples, SquadExample, ReadStats, SquadFormatError
  features     convert_examples_to_features, SquadFeatures, SpanFeature, doc_spans,
               examples_without_features
  batching     assemble, make_dataset (the classifier's step plan, with [start, end] labels)
  postprocess  postprocess (Model Garden's copy of google's write_predictions), write_predictions
  evaluation   evaluate_v1 (evaluate-v1.1.py), evaluate_v2 (evaluate-v2.0.py), normalize_answer

Features equal Model Garden's ``squad_lib.convert_examples_to_features`` given google's
``FullTokenizer`` (tests/test_squad_data.py), except two fields where Model Garden departs from
google and we follow google: ``is_impossible`` is the example's flag (Model Garden: "this span
lacks the answer") and a prediction feature has no positions (0 here, as Model Garden).
"""
from bert_tf.data.classifier import plan_steps
from bert_tf.data.squad.batching import assemble, make_dataset
from bert_tf.data.squad.evaluation import evaluate, evaluate_v1, evaluate_v2, normalize_answer
from bert_tf.data.squad.features import (UNIQUE_ID_BASE, SpanFeature, SquadFeatures,
                                         convert_examples_to_features, doc_spans,
                                         examples_without_features)
from bert_tf.data.squad.postprocess import (NBEST, NULL_ODDS, PREDICTIONS, postprocess,
                                            write_predictions)
from bert_tf.data.squad.reading import (ReadStats, SquadExample, SquadFormatError, has_answers,
                                        load_squad_json, read_squad_examples)
