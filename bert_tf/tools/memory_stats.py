"""A process's resident memory, and TensorFlow's allocator peak where the device keeps one.

The tools' CPU peak is the process's own resident high-water mark (``VmHWM``), which every
CPU has. TensorFlow's allocator statistics (``tf.config.experimental.get_memory_info``) exist
on GPUs, and on the CPU only when oneDNN is on: TensorFlow turns it on by default on some
CPUs (e.g. with AVX-512) and leaves it off on others (``TF_ENABLE_ONEDNN_OPTS``). Where they
are missing TensorFlow raises ``ValueError("Cannot reset memory stats for device 'CPU:0'")``
or ``ValueError("Allocator stats not available for device 'CPU:0'")``; the functions here
answer False / None instead, and nothing else about the measurement changes.
"""
from __future__ import annotations

import os
import resource
from typing import Optional

GIB = 2 ** 30


def rss_bytes(pid="self") -> int:
  """Resident set of a process now (``/proc/<pid>/statm``); FileNotFoundError once it is gone."""
  with open(f"/proc/{pid}/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def vm_hwm_bytes() -> int:
  """This process's resident high-water mark (``VmHWM``).

  Not ``ru_maxrss``: Linux folds the pre-exec image into it (exec keeps the forking parent's
  high-water mark), so a child of a 2 GiB pytest process would report at least 2 GiB. Only
  where /proc is missing does ``ru_maxrss`` stand in."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) * 1024  # kB
  except FileNotFoundError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _stats_missing(error: ValueError) -> bool:
  return "stats" in str(error)  # "Cannot reset memory stats ...", "Allocator stats not ..."


def reset_allocator_peak(device: str) -> bool:
  """Resets TensorFlow's allocator peak of ``device`` ("CPU:0", "GPU:0"); False where the
  device keeps no allocator statistics."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    tf.config.experimental.reset_memory_stats(device)
  except ValueError as error:
    if not _stats_missing(error):
      raise
    return False
  return True


def allocator_peak(device: str) -> Optional[int]:
  """Peak bytes of live tensors on ``device`` since the last reset; None where not kept."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  try:
    return int(tf.config.experimental.get_memory_info(device)["peak"])
  except ValueError as error:
    if not _stats_missing(error):
      raise
    return None
