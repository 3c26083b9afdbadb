"""Bad pretraining input never passes silently: empty TFRecords, token ids outside the model's
vocab, damaged files skipped and counted in the metrics, eval over nothing. Real TFRecords,
a real Pretrainer, and one run_pretraining.py subprocess (hard timeout)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_tf.data import pretraining_input
from bert_tf.testing import builders
from bert_tf.testing.files import read_metrics, write_pretraining_records
from bert_tf.testing.launch import run_script
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import TRAIN_PREDICTIONS as PREDS, TRAIN_SEQ as SEQ, tiny_config


def _records(path, seed=0, batch=16, vocab_size=None, **config):
  config = tiny_config(**({"vocab_size": vocab_size} if vocab_size else {}), **config)
  return write_pretraining_records(path, pretraining_features(
      config, batch=batch, seq=SEQ, predictions=PREDS, seed=seed))


def _all(ds):
  return sum(int(b["input_ids"].shape[0]) for b in ds)


@pytest.mark.unit
def test_empty_tfrecords_are_an_error_naming_the_files(tmp_path):
  empty = [str(tmp_path / f"empty-{i}.tfrecord") for i in range(2)]
  for path in empty:
    open(path, "wb").close()
  for training in (True, False):
    with pytest.raises(ValueError, match=r"no pretraining records: 2 input file\(s\).*empty "
                       r"\(0 bytes\): .*empty-0.tfrecord, .*empty-1.tfrecord"):
      pretraining_input.make_pretraining_dataset(",".join(empty), 4, SEQ, PREDS, training)
  # One empty file among good ones is no error: the others hold records.
  good = _records(tmp_path / "good.tfrecord")
  assert _all(pretraining_input.make_pretraining_dataset(f"{empty[0]},{good}", 4, SEQ, PREDS,
                                                         False)) == 16


@pytest.mark.unit
def test_ids_at_or_above_vocab_size_name_the_file_the_id_and_the_config(tmp_path):
  good = _records(tmp_path / "good.tfrecord", vocab_size=99)
  wide = _records(tmp_path / "wide.tfrecord", seed=1, vocab_size=2000)
  # Within the vocab: read as before, with the check in place.
  assert _all(pretraining_input.make_pretraining_dataset(good, 4, SEQ, PREDS, False,
                                                         vocab_size=99)) == 16
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"records in \S*wide.tfrecord\W* hold input_ids (\d+), outside "
                     r"\[0, vocab_size=99\) of the model config") as e:
    _all(pretraining_input.make_pretraining_dataset(f"{good},{wide}", 4, SEQ, PREDS, False,
                                                    vocab_size=99))
  bad_id = int(str(e.value).split("hold input_ids ")[1].split(",")[0])
  assert 99 <= bad_id < 2000
  # Training order (shuffled, interleaved) finds it too.
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"wide.tfrecord\W* hold"):
    for _ in pretraining_input.make_pretraining_dataset(wide, 4, SEQ, PREDS, True, seed=1,
                                                        vocab_size=99).take(5):
      pass
  # masked_lm_ids are checked as well (labels a GPU's gather would silently zero).
  features = pretraining_features(tiny_config(), batch=8, seq=SEQ, predictions=PREDS, seed=2)
  features["masked_lm_ids"] = tf.fill([8, PREDS], 150)
  labels = write_pretraining_records(tmp_path / "labels.tfrecord", features)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels.tfrecord\W* hold "
                     r"masked_lm_ids 150, outside \[0, vocab_size=99\)"):
    _all(pretraining_input.make_pretraining_dataset(labels, 4, SEQ, PREDS, False,
                                                    vocab_size=99))


@pytest.mark.integration
def test_skipped_corrupt_files_are_counted_in_the_training_metrics(tmp_path):
  good = _records(tmp_path / "good.tfrecord", batch=64)
  data = bytearray(open(_records(tmp_path / "bad.tfrecord", seed=3, batch=64), "rb").read())
  data[len(data) // 2] ^= 0xFF
  (tmp_path / "bad.tfrecord").write_bytes(bytes(data))
  out = tmp_path / "out"
  trainer = builders.pretrainer(out, steps=8, iterations_per_loop=4, save_checkpoints_steps=8)

  def dataset_fn(context, batch_size):
    return pretraining_input.make_pretraining_dataset(
        f"{tmp_path / 'bad.tfrecord'},{good}", batch_size, SEQ, PREDS, True,
        input_context=context, seed=1, skip_corrupt=True, vocab_size=99)

  trainer.train_dataset_fn = dataset_fn
  trainer.train()
  records = read_metrics(out / "train_metrics.jsonl")
  counts = [r.get("corrupt_files_skipped") for r in records]
  assert all(c is not None and c >= 1 for c in counts), records
  assert counts == sorted(counts)  # a running count: every pass over the damaged file adds one


@pytest.mark.unit
def test_input_counts_are_named_and_summed_over_the_workers():
  """Fixed names (every worker sends the same vector to the sum); one device's sum is its own
  count; elastic ranks (each reads the whole stream) keep their own count. The 2-worker sum
  itself: test_distillation's MultiWorkerMirrored launch (worker i counts i + 1: total 3)."""
  from bert_tf import distribution
  from bert_tf.training import reporting
  with pytest.raises(ValueError, match="unknown input count 'bad_rows'.*INPUT_COUNT_NAMES"):
    reporting.count_input("bad_rows")
  before = reporting.input_counts().get("corrupt_files_skipped", 0)
  reporting.count_input("corrupt_files_skipped", 2)
  runtime = distribution.make_runtime("one_device")
  assert reporting.input_counts(runtime.sum_over_workers) == {
      "corrupt_files_skipped": before + 2}
  doubled = lambda counts: 2 * counts  # noqa: E731  (two workers that counted the same)
  assert reporting.input_counts(doubled)["corrupt_files_skipped"] == 2 * (before + 2)
  reporting.every_worker_reads_all_input()
  try:
    assert reporting.input_counts(doubled)["corrupt_files_skipped"] == before + 2
  finally:
    reporting.every_worker_reads_all_input(False)
  # An elastic roll-back puts the committed counts back (the input since is read again).
  committed = reporting.input_counts_state()
  reporting.count_input("corrupt_files_skipped")
  reporting.set_input_counts(committed)
  assert reporting.input_counts() == {"corrupt_files_skipped": before + 2}


@pytest.mark.integration
def test_eval_only_over_an_empty_file_fails_and_writes_no_metrics(tmp_path):
  config = tiny_config()
  config.to_json_file(tmp_path / "bert_config.json")
  empty = tmp_path / "held_out.tfrecord"
  empty.write_bytes(b"")
  out = tmp_path / "out"
  result = run_script("run_pretraining.py", [
      f"--bert_config_file={tmp_path / 'bert_config.json'}", f"--input_file={empty}",
      f"--output_dir={out}", "--do_eval", f"--max_seq_length={SEQ}",
      f"--max_predictions_per_seq={PREDS}", "--eval_batch_size=4"], timeout=300)
  assert result.returncode != 0
  assert "no pretraining records" in result.stderr and "held_out.tfrecord" in result.stderr, \
      result.stderr[-3000:]
  assert not os.path.exists(out / "eval_results.txt")
  assert not os.path.exists(out / "eval_metrics.jsonl")


@pytest.mark.unit
def test_truncated_or_random_bytes_tfrecords_name_the_file_and_byte_counts(tmp_path):
  """What already held and must keep holding: a damaged file is named with the bytes read."""
  data = open(_records(tmp_path / "whole.tfrecord"), "rb").read()
  (tmp_path / "truncated.tfrecord").write_bytes(data[:len(data) * 2 // 3])
  (tmp_path / "noise.tfrecord").write_bytes(np.random.default_rng(0).bytes(5000))
  for name, size in (("truncated", len(data) * 2 // 3), ("noise", 5000)):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"corrupt TFRecord file \S*{name}.tfrecord\W*: only \d+ of its "
                       rf"{size} bytes could be read"):
      _all(pretraining_input.make_pretraining_dataset(str(tmp_path / f"{name}.tfrecord"), 4,
                                                      SEQ, PREDS, False))
  with pytest.raises(FileNotFoundError, match=r"no files match input pattern \S*nothing-\*"):
    pretraining_input.make_pretraining_dataset(str(tmp_path / "nothing-*"), 4, SEQ, PREDS,
                                               False)


@pytest.mark.unit
def test_every_file_damaged_with_skip_corrupt_records_is_an_error_not_a_spin(tmp_path):
  paths = []
  for i in range(3):  # damaged in their first record's header: nothing readable at all
    data = bytearray(open(_records(tmp_path / f"r{i}.tfrecord", seed=i), "rb").read())
    data[3] ^= 0xFF
    (tmp_path / f"bad{i}.tfrecord").write_bytes(bytes(data))
    paths.append(str(tmp_path / f"bad{i}.tfrecord"))
  ds = pretraining_input.make_pretraining_dataset(",".join(paths), 4, SEQ, PREDS, True, seed=1,
                                                  skip_corrupt=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"no readable pretraining record in "
                     r"two passes over the 3 input file\(s\) .*bad\d.tfrecord"):
    next(iter(ds))
  # One good file among them: it trains on the good one, counting the skips.
  good = _records(tmp_path / "good.tfrecord", batch=32)
  ds = pretraining_input.make_pretraining_dataset(",".join(paths + [good]), 4, SEQ, PREDS, True,
                                                  seed=1, skip_corrupt=True)
  assert sum(1 for _ in ds.take(40)) == 40
