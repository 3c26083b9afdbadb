"""TaggerTrainer and run_tagging.py: learning the committed CoNLL sample, Mirrored on 2 logical
devices = one device, prediction (host-fed, one trace) = the per-call tf.data path's, the
command line end to end and its bad-input errors."""
import json
import os
import shutil

import numpy as np
import pytest

from bert_tf import tokenization
from bert_tf.configs import FinetuneConfig, OptimizerConfig
from bert_tf.data import tagging as data
from bert_tf.distribution import make_runtime
from bert_tf.testing.launch import run_script
from bert_tf.testing.tiny import classifier_config
from bert_tf.training.tagging import TaggerTrainer, TaggingSpec
from test_finetuning import tf_data_logits

SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "conll")


@pytest.fixture(scope="module")
def sample():
  tokenizer = tokenization.BertTokenizer(os.path.join(SAMPLE, "vocab.txt"), do_lower_case=False)
  train = data.read_conll(os.path.join(SAMPLE, "train.txt"))
  dev = data.read_conll(os.path.join(SAMPLE, "dev.txt"))
  labels = data.label_list(train)
  ids = {label: i for i, label in enumerate(labels)}
  return dict(labels=labels, vocab_size=len(tokenizer.vocab), dev=dev,
              train_features=data.featurize(train, tokenizer, 32, ids),
              dev_features=data.featurize(dev, tokenizer, 32, ids))


def _trainer(sample, output_dir, runtime="one_device", **overrides):
  config = FinetuneConfig(**{**dict(
      output_dir=str(output_dir), train_batch_size=8, eval_batch_size=32, max_seq_length=32,
      num_train_epochs=8, iterations_per_loop=20, save_checkpoints_steps=1000, seed=1),
      **overrides})
  return TaggerTrainer(classifier_config(sample["vocab_size"], 0.0), config,
                       OptimizerConfig(learning_rate=1e-3), make_runtime(runtime),
                       TaggingSpec("conll2003", tuple(sample["labels"])))


@pytest.mark.integration
def test_tagger_learns_the_sample(sample, tmp_path):
  trainer = _trainer(sample, tmp_path)
  untrained = trainer.evaluate(sample["dev_features"], sample["dev"])
  trainer.train(sample["train_features"])
  results = trainer.evaluate(sample["dev_features"], sample["dev"])
  assert untrained["eval_f1"] < 0.2, untrained
  assert results["eval_f1"] >= 0.95 and results["eval_accuracy"] >= 0.98, results
  assert {"eval_f1_PER", "eval_recall_LOC", "eval_precision_ORG", "eval_count_MISC",
          "global_step"} <= set(results)
  text = (tmp_path / "eval_results.txt").read_text().splitlines()
  assert text == sorted(text) and f"eval_f1 = {results['eval_f1']}" in text
  rows = (tmp_path / "dev_predictions.txt").read_text().split("\n\n")
  assert rows[0].splitlines()[0].split() == [sample["dev"][0].words[0],
                                             sample["dev"][0].tags[0],
                                             sample["dev"][0].tags[0]]


@pytest.mark.integration
def test_mirrored_two_replicas_equal_one_device(sample, tmp_path):
  """Two steps of 8 sentences: 2 replicas x 2 accumulation micro-batches of 2 sentences (each
  with its own count of labelled tokens) = one device with one batch of 8."""
  weights, predictions = [], []
  for name, k in (("one_device", 1), ("mirrored", 2)):
    trainer = _trainer(sample, tmp_path / name, name, gradient_accumulation_steps=k,
                       num_train_epochs=1)
    trainer.train(sample["train_features"], stop_after_steps=2)
    weights.append([v.numpy() for v in trainer.model.trainable_variables])
    predictions.append(trainer.predict_words(sample["dev_features"], 16))
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*weights))
  assert diff < 2e-5, diff
  np.testing.assert_array_equal(predictions[0], predictions[1])


@pytest.mark.integration
@pytest.mark.parametrize("runtime", ["one_device", "mirrored"])
@pytest.mark.parametrize("batching", [dict(eval_batch_size=12),
                                      dict(batch_size_in_tokens=True, eval_batch_size=256)])
def test_predict_words_trace_once_and_equal_the_tf_data_path(sample, tmp_path, runtime,
                                                             batching):
  """``predict_words`` (``PlannedTrainer.infer``, host-fed): the words' labels are the argmax
  of the logits of the per-call generator dataset it replaced, window by window, on one
  device and on 2 replicas, by count (a last step with an empty part) and by token budget
  (length-bucketed, widths vary); one trace across sets and calls."""
  trainer = _trainer(sample, tmp_path, runtime, **batching)
  size = trainer.config.eval_batch_size
  sets = [sample["dev_features"], sample["train_features"]]
  first = [trainer.predict_words(features, size) for features in sets]
  np.testing.assert_array_equal(trainer.predict_words(sets[0], size), first[0])
  forward, local_ids = trainer._infer_fn  # pylint: disable=protected-access
  assert forward.experimental_get_tracing_count() == 1
  assert local_ids == ([0, 1] if runtime == "mirrored" else [0])
  for features, words in zip(sets, first):
    expected = np.zeros(features.num_words, np.int32)
    for window, logits in enumerate(tf_data_logits(trainer, features, size)):
      positions, word_ids = features.positions(window)
      expected[word_ids] = np.argmax(logits[positions], axis=-1)
    np.testing.assert_array_equal(words, expected)
    assert len(np.unique(words)) > 2  # the untrained tagger's labels vary: not a constant
  assert forward.experimental_get_tracing_count() == 1


def _run(tmp_path, data_dir, *args, epochs=8):
  config = tmp_path / "bert_config.json"
  classifier_config(57, dropout=0.0).to_json_file(config)
  return run_script("run_tagging.py", [
      "--task_name=conll2003", f"--data_dir={data_dir}",
      f"--vocab_file={os.path.join(SAMPLE, 'vocab.txt')}", f"--bert_config_file={config}",
      f"--output_dir={tmp_path / 'out'}", "--max_seq_length=32", "--train_batch_size=8",
      "--learning_rate=1e-3", f"--num_train_epochs={epochs}", "--iterations_per_loop=50", *args],
      timeout=240)


@pytest.mark.integration
def test_run_tagging_trains_evaluates_and_predicts(tmp_path):
  """Two epochs, with document context (learning itself: test_tagger_learns_the_sample)."""
  result = _run(tmp_path, SAMPLE, "--do_train", "--do_eval", "--do_predict", "--doc_context",
                epochs=2)
  assert result.returncode == 0, result.stderr[-4000:]
  out = tmp_path / "out"
  results = dict(line.split(" = ") for line in (out / "eval_results.txt").read_text().splitlines())
  assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_f1_PER",
          "global_step"} <= set(results), results
  assert "Eval results" in result.stderr
  assert (out / "labels.txt").read_text().split() == [
      "O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER"]
  sentences = (out / "test_predictions.txt").read_text().strip("\n").split("\n\n")
  assert sum(not s.startswith("-DOCSTART-") for s in sentences) == 30
  assert all(len(line.split()) == 3 for s in sentences for line in s.splitlines())
  for name in ("run.flags", "checkpoint", "train_metrics.jsonl"):
    assert (out / name).exists(), name
  resolved = json.loads((out / "run_config.json").read_text())
  assert resolved["data"]["doc_context"] and not resolved["data"]["do_lower_case"]
  # Predicting again from the same output directory reads the test split's features from the
  # cache the first run wrote (and says so) and writes the same predictions.
  first = (out / "test_predictions.txt").read_text()
  (out / "test_predictions.txt").unlink()
  again = _run(tmp_path, SAMPLE, "--do_predict", "--doc_context")
  assert again.returncode == 0, again.stderr[-4000:]
  assert "test.txt: features from cache" in again.stderr, again.stderr[-2000:]
  assert "train.txt: features from cache" not in again.stderr
  assert (out / "test_predictions.txt").read_text() == first


@pytest.mark.integration
def test_run_tagging_bad_input_fails_with_file_and_line(tmp_path):
  data_dir = tmp_path / "conll"
  shutil.copytree(SAMPLE, data_dir)
  with open(data_dir / "train.txt", "a") as f:
    f.write("EU NNP B-ORG\n")
  result = _run(tmp_path, data_dir, "--do_train")
  assert result.returncode != 0
  lines = len((data_dir / "train.txt").read_text().splitlines())
  assert (f"error reading the train data: {data_dir}/train.txt:{lines}: expected 4 columns "
          "(word ... tag), got 3 (--skip_malformed_rows skips and counts such sentences)"
          ) in result.stderr, result.stderr[-2000:]
  # At evaluation a tag outside the training label set is refused the same way.
  shutil.copy(os.path.join(SAMPLE, "train.txt"), data_dir / "train.txt")
  with open(data_dir / "dev.txt", "a") as f:
    f.write("\nEU NNP B-NP B-GPE\n")
  result = _run(tmp_path, data_dir, "--do_eval")
  assert result.returncode != 0
  assert "dev.txt:283: tag 'B-GPE' is not in the training label set" in result.stderr, \
      result.stderr[-2000:]
  # A training file with no sentences (only a document marker) is refused, naming the file.
  (data_dir / "train.txt").write_text("-DOCSTART- -X- -X- O\n\n")
  result = _run(tmp_path, data_dir, "--do_train")
  assert result.returncode != 0
  assert f"error reading the train data: no sentences in {data_dir}/train.txt" in result.stderr, \
      result.stderr[-2000:]


@pytest.mark.unit
def test_encoder_checkpoint_initialises_the_tagger_and_fp16_logits_are_float32(tmp_path):
  import tensorflow as tf
  import tf_keras
  from bert_tf.modeling import BertEncoder
  from bert_tf.training.tagging import TaggingTask
  config = classifier_config(57, 0.0)
  source = BertEncoder(config, seed=3)
  path = tf.train.Checkpoint(encoder=source).save(str(tmp_path / "encoder"))
  task = TaggingTask(TaggingSpec("bio", ("O", "B-X", "I-X")),
                     FinetuneConfig(output_dir=str(tmp_path)))
  tf_keras.mixed_precision.set_global_policy("mixed_float16")
  tagger = task.build_model(config, FinetuneConfig(output_dir=str(tmp_path), seed=7))
  assert task.init_from(path, tagger) == "encoder"
  for a, b in zip(source.variables, tagger.encoder.variables, strict=True):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
  ids = tf.constant([[2, 7, 9, 3, 0]])
  logits = tagger({"input_ids": ids, "input_mask": tf.cast(ids > 0, tf.int32)})["logits"]
  assert logits.shape == (1, 5, 3) and logits.dtype == tf.float32
  assert all(v.dtype == tf.float32 for v in tagger.variables)
  assert tagger.encoder.pooler.kernel.ref() not in {v.ref() for v in tagger.trainable_variables}
