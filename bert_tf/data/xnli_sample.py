"""Moved to ``bert_tf.data.demo.xnli_sample``: this alias remains only for
tests/classifier_helpers.py and scripts/demo.sh, until they import it from there."""
from bert_tf.data.demo.xnli_sample import HEADER, LANGUAGES, make_examples, vocabulary, write_sample  # noqa: F401
