"""Activations by their ``bert_config.json`` name."""
import tensorflow as tf


def gelu(x):
  """google BERT's GELU: the tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))."""
  return tf.nn.gelu(x, approximate=True)


def gelu_exact(x):
  """GELU with the exact Gaussian CDF, x * Phi(x) = 0.5x(1 + erf(x / sqrt(2)))."""
  return tf.nn.gelu(x, approximate=False)


_ACTIVATIONS = {"gelu": gelu, "gelu_exact": gelu_exact, "relu": tf.nn.relu, "tanh": tf.math.tanh}


def get_activation(name: str):
  try:
    return _ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f"unknown hidden_act {name!r}; expected one of {sorted(_ACTIVATIONS)}") from None
