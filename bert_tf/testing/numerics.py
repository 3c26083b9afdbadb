"""The pretraining loss and its gradients for parity checks, and max |difference| comparisons."""
import numpy as np
import tensorflow as tf

from bert_tf.modeling import pretraining_losses


def pretraining_loss(outputs: dict, features: dict) -> tf.Tensor:
  """google's total loss (masked LM + next sentence) of a BertPretrainer's ``outputs``."""
  return pretraining_losses(outputs["mlm_logits"], outputs["nsp_logits"],
                            features["masked_lm_ids"], features["masked_lm_weights"],
                            features["next_sentence_labels"])["loss"]


def loss_and_gradients(model, features: dict, dropout_seed=None, graph=False):
  """One training-mode forward and backward pass: (float loss, [numpy gradient per trainable
  variable], sparse gradients made dense). ``graph``: inside a tf.function."""
  def step(seed):
    with tf.GradientTape() as tape:
      loss = pretraining_loss(model(features, training=True, dropout_seed=seed), features)
    return loss, tape.gradient(loss, model.trainable_variables)

  loss, grads = (tf.function(step) if graph else step)(dropout_seed)
  return float(loss), [tf.convert_to_tensor(g).numpy() for g in grads]


def max_abs_diff(a, b) -> float:
  """max |a - b| over all elements, in float64."""
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def max_diff(a, b) -> float:
  """max |difference| over two equally long lists of arrays (e.g. weights)."""
  assert len(a) == len(b), f"{len(a)} arrays vs {len(b)}"
  return max(max_abs_diff(x, y) for x, y in zip(a, b))


def assert_all_close(actual, expected, atol, what="") -> float:
  """Asserts max |actual - expected| <= atol; returns the difference."""
  diff = max_abs_diff(actual, expected)
  assert diff <= atol, f"{what}: max |difference| {diff:.3g} > {atol:.3g}"
  return diff
