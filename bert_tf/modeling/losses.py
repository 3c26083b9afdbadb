"""google BERT's pretraining losses, in float32."""
import tensorflow as tf


def pretraining_losses(mlm_logits, nsp_logits, masked_lm_ids, masked_lm_weights,
                       next_sentence_labels):
  """google's ``get_masked_lm_output`` + ``get_next_sentence_output`` losses.

  Args:
    mlm_logits: float [B, P, V]; nsp_logits: float [B, 2].
    masked_lm_ids: int [B, P]; masked_lm_weights: float [B, P] (0 for padding predictions);
    next_sentence_labels: int [B] or [B, 1] (0 = IsNext, 1 = random).
  Returns:
    dict of float32 scalars ``masked_lm_loss`` (weighted mean over real predictions),
    ``next_sentence_loss`` (mean over the batch) and ``loss`` (their sum); plus the sums behind
    the MLM mean (``masked_lm_numerator``, ``masked_lm_denominator``) so a distributed step can
    normalise by the global count.
  """
  log_probs = tf.nn.log_softmax(tf.cast(mlm_logits, tf.float32), axis=-1)
  ids = tf.cast(masked_lm_ids, tf.int32)
  per_prediction = -tf.gather(log_probs, ids[..., tf.newaxis], batch_dims=2)[..., 0]
  weights = tf.cast(masked_lm_weights, tf.float32)
  numerator = tf.reduce_sum(weights * per_prediction)
  denominator = tf.reduce_sum(weights) + 1e-5  # google's epsilon: no NaN on an empty batch
  mlm_loss = numerator / denominator

  nsp_log_probs = tf.nn.log_softmax(tf.cast(nsp_logits, tf.float32), axis=-1)
  labels = tf.reshape(tf.cast(next_sentence_labels, tf.int32), [-1])
  nsp_per_example = -tf.gather(nsp_log_probs, labels[:, tf.newaxis], batch_dims=1)[:, 0]
  nsp_loss = tf.reduce_mean(nsp_per_example)
  return {"loss": mlm_loss + nsp_loss, "masked_lm_loss": mlm_loss,
          "next_sentence_loss": nsp_loss, "masked_lm_numerator": numerator,
          "masked_lm_denominator": denominator}
