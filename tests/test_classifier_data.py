"""Task readers on files in the official layouts, bad rows, google's features, token batching."""
import os

import numpy as np
import pytest

from bert_tf import tokenization
from bert_tf.data import classifier as data
from bert_tf.testing.files import GLUE_FILES, write_glue_task, write_tsv, write_xnli_sample

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(GLUE_FILES))
def test_glue_readers_read_the_official_layout(tmp_path, name):
  folder = write_glue_task(tmp_path, name)
  task = data.make_task(name)
  train = task.examples(folder, "train")
  dev = task.examples(folder, "dev")
  test = task.examples(folder, "test")
  train_rows = GLUE_FILES[name]["train.tsv"][1]
  assert len(train[""]) == len(train_rows)
  first = train[""][0]
  if name == "cola":
    assert first.text_a == 'The "book" is red.' and first.label == "1" and first.text_b is None
  elif name == "sst2":
    assert first.text_a == 'a "great film' and first.label == "1"
  else:  # pairs: the quotes stay inside the text, rows never merge
    assert (first.text_a, first.text_b) == ('He said "yes', 'A "quoted" answer')
    expected = {"stsb": 5.0, "mnli": "neutral", "qnli": "entailment", "rte": "entailment"}
    assert first.label == expected.get(name, "1")
  if name == "mnli":
    assert list(dev) == ["matched", "mismatched"] and len(dev["mismatched"]) == 2
    assert list(test) == ["matched", "mismatched"]
    assert all(e.label is None for s in test.values() for e in s)
  else:
    assert len(dev[""]) == 1 and len(test[""]) == 1 and test[""][0].label is None
  assert task.is_regression == (name == "stsb")


def test_google_task_name_spellings():
  assert data.make_task("STS-B").name == "stsb" and data.make_task("SST-2").name == "sst2"
  assert data.make_task("MRPC").metrics == ("f1",) and data.make_task("cola").metrics == ("mcc",)
  with pytest.raises(ValueError, match="unknown task 'squad'"):
    data.make_task("squad")


def test_xnli_layout_languages_and_labels(tmp_path):
  paths = write_xnli_sample(tmp_path, train=30, evals=9, languages=("en", "de", "fr"))
  task = data.make_task("xnli", "en,de", "all")
  # The parent folder, XNLI-1.0 or XNLI-MT-1.0 all work as --data_dir.
  for data_dir in (paths["data_dir"], os.path.join(paths["data_dir"], "XNLI-1.0"),
                   os.path.join(paths["data_dir"], "XNLI-MT-1.0")):
    train = task.examples(data_dir, "train")[""]
    assert len(train) == 60 and {e.group for e in train} == {"en", "de"}
  assert {e.label for e in train} == set(data.NLI_LABELS)  # "contradictory" read as google does
  dev = task.examples(paths["data_dir"], "dev")
  assert list(dev) == ["de", "en", "fr"] and all(len(v) == 9 for v in dev.values())
  assert all(e.group == "fr" for e in dev["fr"])
  only = data.make_task("xnli", "en", "fr").examples(paths["data_dir"], "test")
  assert list(only) == ["fr"]
  with pytest.raises(ValueError, match=r"no rows for language\(s\) \['zh'\]"):
    data.make_task("xnli", "en", "zh").examples(paths["data_dir"], "dev")
  with pytest.raises(FileNotFoundError, match="multinli.train.ar.tsv"):
    data.make_task("xnli", "all").examples(paths["data_dir"], "train")
  with pytest.raises(ValueError, match="unknown language"):
    data.make_task("xnli", "en,xx")


BAD_ROWS = [
    (b"x\ty\tneutral\textra", "expected 3 tab-separated columns, got 4"),
    (b"only one column", "expected 3 tab-separated columns, got 1"),
    (b"a\tb\tmaybe", "unknown label 'maybe'"),
    (b"caf\xe9\tb\tneutral", "not valid UTF-8 (byte 0xe9 at column 4)"),
]


@pytest.mark.parametrize("line,reason", BAD_ROWS)
def test_malformed_row_fails_with_file_line_and_reason(tmp_path, line, reason):
  path = write_tsv(tmp_path / "multinli" / "multinli.train.en.tsv", ["premise", "hypo", "label"],
                   [["p", "h", "entailment"]], raw_lines=[line])
  task = data.make_task("xnli")
  with pytest.raises(data.MalformedRowError) as e:
    task.examples(str(tmp_path), "train")
  assert str(e.value).startswith(f"{path}:3: {reason}")


def test_malformed_rows_skipped_and_counted_when_asked(tmp_path):
  write_tsv(tmp_path / "multinli" / "multinli.train.en.tsv", ["premise", "hypo", "label"],
            [["p", "h", "entailment"]], raw_lines=[line for line, _ in BAD_ROWS] +
            [b'He said "no\tand "left\tneutral'])
  stats = data.ReadStats()
  examples = data.make_task("xnli").examples(str(tmp_path), "train", skip_malformed=True,
                                             stats=stats)[""]
  assert len(examples) == 2 and examples[1].text_a == 'He said "no'
  assert stats.rows == 6 and stats.skipped == 4
  assert stats.reasons["expected 3 tab-separated columns, got 4"] == 1
  assert sum(stats.reasons.values()) == 4 and ":3:" in stats.first_skipped[0]


def test_bad_regression_label_and_missing_header_column(tmp_path):
  folder = write_glue_task(tmp_path, "stsb")
  with open(os.path.join(folder, "dev.tsv"), "a") as f:
    f.write("\t".join(["1", "g", "f", "2012", "1", "s", "s", "a", "b", "high"]) + "\n")
  with pytest.raises(data.MalformedRowError, match=r"dev.tsv:3: label 'high' is not a number"):
    data.make_task("stsb").examples(folder, "dev")
  write_tsv(os.path.join(folder, "train.tsv"), ["index", "sentence1", "score"], [["0", "a", "1"]])
  with pytest.raises(data.MalformedRowError, match=r"train.tsv:1: header has no column"):
    data.make_task("stsb").examples(folder, "train")


def test_mrpc_byte_order_mark_is_ignored(tmp_path):
  folder = write_glue_task(tmp_path, "mrpc")
  path = os.path.join(folder, "train.tsv")
  with open(path, "rb") as f:
    content = f.read()
  with open(path, "wb") as f:
    f.write(b"\xef\xbb\xbf" + content)
  assert len(data.make_task("mrpc").examples(folder, "train")[""]) == 2


def test_features_follow_google_convert_single_example(tmp_path):
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d"]
  (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
  tokenizer = tokenization.BertTokenizer(str(tmp_path / "vocab.txt"))
  task = data.make_task("rte")
  examples = [data.Example("0", "a b c d a b", "c d", "entailment"),
              data.Example("1", "a", "b", "not_entailment"),
              data.Example("2", "a", None, None)]
  f = data.featurize(examples, tokenizer, max_seq_length=8, task=task)
  rows = [f.ids[f.offsets[i]:f.offsets[i + 1]].tolist() for i in range(3)]
  # google's _truncate_seq_pair: pop from the longer until len(a) + len(b) <= 8 - 3.
  assert rows[0] == [2, 4, 5, 6, 3, 6, 7, 3] and f.first_lengths[0] == 5
  assert rows[1] == [2, 4, 3, 5, 3] and rows[2] == [2, 4, 3]
  assert f.labels.tolist() == [0, 1, -1]
  batch = data.assemble(f, [np.array([0, 1]), np.array([2])])
  assert batch["input_ids"].shape == (2, 2, 8)
  assert batch["segment_ids"][0, 0].tolist() == [0] * 5 + [1] * 3
  assert batch["segment_ids"][0, 1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
  assert batch["label_weights"].tolist() == [[1, 1], [1, 0]]
  assert batch["example_index"].tolist() == [[0, 1], [2, -1]]


def test_stack_parts_keeps_each_replicas_micro_batch():
  """Inference's host batch: each replica's part ([1, rows, length] as assembled, its own
  shape) comes back out of the stacked arrays unchanged, cut by its (rows, length)."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(3, 40, 9)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  f = data.Features(rng.integers(5, 99, offsets[-1]).astype(np.int32), offsets,
                    (lengths // 2).astype(np.int32), rng.integers(0, 3, 9).astype(np.int32))
  groups = [np.array([0, 1, 2, 3]), np.array([4, 5]), np.zeros(0, np.int64), np.array([8])]
  parts = [data.assemble(f, [g]) for g in groups]
  stacked, sizes = data.stack_parts(parts)
  assert stacked["input_ids"].shape == (4, 4, max(p["input_ids"].shape[2] for p in parts))
  assert sizes.dtype == np.int32 and sizes[2].tolist() == [1, 8]  # an empty part: 1 pad row
  for p, part in enumerate(parts):
    rows, length = sizes[p]
    assert sizes[p].tolist() == list(part["input_ids"].shape[1:])
    for name, value in part.items():
      cut = stacked[name][p:p + 1, :rows, :length] if value.ndim == 3 else \
          stacked[name][p:p + 1, :rows]
      assert cut.dtype == value.dtype and np.array_equal(cut, value), name
  # rows beyond a part's own are padding: no example
  assert stacked["example_index"][1, 2:].tolist() == [-1, -1]
  # any task's arrays: [rows, 2] spans (SQuAD's label_ids), its feature_index
  squad_like = [{"input_ids": part["input_ids"], "feature_index": part["example_index"],
                 "label_ids": np.stack([part["label_ids"]] * 2, axis=-1)} for part in parts]
  stacked, again = data.stack_parts(squad_like)
  np.testing.assert_array_equal(again, sizes)
  assert stacked["label_ids"].shape == (4, 4, 2)
  assert stacked["feature_index"][1, 2:].tolist() == [-1, -1]
  for p, part in enumerate(squad_like):
    for name, value in part.items():
      cut = stacked[name][(p, *[slice(0, n) for n in value.shape[1:]])]
      assert np.array_equal(cut, value[0]), name


def test_token_budget_batches_cover_every_example_once_within_budget():
  rng = np.random.default_rng(0)
  lengths = rng.integers(5, 128, size=1000)
  batches = data.micro_batches(lengths, token_budget=1024, rng=np.random.default_rng(1))
  flat = np.concatenate(batches)
  assert sorted(flat.tolist()) == list(range(1000))
  padded = [len(b) * data.round_up(int(lengths[b].max())) for b in batches]
  assert max(padded) <= 1024
  assert sum(lengths) / sum(padded) > 0.85  # bucketing: little padding
  fixed = data.micro_batches(lengths, batch_size=8)
  assert sum(lengths) / (len(fixed) * 8 * 128) < 0.55


def test_plan_is_deterministic_and_splits_steps_into_parts():
  lengths = np.arange(1, 101) % 30 + 3
  a = data.plan_steps(lengths, parts=4, token_budget=512, seed=3, epochs=2.5)
  b = data.plan_steps(lengths, parts=4, token_budget=512, seed=3, epochs=2.5)
  assert len(a) == len(b) and all(
      np.array_equal(x, y) for s, t in zip(a, b) for x, y in zip(s, t))
  assert all(len(step) == 4 for step in a)
  one_epoch = len(data.plan_steps(lengths, parts=4, token_budget=512, seed=3, epochs=1))
  assert abs(len(a) - 2.5 * one_epoch) <= 2
  fixed = data.plan_steps(lengths, parts=2, batch_size=32, seed=0, epochs=1)
  assert len(fixed) == 4 and [len(x) for x in fixed[0]] == [16, 16]
  assert sorted(np.concatenate([x for s in fixed for x in s]).tolist()) == list(range(100))


def test_features_cache_is_reused_and_keyed_by_settings(tmp_path):
  paths = write_xnli_sample(tmp_path / "xnli", train=12, evals=3, languages=("en",))
  tokenizer = tokenization.BertTokenizer(paths["vocab_file"])
  task = data.make_task("xnli", "en", "en")
  messages = []
  load = lambda seq: data.load_features(task, paths["data_dir"], "dev", tokenizer, seq,  # noqa
                                        str(tmp_path / "cache"), log=messages.append)
  first = load(32)["en"]
  again = load(32)["en"]
  assert any("from cache" in m for m in messages)
  assert np.array_equal(first.ids, again.ids) and np.array_equal(first.labels, again.labels)
  messages.clear()
  load(16)
  assert not any("from cache" in m for m in messages)


def test_tasks_name_their_cache_identity_and_files(tmp_path):
  """What keys a split's feature cache comes from the task itself (XNLI: its languages and
  every file of its layouts; a GLUE task: its split's files)."""
  xnli = data.make_task("xnli", "en,de", "fr")
  assert xnli.cache_identity() == ("xnli", ("en", "de"), ("fr",))
  assert data.make_task("mrpc").cache_identity() == ("mrpc", None, None)
  assert data.make_task("mnli").split_files("glue/MNLI", "dev") == [
      "glue/MNLI/dev_matched.tsv", "glue/MNLI/dev_mismatched.tsv"]
  assert data.make_task("rte").split_files("glue/RTE", "nope") == []
  paths = write_xnli_sample(tmp_path, train=3, evals=3, languages=("en",))
  files = xnli.split_files(os.path.join(paths["data_dir"], "XNLI-1.0"), "dev")
  assert sorted({os.path.basename(f) for f in files}) == [
      "multinli.train.en.tsv", "xnli.dev.tsv", "xnli.test.tsv"]
