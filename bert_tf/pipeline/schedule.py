"""Pipeline schedules as plain data, without TensorFlow: what each stage runs, in which order.

An ``Op`` is a forward (F) or backward (B) of micro-batch ``mb`` of batch ``batch`` on one
stage, or the stage's optimizer update (U) at the end of a batch. The orders follow PipeDream's
runtime (Megatron ``schedules.py`` of the ``pipedream_2bw`` branch):

* ``gpipe``: all m forwards, then all m backwards, then the update: W(t+1) = W(t) - v grad f(W(t)).
* ``1f1b`` (PipeDream-Flush): stage s of p runs min(p - s - 1, m) warm-up forwards, then one
  forward / one backward, then the cool-down backwards, then the update. Same math as gpipe; at
  most p - s micro-batches in flight at stage s.
* ``2bw``: no flush between batches: warm-up only before the first batch, cool-down only after
  the last; the update of batch t comes before the stage's first forward of batch t + 2 (as late
  as the two weight versions allow; see ``_two_bw_stage``). Forwards of batch t read version
  max(t - 1, 0) of the weights (W(t+1) = W(t) - v grad f(W(t-1))): from the newest buffer M if
  the stage has not yet applied update t - 1 (micro-batches that start early), else from the
  stash S (which holds the previous version after an update).

``simulate`` is a small discrete-event simulation (unit or given op times, transfers that block
until the receiver posts the matching receive) used by the tests and the benchmark to show that
no schedule deadlocks and to measure the bubble.
"""
from __future__ import annotations

import collections
import dataclasses

SCHEDULES = ("gpipe", "1f1b", "2bw")


@dataclasses.dataclass(frozen=True)
class Op:
  kind: str          # "F", "B" or "U"
  batch: int
  mb: int = -1       # micro-batch within the batch (-1 for U)
  version: int = 0   # weight version the F/B computes with (W(version))
  buffer: str = "M"  # 2bw: "S" (stash) or "M" (newest); flush schedules: "M"

  @property
  def key(self):
    return (self.batch, self.mb)


def warmup_count(kind: str, p: int, s: int, m: int) -> int:
  """Forwards stage s runs before its first backward."""
  return m if kind == "gpipe" else min(p - s - 1, m)


def _flush_stage(kind, p, s, m, t):
  w = warmup_count(kind, p, s, m)
  f = [Op("F", t, i, t) for i in range(m)]
  b = [Op("B", t, i, t) for i in range(m)]
  ops = f[:w]
  for i in range(m - w):
    ops += [f[i + w], b[i]]
  return ops + b[m - w:] + [Op("U", t)]


def _two_bw_stage(p, s, m, num_batches):
  n = num_batches * m
  w = min(p - s - 1, n)
  order = list(range(w))             # forwards are g >= 0, backwards ~g (g = global micro-batch)
  for g in range(n - w):
    order += [g + w, ~g]
  order += [~g for g in range(n - w, n)]
  ops, applied, pending = [], -1, 0  # applied: last update emitted; pending: next to emit
  for g in order:
    t = g // m if g >= 0 else ~g // m
    # U(t) as late as allowed: before the first forward of batch t + 2 (which needs W(t + 1)),
    # so the global-norm exchange of batch t never stalls a stage that still has batch t + 1
    # work (placing it right after the last backward deadlocks under blocking transfers).
    while g >= 0 and pending <= t - 2:
      ops.append(Op("U", pending))
      applied, pending = pending, pending + 1
    if g >= 0:
      # Update t - 1 not applied yet: M holds W(t - 1). Applied: S (stashed before it) does.
      buffer = "M" if t >= 1 and applied < t - 1 else "S"
      ops.append(Op("F", t, g % m, max(t - 1, 0), buffer))
    else:
      ops.append(Op("B", t, ~g % m, max(t - 1, 0)))
  ops += [Op("U", t) for t in range(pending, num_batches)]
  return ops


def make_schedule(kind: str, p: int, m: int, num_batches: int = 1) -> list:
  """Per stage (0 .. p-1), the list of ``Op`` it runs over ``num_batches`` batches of ``m``
  micro-batches each."""
  if kind not in SCHEDULES:
    raise ValueError(f"schedule {kind!r}: expected one of {SCHEDULES}")
  if p < 1 or m < 1 or num_batches < 1:
    raise ValueError(f"stages {p}, micro-batches {m}, batches {num_batches}: all must be >= 1")
  if kind == "2bw":
    if m < p:
      raise ValueError(f"2bw needs micro-batches >= stages (m={m}, p={p})")
    return [_two_bw_stage(p, s, m, num_batches) for s in range(p)]
  return [[op for t in range(num_batches) for op in _flush_stage(kind, p, s, m, t)]
          for s in range(p)]


def _needs(op: Op, s: int, p: int):
  """The message a stage must have received before running ``op``: (from stage, message)."""
  if op.kind == "F" and s > 0:
    return s - 1, ("F", op.key)
  if op.kind == "B" and s < p - 1:
    return s + 1, ("B", op.key)
  return None


def _sends(op: Op, s: int, p: int):
  if op.kind == "F" and s < p - 1:
    return s + 1, ("F", op.key)
  if op.kind == "B" and s > 0:
    return s - 1, ("B", op.key)
  return None


class DeadlockError(RuntimeError):
  """No stage can make progress and some ops are left."""


@dataclasses.dataclass
class SimResult:
  makespan: float
  busy: list            # per stage: time spent computing
  max_in_flight: list   # per stage: most forwards whose backward had not run yet
  start: dict

  @property
  def idle_fraction(self) -> float:
    return 1.0 - sum(self.busy) / (len(self.busy) * self.makespan)


def simulate(schedule: list, f_time=1.0, b_time=1.0, blocking=True, paired=True,
             sync_updates=True) -> SimResult:
  """Runs ``schedule`` with op times ``f_time`` / ``b_time`` (numbers, or per-stage lists).

  ``blocking``: a send completes only when its receiver posts the matching receive, which it
  does when that message is the input of its next op; ``paired``: a stage blocked in a send has
  also posted the receive of its next op (Megatron's send_forward_recv_backward exchange).
  ``sync_updates``: U of batch t waits for every stage's backwards of t (global-norm clipping).
  """
  p = len(schedule)
  m = 1 + max(op.mb for op in schedule[0])
  per = lambda x, s: x[s] if isinstance(x, (list, tuple)) else x  # noqa: E731
  idx, busy = [0] * p, [0.0] * p
  finish = [None] * p       # time the running op ends, if computing
  sending = [None] * p      # (peer, message) a stage is blocked on
  arrived = [set() for _ in range(p)]
  in_flight, max_in_flight = [0] * p, [0] * p
  last_b = collections.Counter()   # batch -> stages that ran all its backwards
  start, now = {}, 0.0  # start: (stage, op index) -> start time

  def next_op(s):
    return schedule[s][idx[s]] if idx[s] < len(schedule[s]) else None

  def posted(s, message):
    op = next_op(s)
    waiting = finish[s] is None and (sending[s] is None or paired)
    peer = s - 1 if message[0] == "F" else s + 1
    return waiting and op is not None and _needs(op, s, p) == (peer, message)

  def complete(s):
    op = schedule[s][idx[s]]
    in_flight[s] += {"F": 1, "B": -1}.get(op.kind, 0)
    max_in_flight[s] = max(max_in_flight[s], in_flight[s])
    last_b[op.batch] += op.kind == "B" and op.mb == m - 1
    sends = _sends(op, s, p)
    idx[s] += 1
    if sends is not None:
      if blocking:
        sending[s] = sends
      else:
        arrived[sends[0]].add(sends[1])

  while any(idx[s] < len(schedule[s]) or finish[s] is not None for s in range(p)):
    for s in range(p):
      if finish[s] is not None and finish[s] <= now:
        finish[s] = None
        complete(s)
    changed = True
    while changed:
      changed = False
      for s in range(p):
        if sending[s] is not None and posted(*sending[s]):
          arrived[sending[s][0]].add(sending[s][1])
          sending[s] = None
          changed = True
        op = next_op(s)
        if op is None or finish[s] is not None or sending[s] is not None:
          continue
        need = _needs(op, s, p)
        if need is not None and need[1] not in arrived[s]:
          continue
        if op.kind == "U":
          if sync_updates and last_b[op.batch] < p:
            continue
          start[(s, idx[s])] = now
          complete(s)
          changed = True
          continue
        duration = per(f_time if op.kind == "F" else b_time, s)
        start[(s, idx[s])] = now
        finish[s], busy[s] = now + duration, busy[s] + duration
        changed = True
    pending = [finish[s] for s in range(p) if finish[s] is not None]
    if not pending:
      if any(idx[s] < len(schedule[s]) or sending[s] for s in range(p)):
        stuck = {s: (next_op(s), sending[s]) for s in range(p)}
        raise DeadlockError(f"pipeline deadlock at time {now}: {stuck}")
      break
    now = min(pending)
  return SimResult(now, busy, max_in_flight, start)


def program_order(schedule: list) -> list:
  """(stage, op) pairs of every stage in one order that respects all dependencies and each
  stage's own order: the start order of a buffered unit-time simulation. The engine builds its
  graph in this order."""
  result = simulate(schedule, blocking=False, sync_updates=True)
  keys = sorted(result.start, key=lambda k: (result.start[k], k[0], k[1]))
  return [(s, schedule[s][i]) for s, i in keys]
