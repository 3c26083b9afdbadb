"""Mixed precision: float32 variables, float32 LayerNorm/softmax/logits/losses, fp16 math,
loss scaling only for fp16, and numerics close to fp32."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from bert_tf import precision
from bert_tf.modeling import BertEncoder, BertPretrainer, pretraining_losses
from bert_tf.testing.numerics import assert_all_close, pretraining_loss
from bert_tf.testing.synthetic import pretraining_features
from bert_tf.testing.tiny import dropout_config, tiny_config

COMPUTE = {"fp16": tf.float16, "bf16": tf.bfloat16}


def _graph_ops(model, features):
  @tf.function
  def forward():
    return model(features, training=False)
  graph = forward.get_concrete_function().graph
  return [op for op in graph.get_operations()]


@pytest.mark.unit
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_mixed_policy_dtypes(dtype):
  config = tiny_config()
  fp32_model = BertPretrainer(BertEncoder(config))
  features = pretraining_features(config)
  reference = fp32_model(features)
  precision.set_policy(dtype)
  model = BertPretrainer(BertEncoder(config))
  model.set_weights(fp32_model.get_weights())
  assert all(v.dtype == tf.float32 for v in model.variables), "variables must stay float32"
  out = model(features)
  assert out["sequence_output"].dtype == COMPUTE[dtype]
  assert out["mlm_logits"].dtype == tf.float32 and out["nsp_logits"].dtype == tf.float32
  losses = pretraining_losses(out["mlm_logits"], out["nsp_logits"], features["masked_lm_ids"],
                              features["masked_lm_weights"], features["next_sentence_labels"])
  assert all(v.dtype == tf.float32 for v in losses.values())

  ops = _graph_ops(model, features)
  softmax = [op for op in ops if op.type == "Softmax"]
  assert softmax and all(op.outputs[0].dtype == tf.float32 for op in softmax)
  # tf_keras LayerNormalization computes moments with Mean/SquaredDifference (or fused batch
  # norm); every such op must be float32.
  norm_ops = [op for op in ops if "layer_norm" in op.name and op.type in
              ("Mean", "SquaredDifference", "Rsqrt", "FusedBatchNormV3")]
  assert norm_ops and all(op.outputs[0].dtype == tf.float32 for op in norm_ops)
  matmuls = [op for op in ops if op.type in ("MatMul", "BatchMatMulV2", "Einsum")]
  low = [op for op in matmuls if op.outputs[0].dtype == COMPUTE[dtype]]
  assert len(low) >= 0.9 * len(matmuls), "the matmuls should run in the compute dtype"

  # Same weights, lower precision: close to fp32, not equal.
  tolerance = {"fp16": 2e-2, "bf16": 1e-1}[dtype]
  for key in ("sequence_output", "mlm_logits"):
    diff = assert_all_close(tf.cast(out[key], tf.float32), reference[key], tolerance, key)
    assert diff > 0


@pytest.mark.unit
def test_loss_scaling_only_for_fp16():
  opt = tf_keras.optimizers.SGD(0.1)
  wrapped = precision.wrap_optimizer(opt, "fp16")
  assert isinstance(wrapped, tf_keras.mixed_precision.LossScaleOptimizer)
  assert wrapped.dynamic and float(wrapped.loss_scale) == 2.0 ** 15
  assert precision.wrap_optimizer(opt, "bf16") is opt
  assert precision.wrap_optimizer(opt, "fp32") is opt
  with pytest.raises(ValueError, match="fp8"):
    precision.wrap_optimizer(opt, "fp8")


@pytest.mark.unit
def test_policy_scope_restores_previous_policy():
  with precision.policy_scope("bf16"):
    assert tf_keras.mixed_precision.global_policy().name == "mixed_bfloat16"
  assert tf_keras.mixed_precision.global_policy().name == "float32"
  with pytest.raises(RuntimeError):
    with precision.policy_scope("fp16"):
      raise RuntimeError("boom")
  assert tf_keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.integration  # a Mirrored fp16 training step: ~30 s each on this 2-core box
@pytest.mark.parametrize("recompute", ["full", "selective"])
def test_fp16_recompute_step_under_mirrored_two_devices(recompute):
  """The combination users run: --multi_gpu --use_fp16 --recompute on two (CPU) replicas."""
  config = dropout_config(0.1)
  features = pretraining_features(config, batch=8)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  precision.set_policy("fp16")
  with strategy.scope():
    model = BertPretrainer(BertEncoder(config, recompute=recompute, seed=3))
    optimizer = precision.wrap_optimizer(tf_keras.optimizers.Adam(1e-3), "fp16")
  before = [v.numpy() for v in model.trainable_variables]
  dataset = strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(features).unbatch().batch(8))

  @tf.function
  def step(batch):
    def replica_step(batch):
      with tf.GradientTape() as tape:
        loss = pretraining_loss(model(batch, training=True), batch)
        scaled = optimizer.get_scaled_loss(loss / strategy.num_replicas_in_sync)
      grads = optimizer.get_unscaled_gradients(tape.gradient(scaled, model.trainable_variables))
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return loss
    return strategy.reduce("MEAN", strategy.run(replica_step, (batch,)), axis=None)

  loss = float(step(next(iter(dataset))))
  assert np.isfinite(loss)
  assert all(v.dtype == tf.float32 for v in model.trainable_variables)
  changed = sum(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))
  assert changed == len(before), f"only {changed}/{len(before)} variables were updated"
