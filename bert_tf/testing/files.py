"""Files in the layouts the tools read: google-format pretraining TFRecords, small GLUE task
folders and the XNLI-format sample; and a strict reader for ``*_metrics.jsonl``."""
import json
import os

import numpy as np
import tensorflow as tf

from bert_tf.data.demo import xnli_sample


def write_pretraining_records(path, features) -> str:
  """Writes features (dict of [N, ...] arrays, google's names) as google-format TFRecords:
  int64 lists for ids/masks/positions/labels, a float list for masked_lm_weights."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    n = int(np.asarray(features["input_ids"]).shape[0])
    for i in range(n):
      feature = {}
      for name, values in features.items():
        row = np.asarray(values)[i].reshape(-1)
        if name == "masked_lm_weights":
          feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=row.tolist()))
        else:
          feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=row.tolist()))
      example = tf.train.Example(features=tf.train.Features(feature=feature))
      writer.write(example.SerializeToString())
  return str(path)


def read_metrics(path) -> list[dict]:
  """The records of a ``*_metrics.jsonl`` file, parsed strictly: NaN and Infinity are not
  JSON (Python's json writes them, most other readers refuse them), so they raise here."""
  def refuse(constant):
    raise ValueError(f"{path}: {constant} is not valid JSON")
  with open(path) as f:
    return [json.loads(line, parse_constant=refuse) for line in f.read().splitlines()]


# download_glue_data.py's headers. A '"' in the text must stay text (no quote handling).
_PAIR = [("He said \"yes", "A \"quoted\" answer"), ("Cats sleep.", "Dogs bark."),
         ("x", "y")]
GLUE_FILES = {
    "cola": {"train.tsv": (None, [["gj04", "1", "", "The \"book\" is red."],
                                  ["gj04", "0", "*", "Book the red is."]]),
             "dev.tsv": (None, [["gj04", "1", "", "It rains."]]),
             "test.tsv": (["index", "sentence"], [["0", "Rain it."]])},
    "sst2": {"train.tsv": (["sentence", "label"], [["a \"great film", "1"], ["dull", "0"]]),
             "dev.tsv": (["sentence", "label"], [["fine", "1"]]),
             "test.tsv": (["index", "sentence"], [["0", "bad"]])},
    "mrpc": {"train.tsv": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                           [["1", "1", "2", *_PAIR[0]], ["0", "3", "4", *_PAIR[1]]]),
             "dev.tsv": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                         [["1", "5", "6", *_PAIR[2]]]),
             "test.tsv": (["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                          [["0", "7", "8", *_PAIR[1]]])},
    "qnli": {"train.tsv": (["index", "question", "sentence", "label"],
                           [["0", *_PAIR[0], "entailment"], ["1", *_PAIR[1], "not_entailment"]]),
             "dev.tsv": (["index", "question", "sentence", "label"],
                         [["0", *_PAIR[2], "entailment"]]),
             "test.tsv": (["index", "question", "sentence"], [["0", *_PAIR[1]]])},
    "qqp": {"train.tsv": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                          [["0", "1", "2", *_PAIR[0], "1"], ["1", "3", "4", *_PAIR[1], "0"]]),
            "dev.tsv": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                        [["2", "5", "6", *_PAIR[2], "1"]]),
            "test.tsv": (["id", "question1", "question2"], [["0", *_PAIR[1]]])},
    "rte": {"train.tsv": (["index", "sentence1", "sentence2", "label"],
                          [["0", *_PAIR[0], "entailment"], ["1", *_PAIR[1], "not_entailment"]]),
            "dev.tsv": (["index", "sentence1", "sentence2", "label"],
                        [["0", *_PAIR[2], "not_entailment"]]),
            "test.tsv": (["index", "sentence1", "sentence2"], [["0", *_PAIR[1]]])},
    "wnli": {"train.tsv": (["index", "sentence1", "sentence2", "label"],
                           [["0", *_PAIR[0], "1"], ["1", *_PAIR[1], "0"]]),
             "dev.tsv": (["index", "sentence1", "sentence2", "label"], [["0", *_PAIR[2], "0"]]),
             "test.tsv": (["index", "sentence1", "sentence2"], [["0", *_PAIR[1]]])},
    "stsb": {"train.tsv": (["index", "genre", "filename", "year", "old_index", "source1",
                            "source2", "sentence1", "sentence2", "score"],
                           [["0", "g", "f", "2012", "1", "s", "s", *_PAIR[0], "5.000"],
                            ["1", "g", "f", "2012", "2", "s", "s", *_PAIR[1], "0.5"]]),
             "dev.tsv": (["index", "genre", "filename", "year", "old_index", "source1",
                          "source2", "sentence1", "sentence2", "score"],
                         [["0", "g", "f", "2012", "1", "s", "s", *_PAIR[2], "3.2"]]),
             "test.tsv": (["index", "genre", "filename", "year", "old_index", "source1",
                           "source2", "sentence1", "sentence2"],
                          [["0", "g", "f", "2012", "1", "s", "s", *_PAIR[1]]])},
}
_MNLI_TRAIN = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
               "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
               "sentence2", "label1", "gold_label"]
_MNLI_DEV = _MNLI_TRAIN[:-1] + ["label2", "label3", "label4", "label5", "gold_label"]


def _mnli_row(header, s1, s2, label):
  row = ["0"] * len(header)
  row[header.index("sentence1")], row[header.index("sentence2")] = s1, s2
  if "gold_label" in header:
    row[header.index("gold_label")] = label
  return row


GLUE_FILES["mnli"] = {
    "train.tsv": (_MNLI_TRAIN, [_mnli_row(_MNLI_TRAIN, *_PAIR[0], "neutral"),
                                _mnli_row(_MNLI_TRAIN, *_PAIR[1], "entailment")]),
    "dev_matched.tsv": (_MNLI_DEV, [_mnli_row(_MNLI_DEV, *_PAIR[2], "contradiction")]),
    "dev_mismatched.tsv": (_MNLI_DEV, [_mnli_row(_MNLI_DEV, *_PAIR[1], "neutral"),
                                       _mnli_row(_MNLI_DEV, *_PAIR[0], "entailment")]),
    "test_matched.tsv": (_MNLI_DEV[:10], [_mnli_row(_MNLI_DEV[:10], *_PAIR[1], None)]),
    "test_mismatched.tsv": (_MNLI_DEV[:10], [_mnli_row(_MNLI_DEV[:10], *_PAIR[0], None)]),
}


def write_tsv(path, header, rows, raw_lines=()):
  """Writes a TSV file as download_glue_data.py does (no quoting); ``raw_lines``: extra lines
  (bytes) appended as they are, for malformed-input tests."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    if header is not None:
      f.write(("\t".join(header) + "\n").encode("utf-8"))
    for row in rows:
      f.write(("\t".join(row) + "\n").encode("utf-8"))
    for line in raw_lines:
      f.write(line + b"\n")
  return str(path)


def write_glue_task(root, task):
  """Writes ``GLUE_FILES[task]`` under root/TASK (as download_glue_data.py names it)."""
  folder = os.path.join(str(root), task.upper())
  for name, (header, rows) in GLUE_FILES[task].items():
    write_tsv(os.path.join(folder, name), header, rows)
  return folder


def write_xnli_sample(root, train=300, evals=60, languages=("en", "de")):
  """The XNLI-format sample (bert_tf.data.demo.xnli_sample): {"data_dir", "vocab_file"}."""
  return xnli_sample.write_sample(str(root), train_per_language=train,
                                  eval_per_language=evals, languages=languages, clauses=2)
