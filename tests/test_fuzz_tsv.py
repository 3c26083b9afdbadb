"""Every task reader against random TSV files: quotes, tabs, ``\\r\\n`` / ``\\r``-only / ``\\n``
line ends, byte-order marks, invalid UTF-8, short and long rows, bad labels, empty files.
The rows read equal the rows written, or the error names ``file:line`` of the first bad row
(and with ``skip_malformed`` the bad rows are skipped and counted). Plus the header-only
dev.tsv end to end through run_classifier.py."""
import collections
import os
import random
import re

import pytest

from bert_tf.data import classifier as data
from bert_tf.data.classifier.reading import EmptyInputError, MalformedRowError
from bert_tf.data.classifier.tasks import GLUE_TASKS, XnliTask
from bert_tf.testing.files import GLUE_FILES, write_glue_task
from bert_tf.testing.launch import run_script
from bert_tf.testing.tiny import classifier_config

FILES_PER_SPLIT = 12  # x 3 splits x 10 tasks x 2 (fail / skip) = the reads of one run
_XNLI_DEV = ["language", "gold_label", "sentence1", "sentence2", "pairID"]
_ALPHABET = ("ab Zé\"'“”«»\\,.;!? 中文😀👍🏽\u0301\u200b\u00a0\u3000\x0b\x0c\x1c\x85\u2028"
             "\x00\x7f\ufeff ")


def _text(rng, cr_only):
  chars = list(_ALPHABET) + ([] if cr_only else ["\r"])
  text = "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))
  return text.rstrip("\r")  # a field ending the row loses a final \r to a CRLF line end


def _layout(task_name, split, spec):
  """(header or None, width) of one file as distributed."""
  if task_name == "xnli":
    return (["premise", "hypo", "label"], 3) if split == "train" else (_XNLI_DEV, 5)
  name = os.path.basename(spec.path)
  header = GLUE_FILES[task_name][name][0] if spec.header else None
  return header, len(header) if header else spec.num_columns


def _label(rng, task):
  if task.is_regression:
    return "%.3f" % rng.uniform(0, 5)
  written = rng.choice(list(task.labels) + list(task.label_aliases))
  return written


def _write_file(rng, path, task, split, spec):
  """Writes one random file; returns (expected examples of its good rows in order, bad line
  numbers)."""
  header, width = _layout(task.name, split, spec)
  a, b, label = spec.columns(header, path)
  if task.name == "xnli":  # train: premise, hypo, label; dev/test: _XNLI_DEV
    a, b, label = (0, 1, 2) if split == "train" else (2, 3, 1)
  ending = rng.choice([b"\n", b"\r\n", b"\r"])
  cr_only = ending == b"\r"
  lines, expected, bad = [], [], []
  if header:
    lines.append("\t".join(header).encode())
  for _ in range(rng.choice([0, 1, 3, 8, 15])):
    fields = [_text(rng, cr_only) for _ in range(width)]
    if label is not None:
      fields[label] = _label(rng, task)
    if task.name == "xnli" and split != "train":
      fields[0] = rng.choice(["en", "de"])
    raw = "\t".join(fields).encode("utf-8")
    kind = rng.random()
    number = len(lines) + 1
    if kind < 0.06:
      raw = raw + b"\t" + _text(rng, cr_only).encode()  # a long row
    elif kind < 0.12 and width > 1:
      raw = "\t".join(fields[:-1]).encode("utf-8")  # a short row
    elif kind < 0.18:
      raw = raw[:len(raw) // 2] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + \
          raw[len(raw) // 2:]  # invalid UTF-8
    elif kind < 0.22 and label is not None:
      fields[label] = "maybe" if not task.is_regression else "nan"
      raw = "\t".join(fields).encode("utf-8")
    else:
      parsed = None if label is None else task._parse_label(fields[label])  # noqa: SLF001
      group = fields[0] if task.name == "xnli" and split != "train" else None
      expected.append((fields[a], None if b is None else fields[b], parsed, group))
      lines.append(raw)
      continue
    bad.append(number)
    lines.append(raw)
  body = ending.join(lines) + (ending if lines and rng.random() < 0.8 else b"")
  with open(path, "wb") as f:
    f.write((b"\xef\xbb\xbf" if rng.random() < 0.2 else b"") + body)
  return expected, bad


def _tasks():
  tasks = {name: make() for name, make in GLUE_TASKS.items()}
  tasks["xnli"] = XnliTask(eval_languages=None)
  return tasks


def _xnli_specs(split):
  from bert_tf.data.classifier.reading import FileSpec
  return [FileSpec("multinli/multinli.train.en.tsv" if split == "train" else
                   f"xnli.{split}.tsv", None)]


def _check_one(rng, root, task, split):
  specs = _xnli_specs(split) if task.name == "xnli" else task.splits[split]
  written = []
  for spec in specs:
    path = os.path.join(root, spec.path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    expected, bad = _write_file(rng, path, task, split, spec)
    written.append((path, spec, expected, bad))
  # Files are read in order: the first problem (a bad row, or a file with no rows) decides.
  for path, _, expected, bad in written:
    if bad:
      with pytest.raises(MalformedRowError, match=rf"^{re.escape(path)}:{bad[0]}: "):
        task.examples(root, split)
      outcome = "bad row named"
      break
    if not expected:
      with pytest.raises(EmptyInputError, match=rf"^{re.escape(path)}: no rows"):
        task.examples(root, split)
      outcome = "empty file named"
      break
  else:
    _compare(task.examples(root, split), written, task, split)
    outcome = "read exactly"
  # Skipping: the good rows, the bad ones counted (a file left with no rows is still an error).
  stats = data.ReadStats()
  if any(not expected for _, _, expected, _ in written):
    with pytest.raises(EmptyInputError):
      task.examples(root, split, skip_malformed=True, stats=data.ReadStats())
    return outcome
  sets = task.examples(root, split, skip_malformed=True, stats=stats)
  _compare(sets, written, task, split)
  assert stats.skipped == sum(len(bad) for *_, bad in written)
  return outcome


def _compare(sets, written, task, split):
  got = [(e.text_a, e.text_b, e.label, e.group if task.name == "xnli" and split != "train"
          else None) for name in sets for e in sets[name]]
  expected = [row for _, _, rows, _ in written for row in rows]
  if task.name == "xnli" and split != "train":  # one set per language, in language order
    expected = sorted(expected, key=lambda row: row[3])
  assert got == expected


@pytest.mark.unit
def test_random_tsv_files_read_exactly_or_name_the_first_bad_line(tmp_path):
  rng = random.Random(16)
  outcomes = collections.Counter()
  for name, task in _tasks().items():
    for split in ("train", "dev", "test"):
      for i in range(FILES_PER_SPLIT):
        outcomes[_check_one(rng, str(tmp_path / f"{name}-{split}-{i}"), task, split)] += 1
  print(f"TSV fuzz: {sum(outcomes.values())} random splits, each read strict and skipping: "
        f"{dict(outcomes)}")
  assert sum(outcomes.values()) == len(_tasks()) * 3 * FILES_PER_SPLIT
  assert min(outcomes.values()) >= 20 and len(outcomes) == 3  # every path exercised


@pytest.mark.unit
def test_cr_only_file_reads_its_rows_and_errors_stay_short(tmp_path):
  folder = write_glue_task(tmp_path, "sst2")
  header, rows = GLUE_FILES["sst2"]["train.tsv"]
  lines = ["\t".join(header)] + ["\t".join(row) for row in rows] * 200
  with open(os.path.join(folder, "train.tsv"), "wb") as f:
    f.write("\r".join(lines).encode() + b"\r")
  examples = data.make_task("sst2").examples(folder, "train")[""]
  assert [(e.text_a, e.label) for e in examples[:2]] == [(r[0], r[1]) for r in rows]
  assert len(examples) == 400
  # A file that does not have the expected header: the message is short, not the whole file.
  with open(os.path.join(folder, "dev.tsv"), "wb") as f:
    f.write("\r".join(["sentence,label"] + ["a,1"] * 500).encode())
  with pytest.raises(MalformedRowError) as e:
    data.make_task("sst2").examples(folder, "dev")
  assert "dev.tsv:1: header has no column 'sentence'" in str(e.value)
  assert len(str(e.value)) < 400, len(str(e.value))


@pytest.mark.integration
def test_header_only_dev_file_with_do_eval_names_the_file_without_a_skip_hint(tmp_path):
  folder = write_glue_task(tmp_path, "mrpc")
  with open(os.path.join(folder, "dev.tsv"), "w") as f:
    f.write("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
  (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\n")
  config = tmp_path / "bert_config.json"
  classifier_config(16, dropout=0.0).to_json_file(config)
  out = tmp_path / "out"
  result = run_script("run_classifier.py", [
      "--task_name=mrpc", f"--data_dir={folder}", f"--vocab_file={tmp_path / 'vocab.txt'}",
      f"--bert_config_file={config}", "--do_eval", "--max_seq_length=16",
      f"--output_dir={out}"], timeout=240)
  assert result.returncode != 0
  assert f"{folder}/dev.tsv: no rows after the header line" in result.stderr, \
      result.stderr[-3000:]
  assert "--skip_malformed_rows" not in result.stderr and "Traceback" not in result.stderr
  assert not (out / "eval_results.txt").exists()
