"""Mixed precision in two functions: the Keras policy for a dtype, and the optimizer wrapper.

``fp16`` -> ``mixed_float16`` + dynamic loss scaling (tf_keras ``LossScaleOptimizer``);
``bf16`` -> ``mixed_bfloat16``, no loss scaling (bfloat16 has float32's exponent range);
``fp32`` -> ``float32``. Variables stay float32 under every policy.
"""
from __future__ import annotations

import contextlib

import tf_keras

DTYPES = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}


def policy_name(dtype: str) -> str:
  if dtype not in DTYPES:
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
  return DTYPES[dtype]


def set_policy(dtype: str) -> None:
  """Sets the global Keras policy; layers built afterwards compute in that dtype."""
  tf_keras.mixed_precision.set_global_policy(policy_name(dtype))


@contextlib.contextmanager
def policy_scope(dtype: str):
  """Sets the global policy for a block and restores the previous one afterwards."""
  previous = tf_keras.mixed_precision.global_policy()
  set_policy(dtype)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


def wrap_optimizer(optimizer, dtype: str, initial_scale: float = 2.0 ** 15,
                   dynamic_growth_steps: int = 2000):
  """Wraps ``optimizer`` in a dynamic ``LossScaleOptimizer`` for fp16; returns it as-is otherwise."""
  policy_name(dtype)
  if dtype != "fp16":
    return optimizer
  return tf_keras.mixed_precision.LossScaleOptimizer(
      optimizer, dynamic=True, initial_scale=initial_scale,
      dynamic_growth_steps=dynamic_growth_steps)
