"""The step core leaves alone what the loss does not reach (google's optimizer skips None
gradients): a head trained without NSP must not move the pooler or the NSP head, nor decay them."""
import numpy as np
import pytest

from bert_tf.testing import builders

pytestmark = pytest.mark.unit


def test_variables_the_loss_does_not_reach_are_not_updated(tmp_path):
  # masked LM alone (--nonext_sentence_prediction): the pooler and NSP head get no gradient
  trainer = builders.pretrainer(tmp_path, steps=2, weight_decay_rate=0.1,
                                next_sentence_prediction=False)
  before = {v.name: v.numpy() for v in trainer.model.trainable_variables}
  metrics = trainer.train()
  assert np.isfinite(metrics["loss"])
  moved = {v.name: float(np.max(np.abs(v.numpy() - before[v.name])))
           for v in trainer.model.trainable_variables}
  untouched = [name for name in moved if "pooler" in name or "next_sentence" in name]
  assert untouched and all(moved[name] == 0.0 for name in untouched), moved
  assert all(moved[name] > 0 for name in moved if "layer_0" in name and "kernel" in name), moved
