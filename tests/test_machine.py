"""The machine line every benchmark table carries (bert_tf.tools.machine)."""
import os

import pytest

from bert_tf.tools import machine

pytestmark = pytest.mark.unit


def test_machine_line_names_cpu_cores_and_onednn():
  model, flags = machine.cpu_model_and_flags()
  line = machine.machine_line()
  assert line.startswith(model + " | ")
  assert f"| {os.cpu_count()} cores |" in line
  for isa in ("avx2", "avx512f", "avx512_bf16"):
    assert (f" {isa}" in line.split("|")[1]) == (isa in flags)
  assert "oneDNN on" in line or "oneDNN off" in line


def test_onednn_state_follows_the_variable_and_bert_tf_turns_it_on():
  """TF_ENABLE_ONEDNN_OPTS=0 / =1 (how the tiers are run on both kinds of machine) must show
  as off / on; unset, importing bert_tf turns oneDNN on on every CPU. The state is read from
  TensorFlow, not guessed from the CPU."""
  import bert_tf
  env = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
  state = machine.onednn_state()
  if not bert_tf.ONEDNN_SET_BY_USER:
    assert state == "on (bert_tf's default)"
  elif env == "0":
    assert state == "off (TF_ENABLE_ONEDNN_OPTS=0)"
  elif env == "1":
    assert state == "on (TF_ENABLE_ONEDNN_OPTS=1)"
