"""Run under horovodrun: checks allreduce, DistributedGradientTape and broadcast on this stack.

  horovodrun -np 2 -H localhost:2 --gloo python -m bert_tf.testing.horovod_allreduce

Each rank computes the gradient of sum((x_rank * w)) with x_rank = rank + 1; the averaged
gradient must be the mean over ranks, and broadcast must give every rank rank 0's weights.
Prints one JSON line per rank.
"""
import json

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
import tensorflow as tf


def main():
  import horovod.tensorflow as hvd
  hvd.init()
  rank, size = hvd.rank(), hvd.size()
  w = tf.Variable(tf.fill([3], float(rank + 10)))
  hvd.broadcast_variables([w], root_rank=0)
  x = tf.fill([3], float(rank + 1))
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(x * w)
  tape = hvd.DistributedGradientTape(tape)
  (grad,) = tape.gradient(loss, [w])
  total = hvd.allreduce(tf.constant(float(rank + 1)), op=hvd.Sum)
  print(json.dumps({"rank": rank, "size": size, "w": w.numpy().tolist(),
                    "grad": grad.numpy().tolist(), "sum": float(total)}), flush=True)


if __name__ == "__main__":
  main()
