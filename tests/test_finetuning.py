"""ClassifierTrainer: metrics against sklearn/scipy, learning on the XNLI-format sample (fp32,
fp16, recompute), Mirrored = one device on a token-budget step, resume, google's outputs,
prediction (one trace, the logits of the per-call tf.data path it replaced, kept here as
``tf_data_logits``: test_squad and test_tagging use it too)."""
import os

import numpy as np
import pytest
from sklearn import metrics as sk
import tensorflow as tf

from bert_tf import finetuning, tokenization
from bert_tf.data import classifier as data
from bert_tf.testing import builders
from bert_tf.testing.files import read_metrics, write_xnli_sample
from bert_tf.testing.tiny import classifier_config
from bert_tf.training.planned import INPUTS


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
  """en + de sample, featurised once for the module: train en, eval both (zero-shot)."""
  root = tmp_path_factory.mktemp("xnli")
  paths = write_xnli_sample(root, train=1000, evals=60, languages=("en", "de"))
  tokenizer = tokenization.BertTokenizer(paths["vocab_file"])
  task = data.make_task("xnli", "en", "all")
  train = data.load_features(task, paths["data_dir"], "train", tokenizer, 64)[""]
  dev = data.load_features(task, paths["data_dir"], "dev", tokenizer, 64)
  return dict(task=task, train=train, dev=dev, vocab_size=len(tokenizer.vocab))


def _trainer(sample, output_dir, runtime="one_device", dropout=0.0, **overrides):
  return builders.classifier_trainer(output_dir, runtime, task=sample["task"],
                                     config=classifier_config(sample["vocab_size"], dropout),
                                     **overrides)


@pytest.mark.unit
def test_metrics_match_sklearn_and_scipy():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 200)
  predictions = np.where(rng.random(200) < 0.7, labels, 1 - labels)
  assert finetuning.f1_score(labels, predictions) == pytest.approx(sk.f1_score(labels, predictions))
  assert finetuning.matthews_corrcoef(labels, predictions) == pytest.approx(
      sk.matthews_corrcoef(labels, predictions))
  assert finetuning.matthews_corrcoef(labels, np.zeros(200, int)) == 0.0
  logits = np.eye(2)[predictions] * 3.0
  results = finetuning.compute_metrics(data.make_task("mrpc"), logits, labels)
  assert results["eval_accuracy"] == pytest.approx(np.mean(predictions == labels))
  assert results["eval_f1"] == pytest.approx(sk.f1_score(labels, predictions))
  assert results["eval_loss"] == pytest.approx(sk.log_loss(labels, np.exp(logits) / np.exp(
      logits).sum(1, keepdims=True)))
  scores = rng.normal(size=50)
  gold = scores + rng.normal(size=50) * 0.5
  stsb = finetuning.compute_metrics(data.make_task("stsb"), scores[:, None], gold)
  ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731  (no ties in continuous data)
  assert stsb["eval_pearson"] == pytest.approx(np.corrcoef(scores, gold)[0, 1])
  assert stsb["eval_spearman"] == pytest.approx(np.corrcoef(ranks(scores), ranks(gold))[0, 1])
  assert stsb["eval_loss"] == pytest.approx(np.mean((scores - gold) ** 2))


@pytest.fixture(scope="module")
def fp32_run(sample, tmp_path_factory):
  out = tmp_path_factory.mktemp("fp32")
  trainer = _trainer(sample, out)
  untrained = trainer.evaluate(sample["dev"])["eval_accuracy_en"]
  trainer.train(sample["train"])
  return out, untrained, trainer.evaluate(sample["dev"])


@pytest.mark.integration
def test_fine_tuning_learns_the_sample(fp32_run, sample):
  out, untrained, results = fp32_run
  assert untrained < 0.6
  assert results["eval_accuracy_en"] >= 0.9, results  # learned (chance: 1/3)
  # Zero-shot German from a model with no multilingual pretraining: reported, not learned.
  assert "eval_accuracy_de" in results and "eval_accuracy_average" in results
  text = (out / "eval_results.txt").read_text().splitlines()
  assert text == sorted(text) and f"eval_accuracy_en = {results['eval_accuracy_en']}" in text
  assert any(line.startswith("global_step = ") for line in text)
  lines = (out / "train_metrics.jsonl").read_text().splitlines()
  assert "padding_efficiency" in lines[-1] and "examples_per_sec" in lines[-1]


@pytest.mark.integration
def test_train_metrics_are_strict_json(fp32_run):
  """Every record parses as JSON for any reader: no NaN or Infinity (e.g. a first line's rates)."""
  records = read_metrics(fp32_run[0] / "train_metrics.jsonl")
  assert records and all("step" in r for r in records)


@pytest.mark.integration
@pytest.mark.parametrize("variant", [dict(dtype="fp16"), dict(recompute="full")])
def test_fp16_and_recompute_learn_as_well(fp32_run, sample, tmp_path, variant):
  trainer = _trainer(sample, tmp_path, **variant)
  trainer.train(sample["train"])
  results = trainer.evaluate(sample["dev"])
  assert abs(results["eval_accuracy_en"] - fp32_run[2]["eval_accuracy_en"]) <= 0.05, results
  if variant.get("dtype") == "fp16":
    assert trainer.loss_scale() > 1


@pytest.mark.integration
def test_mirrored_two_replicas_equal_one_device_on_token_batches(sample, tmp_path):
  """Two steps with variable-size micro-batches: 2 replicas x 2 accumulation = 1 device x 4
  accumulation (a token budget is planned as replicas x accumulation micro-batches of 1/4 of
  it, so the same 4 parts reach one device or two replicas). No warm-up: the first step's
  learning rate is not 0 and the weights move."""
  weights = []
  for name, k in (("one_device", 4), ("mirrored", 2)):
    trainer = _trainer(sample, tmp_path / name, name, gradient_accumulation_steps=k,
                       num_train_epochs=1, warmup_proportion=0.0)
    initial = [v.numpy() for v in trainer.model.trainable_variables]
    trainer.train(sample["train"], stop_after_steps=2)
    weights.append([v.numpy() for v in trainer.model.trainable_variables])
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(initial, weights[-1]))
  assert moved > 1e-3, moved
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(*weights))
  assert diff < 2e-5, diff


@pytest.mark.integration
def test_resume_equals_uninterrupted_and_predict_writes_google_format(sample, tmp_path):
  small = data.Features(*[getattr(sample["train"], f) for f in ("ids", "offsets",
                                                                "first_lengths", "labels")])
  kwargs = dict(num_train_epochs=1, save_checkpoints_steps=2, dropout=0.1)
  whole = _trainer(sample, tmp_path / "whole", **kwargs)
  whole.train(small, stop_after_steps=4)
  part = _trainer(sample, tmp_path / "part", **kwargs)
  part.train(small, stop_after_steps=2)
  resumed = _trainer(sample, tmp_path / "part", **kwargs)
  resumed.train(small, stop_after_steps=2)
  assert int(resumed.global_step.numpy()) == 4
  for a, b in zip(whole.model.trainable_variables, resumed.model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.name)
  paths = resumed.predict(sample["dev"])
  assert [os.path.basename(p) for p in paths] == [
      "test_results.tsv", "test_results_de.tsv", "test_results_en.tsv"]
  rows = [list(map(float, line.split("\t"))) for line in open(paths[0]).read().splitlines()]
  assert len(rows) == 120 and all(len(r) == 3 and abs(sum(r) - 1) < 1e-6 for r in rows)


def tf_data_logits(trainer, features, batch_size, index="example_index") -> list:
  """The reference for any ``PlannedTrainer``'s prediction: the per-call path that
  ``PlannedTrainer.infer`` replaced, kept only here. The same plan (``plan_steps``) as a
  distributed generator dataset of the training path's arrays (``trainer._distribute``:
  ``make_dataset``, labels included), the model's logits and the ``index`` row of each
  micro-batch under ``strategy.run``. Returns each feature's logits (NumPy) in feature order,
  each computed exactly once (checked)."""
  # pylint: disable=protected-access
  strategy = trainer.strategy
  steps = data.plan_steps(features.lengths, trainer.runtime.num_replicas, seed=None,
                          **trainer.config.batching(batch_size))
  dataset = trainer._distribute(features, steps, 1, 0, trainer.pad_to(training=False))

  def replica_forward(batch):
    inputs = {name: batch[name][0] for name in INPUTS}
    return trainer.model(inputs, training=False)["logits"], batch[index][0]

  forward = tf.function(lambda batch: strategy.run(replica_forward, args=(batch,)),
                        input_signature=[dataset.element_spec])
  rows = [None] * len(features)
  seen = np.zeros(len(features), np.int32)
  for batch in dataset:
    outputs, indexes = forward(batch)
    for out, ix in zip(strategy.experimental_local_results(outputs),
                       strategy.experimental_local_results(indexes)):
      for row, i in zip(out.numpy(), ix.numpy()):
        if i >= 0:
          rows[i] = row
          seen[i] += 1
  np.testing.assert_array_equal(seen, 1)
  return rows


@pytest.mark.integration
@pytest.mark.parametrize("runtime", ["one_device", "mirrored"])
@pytest.mark.parametrize("batching", [dict(), dict(batch_size_in_tokens=False,
                                                   eval_batch_size=24)])
def test_prediction_traces_once_and_equals_the_tf_data_path(sample, tmp_path, runtime,
                                                             batching):
  """``logits`` (evaluate, predict) feeds the replicas without tf.data: the same batches, so
  the same logits bit for bit as the generator dataset it replaced (``tf_data_logits``), in
  example order, on one device and on two replicas (a last step with an empty part), by
  token budget (length-bucketed, shapes vary) and by count; and one trace for every set and
  batch shape across calls."""
  trainer = _trainer(sample, tmp_path, runtime, **batching)
  size = trainer.config.eval_batch_size
  dev = sample["dev"]
  first = {name: trainer.logits(features, size) for name, features in dev.items()}
  again = trainer.logits(dev["en"], size)
  forward, local_ids = trainer._infer_fn  # pylint: disable=protected-access
  assert forward.experimental_get_tracing_count() == 1
  assert local_ids == ([0, 1] if runtime == "mirrored" else [0])
  np.testing.assert_array_equal(again, first["en"])
  for name, features in dev.items():
    np.testing.assert_array_equal(first[name],
                                  np.stack(tf_data_logits(trainer, features, size)))
    assert np.all(np.any(first[name] != 0, axis=1))  # every example has its logits
  assert forward.experimental_get_tracing_count() == 1
