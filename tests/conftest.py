"""Test session set-up: Keras 2, two logical CPU devices, float32 policy restored after each
test, and every test in exactly one tier (setup.cfg registers the markers):

  unit         one process, tiny, fast:          pytest tests -m unit
  integration  end-to-end in-process training runs, command-line tools in subprocesses
  distributed  several processes (MultiWorkerMirrored, Horovod), kill / SIGTERM and resume

The logical devices must exist before TensorFlow initialises its runtime, so they are made here,
at import, before any test module touches TensorFlow.
"""
import bert_tf  # noqa: F401  (selects Keras 2 before tensorflow is imported)

import pytest
import tf_keras

from bert_tf import distribution

distribution.split_cpu(2)

TIERS = ("unit", "integration", "distributed")


def pytest_collection_modifyitems(config, items):
  """A test in two tiers runs twice across the tier runs: always an error. A test in none is
  silently left out of every tier run, so a run that selects by marker (-m) refuses it."""
  tiers = {item.nodeid: [m.name for m in item.iter_markers() if m.name in TIERS]
           for item in items}
  wrong = [f"{node}: {names}" for node, names in tiers.items() if len(names) > 1]
  if config.option.markexpr:
    wrong += [f"{node}: no tier" for node, names in tiers.items() if not names]
  if wrong:
    raise pytest.UsageError("each test needs exactly one tier marker (unit, integration, "
                            "distributed):\n  " + "\n  ".join(wrong))


@pytest.fixture(autouse=True)
def _reset_keras_state():
  """Each test starts from the float32 policy and leaves it so, whatever it sets or raises."""
  tf_keras.mixed_precision.set_global_policy("float32")
  yield
  tf_keras.mixed_precision.set_global_policy("float32")
  tf_keras.backend.clear_session()
