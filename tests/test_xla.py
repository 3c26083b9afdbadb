"""--use_xla follows one rule for every task: the train step is compiled, the loop is not.
Pretraining and fine-tuning with XLA reach the weights of the same run without it (XLA fuses
and reorders float32 arithmetic, so equal to rounding, not bitwise). Without dropout: XLA's
stateless random numbers differ from TensorFlow's own for the same seed and algorithm
(measured: not one mask equal), so with dropout the two runs draw different masks."""
import numpy as np
import pytest

from bert_tf.testing import builders
from bert_tf.testing.synthetic import classifier_features
from bert_tf.testing.tiny import classifier_config

pytestmark = pytest.mark.integration


def _max_diff(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def test_pretraining_with_xla_equals_without(tmp_path):
  weights, losses = {}, {}
  for xla in (False, True):
    trainer = builders.pretrainer(tmp_path / f"xla{xla}", steps=4, use_xla=xla,
                                  gradient_accumulation_steps=2)
    losses[xla] = trainer.train()["loss"]
    weights[xla] = trainer.model.get_weights()
    # Two loop calls, one trace: the optimizer's slots exist before the first call (a first
    # call that creates variables would be traced twice, doubling start-up).
    assert trainer.compiled_train_loop().experimental_get_tracing_count() == 1
  diff = _max_diff(weights[False], weights[True])
  print(f"pretraining, XLA vs not: max |weight diff| {diff:.2e}, losses {losses}")
  assert diff <= 1e-5 and losses[True] == pytest.approx(losses[False], abs=1e-5)


def test_fine_tuning_with_xla_equals_without(tmp_path):
  train = classifier_features(0, 40)
  weights, losses = {}, {}
  for xla in (False, True):
    trainer = builders.classifier_trainer(
        tmp_path / f"xla{xla}", config=classifier_config(100, dropout=0.0, max_position_embeddings=32),
        task="mrpc", use_xla=xla, train_batch_size=160, max_seq_length=24, num_train_epochs=1,
        iterations_per_loop=2, gradient_accumulation_steps=2, learning_rate=1e-2)
    losses[xla] = trainer.train(train)["loss"]
    weights[xla] = trainer.model.get_weights()
    assert trainer.compiled_train_loop().experimental_get_tracing_count() == 1
  diff = _max_diff(weights[False], weights[True])
  print(f"fine-tuning, XLA vs not: max |weight diff| {diff:.2e}, losses {losses}")
  # Adam at lr 1e-2 turns last-bit gradient differences into up to ~1% of one step's update
  # (measured 3.9e-5): the bound is 1e-2 of the learning rate.
  assert diff <= 1e-4 and losses[True] == pytest.approx(losses[False], abs=1e-5)
