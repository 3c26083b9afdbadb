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
  # The fused op is -log_softmax(logits)[id], computed and differentiated in one pass over the
  # [B, P, V] logits (gathering from log_softmax would scatter a dense [B, P, V] gradient).
  per_prediction = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.cast(masked_lm_ids, tf.int32), logits=tf.cast(mlm_logits, tf.float32))
  weights = tf.cast(masked_lm_weights, tf.float32)
  numerator = tf.reduce_sum(weights * per_prediction)
  denominator = tf.reduce_sum(weights) + 1e-5  # google's epsilon: no NaN on an empty batch
  mlm_loss = numerator / denominator

  labels = tf.reshape(tf.cast(next_sentence_labels, tf.int32), [-1])
  nsp_per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=tf.cast(nsp_logits, tf.float32))
  nsp_loss = tf.reduce_mean(nsp_per_example)
  return {"loss": mlm_loss + nsp_loss, "masked_lm_loss": mlm_loss,
          "next_sentence_loss": nsp_loss, "masked_lm_numerator": numerator,
          "masked_lm_denominator": denominator}
