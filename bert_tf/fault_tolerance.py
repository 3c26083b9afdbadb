"""Surviving failures, for pretraining and fine-tuning alike: a watchdog for stalled steps,
checkpoint writing that every MultiWorkerMirrored worker takes part in, and checkpoint-and-exit
on an announced termination (SIGTERM), agreed across workers."""
from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

from absl import logging
import tensorflow as tf


class StallWatchdog:
  """Exits the process when training stops making progress, instead of hanging forever.

  A collective waiting on a dead or frozen peer can block indefinitely; the engines' own
  detection (MWMS health checks, horovodrun's process monitoring) usually ends the job first,
  and this is the backstop. ``ping()`` after every loop call; if none comes within the
  timeout (three times longer for the first call, which traces the graph), every thread's
  stack is dumped to stderr and the process exits with ``EXIT_CODE``.
  """

  EXIT_CODE = 75

  def __init__(self, timeout_secs: float, what: str = "training step"):
    self.timeout = timeout_secs
    self.what = what
    self._deadline = time.monotonic() + 3 * timeout_secs
    self._stop = threading.Event()
    self._thread = None
    if timeout_secs > 0:
      self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
      self._thread.start()

  def ping(self):
    self._deadline = time.monotonic() + self.timeout

  def stop(self):
    self._stop.set()

  def _watch(self):
    while not self._stop.wait(1.0):
      if time.monotonic() > self._deadline:
        sys.stderr.write(f"\n[watchdog] no {self.what} finished within {self.timeout:.0f}s "
                         "(a dead or stalled peer?). Stacks of all threads:\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(self.EXIT_CODE)  # a hung collective cannot be unwound; leave now


class Preempted(SystemExit):
  """An announced termination (SIGTERM) was honoured: a checkpoint was written, then exit."""

  EXIT_CODE = 143  # 128 + SIGTERM, what a scheduler expects from a terminated job

  def __init__(self, step: int, path: Optional[str]):
    super().__init__(self.EXIT_CODE)
    self.step, self.path = step, path


class TerminationNotice:
  """Turns SIGTERM (a scheduler's or a spot instance's announced preemption) into a flag the
  loop checks at its next boundary, so the job saves a checkpoint and exits cleanly instead of
  dying mid-step. Workers agree through ``runtime.any_worker`` so they all stop at the same
  step even when only one of them was signalled.

  Used where TensorFlow's PreemptionCheckpointHandler does not apply: one device, Mirrored
  and Horovod (the handler agrees over tf.distribute's coordination service, which Horovod
  jobs do not run). MultiWorkerMirrored uses the handler (``runtime.preemption_handler``)."""

  def __init__(self):
    self.requested = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class CheckpointWriter:
  """Writes a trainer's checkpoints: the chief through ``manager``; under MultiWorkerMirrored
  the other workers take part in every save (it may run collectives) into a scratch directory
  removed at once. Remembers the last step saved, so a save requested twice for one step
  (a checkpoint step that is also the termination step) writes once, on every worker alike."""

  def __init__(self, runtime, manager: tf.train.CheckpointManager, output_dir: str):
    self.runtime, self.manager, self.output_dir = runtime, manager, output_dir
    self.last_saved_step = None
    if runtime.is_chief:  # a kill during a save leaves ckpt-N_temp/: nothing else removes it
      from bert_tf.checkpoint_checks import remove_stale_temp_dirs
      remove_stale_temp_dirs(output_dir)

  def save(self, step: int) -> Optional[str]:
    self.last_saved_step = step

    def write(directory):
      # CheckpointManager writes the data and index files first and then atomically replaces
      # the "checkpoint" state file: a crash mid-save leaves the previous checkpoint current.
      manager = self.manager if directory == self.output_dir else tf.train.CheckpointManager(
          self.manager.checkpoint, directory, max_to_keep=1)
      return manager.save(checkpoint_number=step)

    path = self.runtime.write_from_chief(write, self.output_dir, self.output_dir)
    if path is not None:
      logging.info("saved %s", path)
    return path

  def save_if_new(self, step: int) -> None:
    if self.last_saved_step != step:
      self.save(step)


class TerminationGuard:
  """Honours an announced termination at the training loop's boundaries, the same way for
  pretraining and fine-tuning: when any worker gets SIGTERM, every worker saves a checkpoint
  at one agreed step and raises ``Preempted`` (exit 143).

  MultiWorkerMirrored: TensorFlow's PreemptionCheckpointHandler (``runtime.preemption_handler``)
  agrees the step and calls our save and exit functions. Elsewhere: a ``TerminationNotice`` per
  ``train()`` call, agreed with ``runtime.any_worker``. Make one guard per trainer (the handler
  restores the latest checkpoint when made and adds its run counter to the checkpoint), and
  wrap each ``train()`` loop in ``with guard.watching(target):``.

  Args:
    writer: the trainer's ``CheckpointWriter``.
    current_step: () -> int.
  """

  def __init__(self, writer: CheckpointWriter, current_step: Callable[[], int]):
    self.writer, self.runtime = writer, writer.runtime
    self._current_step = current_step
    self._handler, self._notice, self._target = None, None, None

  @contextlib.contextmanager
  def watching(self, target: int):
    self._target = target
    if self.runtime.preemption_handler is not None:
      if self._handler is None:
        self._handler = self.runtime.preemption_handler(
            self.writer.manager, save_fn=lambda *args, **kwargs: self._save(), exit_fn=self._stop)
    else:
      self._notice = TerminationNotice()
    try:
      yield self
    finally:
      if self._notice is not None:
        self._notice.restore()
        self._notice = None

  def check(self):
    """Call on every worker after each loop call; raises Preempted to stop."""
    if self._handler is not None:  # saves and calls _stop when a worker got SIGTERM
      self._handler.save_checkpoint_if_preempted()
    elif self.runtime.any_worker(self._notice.requested) and self._current_step() < self._target:
      self._save()
      self._stop()

  def _save(self):
    self.writer.save_if_new(self._current_step())

  def _stop(self):
    step = self._current_step()
    if step >= self._target:  # the agreed step was the last one: finish normally
      logging.warning("termination requested (SIGTERM) at the last step %d: finishing", step)
      return
    logging.warning("termination requested (SIGTERM): checkpoint at step %d written, "
                    "exiting; run the same command again to resume", step)
    raise Preempted(step, self.writer.manager.latest_checkpoint)
