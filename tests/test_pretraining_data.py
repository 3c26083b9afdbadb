"""create_pretraining_data against Model Garden's reference, its parts (shuffle, truncation,
the one record serializer, the worker context), the TFRecord reader, dynamic masking, vocab
learning, the sentence splitter and the demo data builder."""
import dataclasses
import os
import random
import subprocess
import sys
import types

import bert_tf  # noqa: F401  (before tensorflow: selects Keras 2)
import numpy as np
import pytest
import tensorflow as tf
from official.nlp.data import create_pretraining_data as reference
from official.nlp.tools import tokenization as reference_tokenization

from bert_tf import tokenization, vocab as vocab_lib
from bert_tf.data import pretraining, pretraining_input, text
from bert_tf.data.demo import corpus as demo_corpus, pretraining_data as demo
from bert_tf.data.pretraining import masking

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ, PREDS = 64, 10


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("pretraining")
  docs = demo_corpus.demo_documents()[:60]
  text.write_documents(docs, str(root / "corpus.txt"))
  vocab = vocab_lib.build_vocab([s for d in docs for s in d], 3000)
  vocab_lib.write_vocab(vocab, str(root / "vocab.txt"))
  return root


def _records(path):
  return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]


def _reference_records(root, name, seed, whole_word, dupe_factor=2):
  tok = reference_tokenization.FullTokenizer(str(root / "vocab.txt"), do_lower_case=True)
  tok.wordpiece_tokenizer.max_input_chars_per_word = tokenization.MAX_CHARS_PER_WORD
  instances = reference.create_training_instances(
      [str(root / "corpus.txt")], tok, reference.get_processor_text_fn(False, True), SEQ,
      dupe_factor, 0.1, 0.15, PREDS, random.Random(seed), whole_word)
  out = str(root / name)
  reference.write_instance_to_example_files(instances, tok, SEQ, PREDS, [out], False, False)
  return out


def _ours(root, name, seed, whole_word, num_workers=1, documents_per_chunk=20000,
          dupe_factor=2, preds=PREDS, shards=1, exact=False):
  config = pretraining.PretrainingDataConfig(
      max_seq_length=SEQ, max_predictions_per_seq=preds, random_seed=seed,
      dupe_factor=dupe_factor, do_whole_word_mask=whole_word, num_workers=num_workers,
      documents_per_chunk=documents_per_chunk, exact_reference_rng=exact)
  outs = [str(root / f"{name}-{i}") for i in range(shards)]
  tokenizer = tokenization.BertTokenizer(str(root / "vocab.txt"))
  stats = pretraining.create_pretraining_data([str(root / "corpus.txt")], outs, tokenizer, config)
  return outs, stats


@pytest.mark.unit
@pytest.mark.parametrize("whole_word", [False, True], ids=["token", "whole_word"])
def test_identical_to_reference_in_one_chunk(corpus, whole_word):
  """Same seed, one chunk, one worker, the reference's random stream: record for record what
  Model Garden's script writes."""
  expected = _records(_reference_records(corpus, f"ref-{whole_word}", 7, whole_word))
  (ours,), stats = _ours(corpus, f"ours-{whole_word}", 7, whole_word, exact=True)
  got = _records(ours)
  assert stats["instances"] == len(expected) > 100
  assert got == expected


def _statistics(paths):
  ids, mask, pos, lab, weights, nsp = [], [], [], [], [], []
  for ex in (e for p in paths for e in _records(p)):
    f = ex.features.feature
    ids.append(f["input_ids"].int64_list.value)
    mask.append(f["input_mask"].int64_list.value)
    pos.append(f["masked_lm_positions"].int64_list.value)
    lab.append(f["masked_lm_ids"].int64_list.value)
    weights.append(f["masked_lm_weights"].float_list.value)
    nsp.append(f["next_sentence_labels"].int64_list.value[0])
  ids, mask, pos, lab, weights = map(np.array, (ids, mask, pos, lab, weights))
  real = weights > 0
  at_pos = np.take_along_axis(ids, pos, axis=1)[real]
  labels = lab[real]
  return {"instances": len(nsp), "random_next": np.mean(nsp), "length": mask.sum(1).mean(),
          "short": np.mean(mask.sum(1) < SEQ * 0.8), "masked_per_token": real.sum() / mask.sum(),
          "mask_token": np.mean(at_pos == 4), "kept": np.mean(at_pos == labels),
          "n_masked": real.sum()}


@pytest.mark.integration
@pytest.mark.parametrize("whole_word", [False, True], ids=["token", "whole_word"])
def test_statistics_match_reference_with_parallel_chunks(corpus, whole_word):
  """The fast path (numpy masks, 2 workers, chunks of 15 documents, another seed): the same
  distribution as the reference."""
  ref = _statistics([_reference_records(corpus, f"ref-stats-{whole_word}", 1, whole_word,
                                        dupe_factor=4)])
  outs, stats = _ours(corpus, f"ours-stats-{whole_word}", 2, whole_word, num_workers=2,
                      documents_per_chunk=15, dupe_factor=4, shards=3)
  ours = _statistics(outs)
  assert stats["documents"] == 60
  assert abs(ours["instances"] - ref["instances"]) < 0.08 * ref["instances"]
  n = min(ref["n_masked"], ours["n_masked"])
  # A short target length is drawn once per document and dupe round (60 x 4 draws), not per
  # instance: that is its sample size.
  for key, p, count in (("random_next", 0.5, ref["instances"]), ("mask_token", 0.8, n),
                        ("kept", 0.1, n), ("short", 0.1, 60 * 4)):
    sigma = np.sqrt(2 * p * (1 - p) / count)  # difference of two binomial proportions
    assert abs(ours[key] - ref[key]) < 4 * sigma + 1e-9, (key, ours[key], ref[key])
  assert abs(ours["masked_per_token"] - ref["masked_per_token"]) < 0.01
  assert abs(ours["length"] - ref["length"]) < 0.05 * ref["length"]


@pytest.mark.unit
def test_reader_batches(corpus):
  outs, stats = _ours(corpus, "read", 3, False, shards=2)
  raw = [e for p in outs for e in _records(p)]
  ds = pretraining_input.make_pretraining_dataset(",".join(outs), 8, SEQ, PREDS, is_training=False)
  batches = list(ds)
  assert sum(int(b["input_ids"].shape[0]) for b in batches) == stats["instances"] == len(raw)
  b = batches[0]
  assert {k: (v.dtype, v.shape.as_list()) for k, v in b.items()} == {
      "input_ids": (tf.int32, [8, SEQ]), "input_mask": (tf.int32, [8, SEQ]),
      "segment_ids": (tf.int32, [8, SEQ]), "masked_lm_positions": (tf.int32, [8, PREDS]),
      "masked_lm_ids": (tf.int32, [8, PREDS]), "masked_lm_weights": (tf.float32, [8, PREDS]),
      "next_sentence_labels": (tf.int32, [8, 1])}
  first = raw[0].features.feature  # interleave takes file 0's first record first
  assert b["input_ids"][0].numpy().tolist() == list(first["input_ids"].int64_list.value)
  # Sharding by file: two shards are disjoint and cover everything.
  shards = [list(pretraining_input.make_pretraining_dataset(outs, 1000, SEQ, PREDS, False,
                                                      num_shards=2, shard_index=i))
            for i in range(2)]
  assert [sum(int(x["input_ids"].shape[0]) for x in s) for s in shards] == [
      len(_records(outs[0])), len(_records(outs[1]))]
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
  via_context = list(pretraining_input.make_pretraining_dataset(outs, 1000, SEQ, PREDS, False,
                                                          input_context=context))
  assert via_context[0]["input_ids"].numpy().tolist() == shards[1][0]["input_ids"].numpy().tolist()
  # Fewer files than workers: by record, still disjoint and complete.
  records = [list(pretraining_input.make_pretraining_dataset(outs, 1, SEQ, PREDS, False,
                                                       num_shards=3, shard_index=i))
             for i in range(3)]
  seen = sorted(tuple(b["input_ids"][0].numpy().tolist()) for shard in records for b in shard)
  assert seen == sorted(tuple(e.features.feature["input_ids"].int64_list.value) for e in raw)
  assert [len(shard) for shard in records] == [len(raw[i::3]) for i in range(3)]
  # Training: repeats, shuffles, fixed batch shape.
  train = pretraining_input.make_pretraining_dataset(outs, 16, SEQ, PREDS, True, seed=1)
  for batch in train.take(3):
    assert batch["input_ids"].shape == (16, SEQ)


@pytest.mark.unit
def test_reader_shape_mismatch_names_both_values(corpus):
  outs, _ = _ours(corpus, "shape", 3, False, dupe_factor=1)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"input_ids of length 64.*--max_seq_length is 128"):
    next(iter(pretraining_input.make_pretraining_dataset(outs, 4, 128, PREDS, False)))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"masked_lm_\w+ of length 10.*--max_predictions_per_seq is 20"):
    next(iter(pretraining_input.make_pretraining_dataset(outs, 4, SEQ, 20, False)))


@pytest.mark.unit
def test_corrupt_record_named_or_skipped_and_counted(corpus, tmp_path):
  outs, _ = _ours(corpus, "corrupt", 3, False, dupe_factor=1, shards=2)
  bad = tmp_path / "bad.tfrecord"
  data = bytearray(open(outs[0], "rb").read())
  data[len(data) // 2] ^= 0xFF
  bad.write_bytes(bytes(data))
  files = f"{bad},{outs[1]}"
  with pytest.raises(tf.errors.InvalidArgumentError, match="corrupt TFRecord file .*bad.tfrecord"):
    for _ in pretraining_input.make_pretraining_dataset(files, 4, SEQ, PREDS, False):
      pass
  counter = tf.Variable(0, dtype=tf.int64)
  ds = pretraining_input.make_pretraining_dataset(files, 4, SEQ, PREDS, False, skip_corrupt=True,
                                            corrupt_counter=counter)
  n = sum(int(b["input_ids"].shape[0]) for b in ds)
  assert int(counter.numpy()) == 1
  assert len(_records(outs[1])) < n < len(_records(outs[0])) + len(_records(outs[1]))


@pytest.mark.unit
def test_dynamic_masking(corpus):
  outs, _ = _ours(corpus, "unmasked", 5, False, dupe_factor=1, preds=0)
  vocab = tokenization.load_vocab(str(corpus / "vocab.txt"))
  masking = pretraining_input.DynamicMasking.from_vocab(vocab)
  ds = pretraining_input.make_pretraining_dataset(outs, 64, SEQ, PREDS, False,
                                                  dynamic_masking=masking,
                                                  seed=3)
  plain = pretraining_input.make_pretraining_dataset(outs, 64, SEQ, 0, False)
  masked_count = real = mask_hits = kept = 0
  for b, p in zip(ds, plain):
    ids, orig = b["input_ids"].numpy(), p["input_ids"].numpy()
    pos, lab, w = (b[k].numpy() for k in ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights"))
    for i in range(len(ids)):
      k = int(w[i].sum())
      assert np.all(np.diff(pos[i, :k]) > 0) and not np.any(w[i, k:])
      assert np.all(lab[i, :k] == orig[i, pos[i, :k]])
      assert not set(orig[i, pos[i, :k]]) & {vocab["[CLS]"], vocab["[SEP]"], 0}
      unmasked = np.ones(SEQ, bool)
      unmasked[pos[i, :k]] = False
      assert np.all(ids[i, unmasked] == orig[i, unmasked])
      mask_hits += np.sum(ids[i, pos[i, :k]] == vocab["[MASK]"])
      kept += np.sum(ids[i, pos[i, :k]] == orig[i, pos[i, :k]])
      masked_count += k
      real += int(p["input_mask"][i].numpy().sum())
  assert abs(masked_count / real - 0.15) < 0.02
  assert abs(mask_hits / masked_count - 0.8) < 0.05
  assert abs(kept / masked_count - 0.1) < 0.04
  # Every pass draws new masks.
  again = next(iter(ds))["masked_lm_positions"].numpy()
  assert not np.array_equal(again, next(iter(ds))["masked_lm_positions"].numpy())


@pytest.mark.unit
def test_bad_inputs_name_the_file(corpus, tmp_path):
  tokenizer = tokenization.BertTokenizer(str(corpus / "vocab.txt"))
  config = pretraining.PretrainingDataConfig(num_workers=1)
  with pytest.raises(FileNotFoundError, match="nope.txt"):
    pretraining.create_pretraining_data([str(tmp_path / "nope.txt")], [str(tmp_path / "o")],
                                        tokenizer, config)
  with pytest.raises(FileNotFoundError, match=r"no files match input pattern .*\*.missing"):
    pretraining.expand_file_patterns(str(tmp_path / "*.missing"))
  (tmp_path / "v.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nword\n")
  with pytest.raises(ValueError, match=r"v.txt.*\[MASK\]"):
    pretraining.create_pretraining_data([str(corpus / "corpus.txt")], [str(tmp_path / "o")],
                                        tokenization.BertTokenizer(str(tmp_path / "v.txt")), config)
  with pytest.raises(ValueError, match="max_seq_length"):
    pretraining.PretrainingDataConfig(max_seq_length=3)


@pytest.mark.unit
def test_build_vocab(corpus):
  vocab = [line.rstrip("\n") for line in open(corpus / "vocab.txt", encoding="utf-8")]
  assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  assert len(vocab) == len(set(vocab)) <= 3000
  tok = tokenization.BertTokenizer(str(corpus / "vocab.txt"))
  lines = [s for d in demo_corpus.demo_documents()[:60] for s in d]
  ids = [i for row in tok.encode_batch(lines) for i in row]
  assert ids.count(tok.vocab["[UNK]"]) < 0.001 * len(ids)
  assert len(ids) < 1.6 * sum(len(line.split()) for line in lines)


@pytest.mark.unit
def test_sentence_splitter_and_documents():
  assert text.split_sentences("Dr. Smith arrived at 3 p.m. today. He left!  Was it e.g. "
                              "Python 3.11? Yes.\n\"Quoted.\" Next one") == [
      "Dr. Smith arrived at 3 p.m. today.", "He left!", "Was it e.g. Python 3.11?", "Yes.",
      "\"Quoted.\"", "Next one"]
  docs = text.text_to_documents("One. Two.\n\nThree. Four.\n", document_per="paragraph")
  assert docs == [["One.", "Two."], ["Three.", "Four."]]
  assert text.text_to_documents("One. Two.\n\nThree.") == [["One.", "Two.", "Three."]]
  assert "".join(text.format_documents(docs)) == "One.\nTwo.\n\nThree.\nFour.\n\n"
  demo_docs = demo_corpus.demo_documents()
  assert len(demo_docs) > 150 and sum(map(len, demo_docs)) > 2500
  assert all(len(d) >= 2 and all(s.strip() and "\n" not in s for s in d) for d in demo_docs)


@pytest.mark.unit
def test_prepare_demo_data_is_idempotent(tmp_path):
  settings = demo.DemoSettings(vocab_size=2000, max_seq_length=64, max_predictions_per_seq=8,
                               dupe_factor=1, num_shards=2)
  first = demo.prepare_demo_data(str(tmp_path), settings, num_workers=1)
  assert not first["reused"] and first["counts"]["train_instances"] > 500
  for group in first["paths"].values():
    assert all(os.path.exists(p) for p in group)
  mtime = os.path.getmtime(first["paths"]["vocab"][0])
  again = demo.prepare_demo_data(str(tmp_path), settings)
  assert again["reused"] and os.path.getmtime(first["paths"]["vocab"][0]) == mtime
  with pytest.raises(FileExistsError, match="other settings"):
    demo.prepare_demo_data(str(tmp_path), demo.DemoSettings(vocab_size=1000))
  batch = next(iter(pretraining_input.make_pretraining_dataset(
      first["paths"]["train"], 4, 64, 8, is_training=True, seed=0)))
  assert batch["input_ids"].shape == (4, 64)
  # A stray output without settings.json is never overwritten silently.
  other = tmp_path / "other"
  other.mkdir()
  (other / "vocab.txt").write_text("mine\n")
  with pytest.raises(FileExistsError, match="vocab.txt"):
    demo.prepare_demo_data(str(other), settings)
  assert (other / "vocab.txt").read_text() == "mine\n"


@pytest.mark.integration
def test_create_pretraining_data_cli(corpus, tmp_path):
  outs = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]
  cmd = [sys.executable, os.path.join(REPO, "create_pretraining_data.py"),
         f"--input_file={corpus / 'corpus.txt'}", f"--output_file={','.join(outs)}",
         f"--vocab_file={corpus / 'vocab.txt'}", "--do_lower_case", f"--max_seq_length={SEQ}",
         f"--max_predictions_per_seq={PREDS}", "--dupe_factor=1", "--num_workers=2",
         "--random_seed=7"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  counts = [len(_records(p)) for p in outs]
  assert min(counts) > 0 and abs(counts[0] - counts[1]) <= 1
  bad = subprocess.run(cmd[:2] + [f"--input_file={tmp_path / 'missing.txt'}"] + cmd[3:],
                       capture_output=True, text=True, timeout=180, cwd=REPO)
  assert bad.returncode != 0 and "missing.txt" in bad.stderr


@pytest.mark.integration
def test_build_vocab_cli(tmp_path):
  corpus = tmp_path / "corpus.txt"
  text.write_documents(demo_corpus.demo_documents()[:30], str(corpus))
  out = tmp_path / "vocab.txt"
  cmd = [sys.executable, os.path.join(REPO, "build_vocab.py"), f"--input_file={corpus}",
         f"--output_file={out}", "--vocab_size=500", "--num_unused=3"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
  assert proc.returncode == 0, proc.stderr[-3000:]
  vocab = out.read_text(encoding="utf-8").splitlines()
  assert vocab[:8] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused1]",
                       "[unused2]"] and len(vocab) <= 500
  again = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
  assert again.returncode != 0 and "--overwrite" in again.stderr
  assert out.read_text(encoding="utf-8").splitlines() == vocab


@pytest.mark.unit
def test_fast_truncation_has_the_reference_distribution():
  """truncate_fast (O(1)) gives the same outcomes with the same frequencies as google's loop."""
  import collections
  for la, lb, limit in [(10, 3, 8), (3, 10, 8), (7, 7, 9), (12, 9, 10), (5, 5, 3)]:
    a0, b0 = list(range(la)), list(range(100, 100 + lb))
    ref, fast = collections.Counter(), collections.Counter()
    rng = random.Random(0)
    for _ in range(6000):
      a, b = list(a0), list(b0)
      pretraining.truncate_seq_pair(a, b, limit, rng)
      ref[tuple(a), tuple(b)] += 1
      a, b = pretraining.truncate_fast(list(a0), list(b0), limit, rng)
      fast[tuple(a), tuple(b)] += 1
    assert set(ref) == set(fast)
    assert max(abs(ref[k] - fast[k]) for k in ref) < 0.03 * 6000


@pytest.mark.unit
@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 128, 1000])
def test_fast_shuffle_is_random_shuffle(n):
  """masking.fast_shuffle (random.shuffle with _randbelow inlined) gives rng.shuffle's
  permutation and consumes the same random numbers: exact_reference_rng relies on it."""
  a, b = list(range(n)), list(range(n))
  r1, r2 = random.Random(n), random.Random(n)
  masking.fast_shuffle(a, r1)
  r2.shuffle(b)
  assert a == b and r1.random() == r2.random()


@pytest.mark.unit
def test_inlined_randint_is_rng_randint():
  """instances._randint (randint with _randbelow inlined) returns rng.randint's numbers and
  consumes the same random stream: exact_reference_rng relies on it."""
  from bert_tf.data.pretraining import instances
  r1, r2 = random.Random(3), random.Random(3)
  for low, high in [(0, 0), (0, 1), (2, 125), (1, 7), (0, 3979)] * 40:
    assert r1.randint(low, high) == instances._randint(r2.getrandbits, low, high)
  assert r1.random() == r2.random()


def _tiny_context(**config):
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "c", "##d"]
  tokenizer = types.SimpleNamespace(vocab={t: i for i, t in enumerate(tokens)},
                                    vocab_file="tiny.txt")
  return pretraining.PretrainingContext.from_tokenizer(
      tokenizer, pretraining.PretrainingDataConfig(**config))


@pytest.mark.unit
def test_context_holds_the_vocabulary_facts():
  context = _tiny_context(max_seq_length=16)
  assert context.vocab_ids == tuple(range(9))
  assert (context.cls_id, context.sep_id, context.mask_id) == (2, 3, 4)
  assert [i for i, subword in enumerate(context.is_subword) if subword] == [6, 8]
  assert context.config.max_seq_length == 16
  with pytest.raises(dataclasses.FrozenInstanceError):
    context.mask_id = 0


@pytest.mark.unit
@pytest.mark.parametrize("whole_word", [False, True], ids=["token", "whole_word"])
def test_both_masking_paths_share_one_record_serializer(whole_word):
  """The fast path (spans, numpy masks) holds the instances the list path builds for the same
  random stream, and serializes to the bytes serialize_instance (the exact path's) writes for
  the same masked instances, which parse as google's features."""
  seq, preds = 16, 4
  context = _tiny_context(max_seq_length=seq, max_predictions_per_seq=preds,
                          do_whole_word_mask=whole_word)
  serializer = pretraining.RecordSerializer.for_context(context)
  docs = [[[5, 6, 7], [7, 8, 5, 6], [5]], [[7, 8], [5, 5, 6, 7]], [[6, 7, 8, 5, 5, 7, 8]]]
  instances = pretraining.create_instances(docs, random.Random(0), 3, context)
  spans = pretraining.create_spans(docs, random.Random(0), 3, context)
  batch = pretraining.mask_batch(spans, np.random.default_rng(0), context)
  records = serializer.serialize_batch(batch)
  assert len(records) == len(instances) > 3 and sum(batch.counts) > len(instances)
  unmasked = []
  for i, record in enumerate(records):
    k, n, num_b = batch.counts[i], batch.lengths[i], batch.num_b[i]
    tokens, positions = batch.input_ids[i, :n].tolist(), batch.positions[i, :k].tolist()
    original = list(tokens)
    for p, label in zip(positions, batch.labels[i, :k].tolist()):
      original[p] = label
    unmasked.append((original, num_b, batch.is_random_next[i]))
    segment_ids = [0] * (n - num_b) + [1] * num_b
    masked = pretraining.TrainingInstance(tokens, segment_ids, positions,
                                          batch.labels[i, :k].tolist(), batch.is_random_next[i])
    assert serializer.serialize_instance(masked) == record
    feature = tf.train.Example.FromString(record).features.feature
    values = {name: list(feature[name].int64_list.value or feature[name].float_list.value)
              for name in pretraining.FEATURE_NAMES}
    assert values == {
        "input_ids": tokens + [0] * (seq - n), "input_mask": [1] * n + [0] * (seq - n),
        "segment_ids": segment_ids + [0] * (seq - n),
        "masked_lm_positions": positions + [0] * (preds - k),
        "masked_lm_ids": masked.masked_lm_labels + [0] * (preds - k),
        "masked_lm_weights": [1.0] * k + [0.0] * (preds - k),
        "next_sentence_labels": [int(masked.is_random_next)]}
    assert all(original[p] not in (2, 3) for p in positions)  # never [CLS] / [SEP]
  # The same instances in another order (the fast path shuffles with numpy).
  assert sorted(unmasked) == sorted((inst.tokens, sum(inst.segment_ids), inst.is_random_next)
                                    for inst in instances)


@pytest.mark.integration
def test_worker_side_modules_do_not_import_tensorflow():
  """Spawned workers import the pretraining package: TensorFlow there would cost every
  worker seconds of start-up and hundreds of MB."""
  code = ("import sys, bert_tf.data.pretraining.writer; "
          "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras')))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        timeout=120, cwd=REPO)
  assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-3000:]


@pytest.mark.unit
def test_whole_word_masking_follows_googles_algorithm():
  """The fast path's whole-word choice (all rows at once) against Model Garden's
  create_masked_lm_predictions on one instance drawn many times: only whole words (a ## piece
  after [CLS]/[SEP] starting one), never more than the budget, no skipped word that would
  still fit, and each position masked as often as the reference masks it."""
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b", "c", "##d", "e"]
  words = ("[CLS] ##b a ##b ##b c e ##d ##d ##d a c ##b e e ##d [SEP] ##d c ##b ##b ##b ##b e "
           "a ##d a [SEP]").split()
  ids = np.array([vocab.index(w) for w in words])
  is_subword = np.array([w.startswith("##") for w in vocab])
  draws, seq = 4000, len(words) + 3  # padding after the last [SEP]
  tokens = np.zeros([draws, seq], np.int64)
  tokens[:, :len(words)] = ids
  candidate = (np.arange(seq) < len(words)) & ~np.isin(tokens, [2, 3])
  budget = min(PREDS, max(1, round(len(words) * 0.15)))  # 4: words of 1-5 pieces compete
  chosen = masking._whole_word_choices(tokens, candidate, np.full(draws, budget),
                                       np.random.default_rng(0), is_subword)
  grams = reference._tokens_to_grams(words)
  assert [g.end - g.begin for g in grams] == [1, 3, 1, 4, 1, 2, 1, 2, 1, 5, 1, 2, 1]
  for row in chosen:
    taken = [bool(row[g.begin]) for g in grams]
    assert all(row[g.begin:g.end].all() == t and row[g.begin:g.end].any() == t
               for g, t in zip(grams, taken))  # whole words
    left = budget - row.sum()
    assert left >= 0 and all(t or g.end - g.begin > left for g, t in zip(grams, taken))
  rng = random.Random(0)
  ref = np.zeros(len(words))
  for _ in range(draws):
    _, positions, _ = reference.create_masked_lm_predictions(words, 0.15, PREDS, vocab, rng,
                                                             True)
    ref[positions] += 1
  ours, ref = chosen[:, :len(words)].mean(0), ref / draws
  sigma = np.sqrt(2 * ref * (1 - ref) / draws) + 1e-9  # difference of two binomial proportions
  assert np.all(np.abs(ours - ref) < 4.5 * sigma + 1e-3), np.round(np.stack([ours, ref]), 3)
