"""Demo data generators, apart from the library: nothing in ``bert_tf`` imports them.

  corpus            English prose from CPython's bundled documentation (offline)
  pretraining_data  corpus -> vocab.txt and pretraining TFRecords (prepare_demo_data.py)
  xnli_sample       a small synthetic data set in XNLI's file layout (scripts/demo.sh)
"""
