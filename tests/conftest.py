"""Test session set-up: Keras 2, two logical CPU devices, float32 policy restored after each test.

The logical devices must exist before TensorFlow initialises its runtime, so they are made here,
at import, before any test module touches TensorFlow.
"""
import bert_tf  # noqa: F401  (selects Keras 2 before tensorflow is imported)

import pytest
import tensorflow as tf
import tf_keras

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


@pytest.fixture(autouse=True)
def _reset_keras_state():
  """Each test starts from the float32 policy and leaves it so, whatever it sets or raises."""
  tf_keras.mixed_precision.set_global_policy("float32")
  yield
  tf_keras.mixed_precision.set_global_policy("float32")
  tf_keras.backend.clear_session()
