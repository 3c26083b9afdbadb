"""Memory tools: the estimator's arithmetic, the max-batch search logic, the peaks they read,
and one real search under oneDNN off and on (TensorFlow keeps CPU allocator statistics only
with oneDNN on; the search must not depend on them)."""
import numpy as np
import pytest

from bert_tf import configs, memory
from bert_tf.modeling import BertEncoder, BertPretrainer, pretraining_losses
from bert_tf.testing.synthetic import pretraining_features as random_features
from bert_tf.testing.tiny import tiny_config
from bert_tf.tools import max_batch
from bert_tf.tools import memory_stats


def _num_weights(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.mark.unit
@pytest.mark.parametrize("name", ["tiny", "base"])
def test_parameter_count_equals_the_model_variables(name):
  config = configs.preset(name, vocab_size=30522)
  model = BertPretrainer(BertEncoder(config))
  counted = memory.num_parameters(config)["total"]
  assert counted == _num_weights(model)
  if name == "base":  # BERT-Base's well-known ~110M
    assert counted == 110_106_428


@pytest.mark.unit
def test_static_terms_by_hand():
  config = configs.preset("base", vocab_size=30522)
  n = 110_106_428
  est = memory.estimate(config, batch=8, seq=128, predictions=20, dtype="fp16",
                        recompute="full", optimizer="adamw")
  table = 30522 * 768 * 4
  assert est.parameters == 4 * n            # float32 variables under every policy
  assert est.optimizer_state == 2 * 4 * n   # Adam m and v
  assert est.gradients == 4 * n + table     # + the dense word-embedding gradient
  # full recompute keeps one fp16 [S, H] input per block and example.
  assert est.activations["layer_3"] == 8 * 128 * 768 * 2
  none = memory.estimate(config, 8, 128, 20, "fp32", "none")
  # by hand, per example: S*H*(6*4 + 16 + 2) + N*S*S*(4 + 1 + 4) + S*I*5*4
  assert none.activations["layer_0"] == 8 * (128 * 768 * 42 + 12 * 128 * 128 * 9
                                              + 128 * 3072 * 20)
  selective = memory.estimate(config, 8, 128, 20, "fp32", "selective")
  assert none.forward_backward_peak > selective.forward_backward_peak > \
      est.forward_backward_peak
  with pytest.raises(ValueError, match="recompute"):
    memory.estimate(config, 8, 128, recompute="some")


@pytest.mark.unit
@pytest.mark.parametrize("mode", ["none", "selective", "full"])
def test_activation_terms_match_what_the_gradient_keeps(mode):
  """The estimator's kept activations = the forward tensors the traced gradient reads."""
  config = tiny_config(num_hidden_layers=2, hidden_dropout_prob=0.1,
                       attention_probs_dropout_prob=0.1, hidden_act="gelu")
  batch, seq, predictions = 5, 16, 3
  model = BertPretrainer(BertEncoder(config, recompute=mode))
  features = random_features(config, batch=batch, seq=seq, predictions=predictions)
  loss = lambda out, f: pretraining_losses(out["mlm_logits"], out["nsp_logits"],
                                           f["masked_lm_ids"], f["masked_lm_weights"],
                                           f["next_sentence_labels"])["loss"]
  kept = memory.kept_for_backward(model, features, loss)
  traced = sum(r[3] for r in kept if "pooler" not in r[0] and "next_sentence" not in r[0])
  est = memory.estimate(config, batch, seq, predictions, "fp32", mode)
  assert traced == pytest.approx(est.kept_activations, rel=0.1), kept[:10]


def _fake(threshold, log):
  def fits(b):
    log.append(b)
    return b <= threshold
  return fits


@pytest.mark.unit
@pytest.mark.parametrize("threshold,start", [(1, 1), (5, 1), (24, 16), (100, 1), (7, 64),
                                             (64, 64), (3, 4)])
def test_search_finds_the_threshold(threshold, start):
  log = []
  lo, hi, tried = max_batch.find_max_batch(_fake(threshold, log), start=start)
  assert (lo, hi) == (threshold, threshold + 1)
  assert tried == log and len(set(tried)) == len(tried)  # no batch tried twice
  assert len(tried) <= 2 * max(threshold, start).bit_length() + 2


@pytest.mark.unit
def test_search_edges():
  lo, hi, _ = max_batch.find_max_batch(lambda b: False, start=4)
  assert (lo, hi) == (0, 1)
  lo, hi, tried = max_batch.find_max_batch(lambda b: True, start=1, max_batch=40)
  assert (lo, hi) == (40, None) and tried == [1, 2, 4, 8, 16, 32, 40]
  log = []
  lo, hi, tried = max_batch.find_max_batch(_fake(100, log), start=64, tolerance=0.3)
  assert lo <= 100 < hi and hi - lo <= 0.3 * lo and len(tried) < 5
  with pytest.raises(ValueError):
    max_batch.find_max_batch(lambda b: True, start=0)


@pytest.mark.unit
def test_allocator_statistics_are_optional():
  """The allocator peak is read only where the device keeps it; the process peak always."""
  tracked = memory_stats.reset_allocator_peak("CPU:0")
  peak = memory_stats.allocator_peak("CPU:0")
  assert isinstance(tracked, bool) and (peak is not None) == tracked
  assert memory_stats.vm_hwm_bytes() >= memory_stats.rss_bytes() > 0


@pytest.mark.integration
@pytest.mark.timeout(400)
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_real_search_in_subprocesses(onednn):
  """A tiny model at seq 512, budget half-way between the batch-1 and batch-8 peaks: each try
  runs in its own process; what fits stayed under the budget and what did not went over it.
  With oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) TensorFlow keeps no CPU allocator statistics:
  the search reads the process peak either way."""
  env = {"TF_ENABLE_ONEDNN_OPTS": onednn}
  spec = {"preset": "tiny", "seq": 512, "dtype": "fp32", "recompute": "none"}
  one = max_batch.run_try({**spec, "batch": 1}, None, timeout=120, env=env)
  assert one.fits and one.result["loss"] > 0 and one.peak_bytes > 0
  tensor_peak = one.result["tensor_peak_bytes"]
  assert tensor_peak is None or 0 < tensor_peak < one.peak_bytes
  eight = max_batch.run_try({**spec, "batch": 8}, None, timeout=120, env=env)
  assert eight.fits and eight.peak_bytes > one.peak_bytes
  # Half-way between the batch-1 and batch-8 peaks: batch 1 fits, batch 8 does not, whatever
  # this machine's baseline RSS is.
  budget = (one.peak_bytes + eight.peak_bytes) // 2
  # tolerance 1: stop once the bracket is [n, 2n] (three processes in all, ~30 s idle).
  lo, hi, trials = max_batch.search_mode(spec, budget, start=2, max_batch=16, tolerance=1.0,
                                         timeout=120, log=lambda *a: None, env=env)
  assert lo >= 1
  for t in trials:
    assert t.fits == (t.peak_bytes <= budget and t.reason == "ok"), t
  assert any(not t.fits for t in trials) and hi is not None
  assert [t.fits for t in trials if t.batch == hi] == [False]
