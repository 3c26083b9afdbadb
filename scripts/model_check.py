"""Demo stage: builds a BERT preset, exports it as a google TF1 checkpoint, loads it back and
compares it with Model Garden's encoder given the same weights; then shows recompute and
mixed precision agreeing with the fp32 model. Prints a table; exits non-zero on a mismatch."""
import os
import sys

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
from absl import app
from absl import flags as absl_flags
import tensorflow as tf

from bert_tf import checkpoints, configs, precision
from bert_tf.modeling import BertEncoder, BertPretrainer
from bert_tf.testing.model_garden import (copy_encoder_weights, model_garden_encoder,
                                          model_garden_inputs)
from bert_tf.testing.numerics import loss_and_gradients, max_abs_diff, max_diff
from bert_tf.testing.synthetic import pretraining_features

FLAGS = absl_flags.FLAGS
absl_flags.DEFINE_string("output_dir", "demo_output/model_check", "where the export goes")
absl_flags.DEFINE_string("preset", "tiny", "BERT preset (tiny, mini, small, medium, base, ...)")

SEED = tf.constant([1, 2], tf.int64)  # the same dropout masks in every model


def main(_):
  config = configs.preset(FLAGS.preset)
  f = pretraining_features(config, batch=8, seq=64, predictions=10, padded=False)
  model = BertPretrainer(BertEncoder(config))
  out_dir = FLAGS.output_dir
  prefix = os.path.join(out_dir, "bert_model.ckpt")
  if not tf.io.gfile.exists(prefix + ".index"):
    checkpoints.export_google_checkpoint(model, config, out_dir)
  else:
    print(f"reusing {prefix}")
  reloaded = BertPretrainer(BertEncoder(config))
  checkpoints.load_google_checkpoint(prefix, reloaded)
  mg = model_garden_encoder(config)
  copy_encoder_weights(reloaded.encoder, mg)
  ours = reloaded(f)
  theirs = mg(model_garden_inputs(f))
  rows = [("google checkpoint -> ours vs Model Garden BertEncoderV2 (sequence_output)",
           max_abs_diff(ours["sequence_output"], theirs["sequence_output"]), 1e-5)]
  base_loss, base_grads = loss_and_gradients(reloaded, f, SEED)
  for mode in ("full", "selective"):
    m = BertPretrainer(BertEncoder(config, recompute=mode))
    m.set_weights(reloaded.get_weights())
    loss, grads = loss_and_gradients(m, f, SEED)
    err = max_diff(grads, base_grads)
    rows.append((f"recompute={mode} vs none, dropout 0.1 (max |grad diff|)", err, 1e-5))
  for dtype, tol in (("fp16", 5e-2), ("bf16", 2e-1)):
    with precision.policy_scope(dtype):
      m = BertPretrainer(BertEncoder(config))
    m.set_weights(reloaded.get_weights())
    loss, _ = loss_and_gradients(m, f, SEED)
    rows.append((f"{dtype} vs fp32 loss (|difference|; loss {base_loss:.4f})",
                 abs(loss - base_loss), tol))
  print(f"\nBERT-{FLAGS.preset} ({config.num_hidden_layers}L/{config.hidden_size}H), "
        f"checkpoint {prefix}\n")
  print("| check | value | limit | ok |\n|---|---|---|---|")
  ok = True
  for name, value, limit in rows:
    ok &= value <= limit
    print(f"| {name} | {value:.2e} | {limit:.0e} | {'yes' if value <= limit else 'NO'} |")
  if not ok:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
