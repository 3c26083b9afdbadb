"""Stages across processes with TensorFlow's own distributed runtime (single client).

Every process gets the same ``TF_CONFIG`` = {"cluster": {"worker": [host:port, ...]}, "task":
{"type": "worker", "index": i}}. Task 0 is the client: it connects to the cluster
(``tf.config.experimental_connect_to_cluster``) and runs the pipeline engine unchanged, with
rank r on ``/job:worker/replica:0/task:<r // d>/device:<GPU or CPU>:<r % d>`` (d devices per
task). Every other task runs a ``tf.distribute.Server``; TensorFlow partitions the step's graph
per task and moves activations and gradients between them with its own send / receive. No
hand-written communication (see ../shared/PIPELINE.md §3.1).

A server has no way to learn that the client finished (``Server.join`` never returns), so it
watches the client's port and exits once the client is gone: a finished or killed client does
not leave servers behind. A client that finished cleanly first writes a marker file on every
server's machine (``finish_if_client``: an op placed on that server's task); a server whose
client is gone without it exits non-zero, so a killed or failed client does not look like
success. A killed server makes the client's next step fail with an error.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from typing import Optional

from absl import logging
import tensorflow as tf

JOB = "worker"


def tf_config() -> Optional[tuple]:
  """(worker addresses, this task's index) from ``TF_CONFIG``, or None if it is not set."""
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    return None
  try:
    config = json.loads(raw)
    workers, index = list(config["cluster"][JOB]), int(config["task"]["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"TF_CONFIG for pipeline mode needs {{\"cluster\": {{\"worker\": [...]}}, "
                     f"\"task\": {{\"type\": \"worker\", \"index\": i}}}}: {e!r} in {raw}") from None
  if not 0 <= index < len(workers):
    raise ValueError(f"TF_CONFIG task index {index} is not among the {len(workers)} workers")
  return workers, index


def _listening(address: str) -> bool:
  host, port = address.rsplit(":", 1)
  try:
    with socket.create_connection((host, int(port)), timeout=2):
      return True
  except OSError:
    return False


def done_marker(workers: list, index: int) -> str:
  """Task ``index``'s marker of a clean finish: a file on its own machine, named by its address
  (several clusters on one machine have other ports)."""
  host, port = workers[index].rsplit(":", 1)
  return os.path.join(tempfile.gettempdir(), f"bert_tf_pipeline_{host}_{port}_{index}.done")


def serve(workers: list, index: int, startup_timeout: float = 600.0) -> None:
  """Runs task ``index``'s server until the client (task 0) has come and gone. Returns if the
  client wrote this task's ``done_marker`` (a clean finish); else raises SystemExit (exit 1)."""
  marker = done_marker(workers, index)
  if os.path.exists(marker):   # a previous run's
    os.remove(marker)
  server = tf.distribute.Server(tf.train.ClusterSpec({JOB: workers}), job_name=JOB,
                                task_index=index, protocol="grpc", start=True)
  logging.info("pipeline server %d of %d at %s; waiting for the client %s", index,
               len(workers), server.target, workers[0])
  began, seen, misses = time.monotonic(), False, 0
  while True:
    time.sleep(1.0)
    if _listening(workers[0]):
      seen, misses = True, 0
    elif seen:
      misses += 1
      if misses >= 3:
        if not os.path.exists(marker):
          raise SystemExit(f"pipeline server {index}: the client {workers[0]} is gone without "
                           "finishing (killed or failed); exit 1")
        os.remove(marker)
        logging.info("the client %s finished; server %d exits", workers[0], index)
        return
    elif time.monotonic() - began > startup_timeout:
      raise TimeoutError(f"the pipeline client {workers[0]} did not appear within "
                         f"{startup_timeout:.0f}s")


def serve_if_worker() -> bool:
  """In a cluster, on tasks other than 0: serve, then return True (the process has nothing
  else to do). Elsewhere: False at once."""
  found = tf_config()
  if found is None or found[1] == 0:
    return False
  serve(*found)
  return True


def connect_if_cluster() -> Optional[list]:
  """In a cluster, on task 0: connects and returns the cluster's devices in rank order (each
  task holding as many devices of the kind as this one: GPUs, else one CPU). Else None."""
  found = tf_config()
  if found is None:
    return None
  workers, index = found
  if index != 0:
    raise ValueError("only task 0 of the pipeline cluster runs the training client")
  gpus = len(tf.config.list_physical_devices("GPU"))
  tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec({JOB: workers}), job_name=JOB,
                                            task_index=0)
  kind, per_task = ("GPU", gpus) if gpus else ("CPU", 1)
  return [f"/job:{JOB}/replica:0/task:{t}/device:{kind}:{d}"
          for t in range(len(workers)) for d in range(per_task)]


def finish_if_client() -> None:
  """In a cluster, on task 0 after a clean run: writes every server's ``done_marker`` (each
  write runs on that server's task), so the servers exit 0 once the client is gone. Elsewhere:
  nothing."""
  found = tf_config()
  if found is None or found[1] != 0:
    return
  workers = found[0]
  for task in range(1, len(workers)):
    with tf.device(f"/job:{JOB}/replica:0/task:{task}/device:CPU:0"):
      tf.io.write_file(done_marker(workers, task), "done")
