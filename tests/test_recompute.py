"""Recompute: same loss and gradients as no recompute (dropout 0 and > 0), and it really
recomputes (the backward graph holds a second copy of the recomputed ops)."""
import numpy as np
import pytest
import tensorflow as tf

from bert_tf.modeling import BertEncoder, BertPretrainer
from bert_tf.testing.numerics import loss_and_gradients
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import dropout_config, tiny_config

pytestmark = pytest.mark.unit

SEED = tf.constant([7, 11], tf.int64)


def _loss_and_grads(config, recompute, weights, features, seed=SEED, graph=False):
  model = BertPretrainer(BertEncoder(config, recompute=recompute))
  model.set_weights(weights)
  return loss_and_gradients(model, features, dropout_seed=seed, graph=graph)


@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_loss_and_gradients_equal_with_and_without_recompute(dropout, graph):
  config = dropout_config(dropout)
  weights = BertPretrainer(BertEncoder(config)).get_weights()
  features = pretraining_features(config)
  ref_loss, ref_grads = _loss_and_grads(config, "none", weights, features, graph=graph)
  for mode in ("full", "selective"):
    loss, grads = _loss_and_grads(config, mode, weights, features, graph=graph)
    assert abs(loss - ref_loss) <= 1e-6, (mode, loss, ref_loss)
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(grads, ref_grads))
    print(f"recompute={mode} dropout={dropout} graph={graph}: |dloss|={abs(loss - ref_loss):.1e}"
          f" max|dgrad|={worst:.1e}")
    assert worst <= 1e-6, f"{mode}: gradients differ by {worst}"
  if dropout:
    # Dropout is really on: another seed gives another loss.
    other, _ = _loss_and_grads(config, "none", weights, features,
                               seed=tf.constant([1, 2], tf.int64), graph=graph)
    assert abs(other - ref_loss) > 1e-4


def _count_ops(graph_def, op_type):
  nodes = list(graph_def.node)
  for function in graph_def.library.function:
    nodes += list(function.node_def)
  return sum(node.op == op_type for node in nodes)


@pytest.mark.parametrize("mode,softmax,gelu_tanh", [("none", 1, 1), ("selective", 2, 2),
                                                    ("full", 2, 2)])
def test_backward_pass_recomputes_the_chosen_part(mode, softmax, gelu_tanh):
  """Per layer, the gradient graph holds the forward Softmax once (none) or twice (recomputed);
  the FFN's GELU (a Tanh) is recomputed in full mode and, being cheap to redo and costly to
  keep, in selective mode too."""
  config = tiny_config(num_hidden_layers=3)
  model = BertPretrainer(BertEncoder(config, recompute=mode))
  features = pretraining_features(config)

  @tf.function
  def grads():
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(features, training=True)["sequence_output"])
    return tape.gradient(loss, model.trainable_variables)

  graph_def = grads.get_concrete_function().graph.as_graph_def()
  layers = config.num_hidden_layers
  assert _count_ops(graph_def, "Softmax") == softmax * layers
  # + 2: the pooler tanh and the MLM transform GELU, outside the encoder blocks.
  assert _count_ops(graph_def, "Tanh") == gelu_tanh * layers + 2
