"""The step core leaves alone what the loss does not reach (google's optimizer skips None
gradients): a head trained without NSP must not move the pooler or the NSP head, nor decay them."""
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.modeling import pretraining_losses
from bert_tf.training.pretraining import FEATURES, PretrainingTask
from bert_tf.testing import builders

pytestmark = pytest.mark.unit


class MaskedLmOnly(PretrainingTask):
  """Pretraining without next-sentence prediction: the pooler and NSP head get no gradient."""

  def micro_batch_loss(self, model, batch, k, normalisers, seed):
    mlm_weight_total, _ = normalisers
    features = {name: batch[name][k] for name in FEATURES}
    out = model(features, training=True, dropout_seed=seed)
    losses = pretraining_losses(out["mlm_logits"], out["nsp_logits"], features["masked_lm_ids"],
                                features["masked_lm_weights"], features["next_sentence_labels"])
    loss = losses["masked_lm_numerator"] / mlm_weight_total
    return loss, tf.stack([loss, losses["masked_lm_numerator"], tf.zeros([])])


def test_variables_the_loss_does_not_reach_are_not_updated(tmp_path):
  trainer = builders.pretrainer(tmp_path, steps=2, weight_decay_rate=0.1)
  trainer.task = MaskedLmOnly(trainer.config)
  before = {v.name: v.numpy() for v in trainer.model.trainable_variables}
  metrics = trainer.train()
  assert np.isfinite(metrics["loss"])
  moved = {v.name: float(np.max(np.abs(v.numpy() - before[v.name])))
           for v in trainer.model.trainable_variables}
  untouched = [name for name in moved if "pooler" in name or "next_sentence" in name]
  assert untouched and all(moved[name] == 0.0 for name in untouched), moved
  assert all(moved[name] > 0 for name in moved if "layer_0" in name and "kernel" in name), moved
