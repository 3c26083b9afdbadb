"""google BERT's pretraining losses, in float32."""
import tensorflow as tf

from bert_tf import onednn_enabled


def sparse_softmax_cross_entropy(labels, logits):
  """-log softmax(logits)[label] per row: labels int [M], logits float32 [M, V] -> float32 [M].

  The same values and gradient (softmax - one_hot) as ``tf.nn.sparse_softmax_cross_entropy_with_
  logits``, which it is without oneDNN. With oneDNN on, this is about twice as fast forward +
  backward on CPU for a vocabulary-sized V: the softmax runs in oneDNN's kernel, and log-sum-
  exp comes from it without another pass, as max - log(softmax at the argmax) (that
  probability is >= 1/V, so the log is safe). Without oneDNN that softmax is Eigen's and TF's
  fused kernel is the faster one (BERT-Mini step: 3-5% less CPU time, 370 against 692 ms of
  cross-entropy op time per step in the profile).
  """
  if not onednn_enabled():
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  rows = tf.range(tf.shape(logits)[0])
  at_label = tf.stack([rows, tf.cast(labels, tf.int32)], axis=1)
  at_max = tf.stack([rows, tf.argmax(logits, axis=-1, output_type=tf.int32)], axis=1)

  @tf.custom_gradient
  def cross_entropy(logits):
    probs = tf.nn.softmax(logits, axis=-1)
    log_sum_exp = tf.gather_nd(logits, at_max) - tf.math.log(tf.gather_nd(probs, at_max))
    loss = log_sum_exp - tf.gather_nd(logits, at_label)

    def grad(upstream):  # d loss / d logits = softmax - one_hot(label)
      return tf.tensor_scatter_nd_sub(probs * upstream[:, tf.newaxis], at_label, upstream)

    return loss, grad

  return cross_entropy(logits)


def masked_lm_loss_sums(mlm_logits, masked_lm_ids, masked_lm_weights):
  """google's ``get_masked_lm_output`` loss as the sums behind its weighted mean.

  Args:
    mlm_logits: float [B, P, V]; masked_lm_ids: int [B, P]; masked_lm_weights: float [B, P]
      (0 for padding predictions).
  Returns:
    float32 scalars (numerator, denominator): the weighted sum of the per-prediction losses
    and the weight total plus google's 1e-5, so a distributed step can normalise by the
    global count.
  """
  # -log_softmax(logits)[id] without gathering from a log_softmax (whose gradient would
  # scatter into a dense [B, P, V] tensor).
  vocab_size = tf.shape(mlm_logits)[-1]
  per_prediction = tf.reshape(sparse_softmax_cross_entropy(
      tf.reshape(masked_lm_ids, [-1]),
      tf.reshape(tf.cast(mlm_logits, tf.float32), [-1, vocab_size])), tf.shape(masked_lm_ids))
  weights = tf.cast(masked_lm_weights, tf.float32)
  numerator = tf.reduce_sum(weights * per_prediction)
  denominator = tf.reduce_sum(weights) + 1e-5  # google's epsilon: no NaN on an empty batch
  return numerator, denominator


def next_sentence_loss(nsp_logits, next_sentence_labels):
  """google's ``get_next_sentence_output`` loss: float [B, 2] logits, int [B] or [B, 1] labels
  (0 = IsNext, 1 = random) -> float32 mean over the batch."""
  labels = tf.reshape(tf.cast(next_sentence_labels, tf.int32), [-1])
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=tf.cast(nsp_logits, tf.float32)))


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
  numerator, denominator = masked_lm_loss_sums(mlm_logits, masked_lm_ids, masked_lm_weights)
  mlm_loss = numerator / denominator
  nsp_loss = next_sentence_loss(nsp_logits, next_sentence_labels)
  return {"loss": mlm_loss + nsp_loss, "masked_lm_loss": mlm_loss,
          "next_sentence_loss": nsp_loss, "masked_lm_numerator": numerator,
          "masked_lm_denominator": denominator}
