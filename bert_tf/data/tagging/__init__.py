"""Token-classification data (CoNLL-2003 NER and any BIO/IOB tagging): reading, features,
batches and conlleval-style scoring.

Reading order: ``read_conll`` (sentences with file:line errors) and ``label_list`` (the
training label set, "O" first), ``featurize`` (one window per sentence, or several for a long
one; first sub-token labelled), ``make_dataset`` (the classifier's ``plan_steps`` as tf.data)
and ``entity_scores`` (entity precision / recall / F1 and token accuracy).

Modules:
  reading    Sentence, read_conll, split_path, label_list, save_labels / load_labels
  features   TaggingFeatures, featurize (windows, document context), cached_featurize
  batching   assemble, make_dataset
  conlleval  chunks, entity_scores, conll_lines (the predictions file)
"""
from bert_tf.data.tagging.batching import assemble, make_dataset
from bert_tf.data.tagging.conlleval import chunks, conll_lines, entity_scores
from bert_tf.data.tagging.features import (TaggingFeatures, cached_featurize, context_sizes,
                                           features_key, featurize)
from bert_tf.data.tagging.reading import (LABELS_FILE, OUTSIDE, SPLIT_FILES, TASK_NAMES,
                                          MalformedRowError, ReadStats, Sentence, label_list,
                                          load_labels, read_conll, save_labels, split_path,
                                          tag_problem)

__all__ = ["assemble", "make_dataset", "chunks", "conll_lines", "entity_scores",
           "TaggingFeatures", "cached_featurize", "context_sizes", "features_key", "featurize",
           "LABELS_FILE", "OUTSIDE", "SPLIT_FILES", "TASK_NAMES", "MalformedRowError", "ReadStats",
           "Sentence",
           "label_list", "load_labels", "read_conll", "save_labels", "split_path", "tag_problem"]
