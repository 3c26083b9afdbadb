"""Kept only for tests/test_classifier_data.py, which is edited elsewhere: the harness is
``bert_tf.testing``. Delete once test_classifier_data.py imports from there."""
from bert_tf.testing.files import (GLUE_FILES, write_glue_task, write_tsv,  # noqa: F401
                                   write_xnli_sample)
