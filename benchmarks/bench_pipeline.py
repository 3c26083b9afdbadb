"""Pipeline schedules on this machine: bubble, in-flight micro-batches and examples/s.

  .venv/bin/python benchmarks/bench_pipeline.py [--layers 4 --hidden 128 --seq 64 --batch 32
                                                 --stages 2 --microbatches 4,8 --steps 6
                                                 --recompute full,selective]

Three tables, printed as Markdown, under the machine line.
- Schedule figures, from ``bert_tf.pipeline.schedule.simulate`` (no TensorFlow):
  - unit stage times;
  - idle fraction against (p - 1)/(m + p - 1);
  - most micro-batches in flight per stage. This is the activation memory a stage holds, in
    micro-batches: the schedule fixes it and the engine enforces it with control dependencies.
- Memory, CPU, one process, p stages on p logical CPU devices. TensorFlow's allocator
  statistics (``tf.config.experimental.get_memory_info``) exist on the CPU only with oneDNN on
  (off: "Allocator stats not available"), and the logical devices share one allocator: every
  device reports the same numbers; and it counts only allocations of about 256 KiB and more
  (checked here: a 64x64 float32 tensor is not counted, 256x256 is), so small configurations
  read low or zero. So:
  - per stage: the bytes one micro-batch's stage forward leaves held (its tape and output),
    measured alone (allocator current after - before, eager), times the schedule's most
    micro-batches in flight at that stage: counted from a measurement, not a measured peak;
  - whole step, measured: the allocator's peak during one step minus its current before it
    (activations, gradients, accumulators, update temporaries of all stages together);
  - both also for 1f1b at the first m under each ``--recompute`` mode: a recomputed block
    keeps only its input under the tape, so each stage holds less per micro-batch.
- Measured speed, CPU only, one process, p stages on p logical CPU devices:
  - examples/s of every schedule and m, against data parallelism (Mirrored) over the same
    devices at the same global batch;
  - the first loop call (tracing) is excluded;
  - the per-stage busy fraction from the trainer's timing line (trainer.StageTimes);
  - the host's cores are shared by the logical devices and, on this machine, by other
    people's jobs. The figures say what runs, not what GPUs would do.
"""
import argparse
import os
import tempfile
import time

import bert_tf  # noqa: F401  (Keras 2 first)
from bert_tf import distribution


def schedule_table(p, ms):
  from bert_tf.pipeline import schedule as sched
  rows = ["| schedule | p | m | idle (simulated) | (p-1)/(m+p-1) | in flight per stage |",
          "|---|---|---|---|---|---|"]
  for kind in ("gpipe", "1f1b", "2bw"):
    for m in ms:
      if kind == "2bw" and m < p:
        continue
      batches = 4 if kind == "2bw" else 1
      result = sched.simulate(sched.make_schedule(kind, p, m, batches))
      label = kind if kind != "2bw" else "2bw (4 steps/call)"
      rows.append(f"| {label} | {p} | {m} | {result.idle_fraction:.3f} | "
                  f"{(p - 1) / (m + p - 1):.3f} | {result.max_in_flight} |")
  return "\n".join(rows)


def _memory():
  """The shared CPU allocator's (current, peak) bytes; None with oneDNN off (no stats)."""
  import tensorflow as tf
  try:
    info = tf.config.experimental.get_memory_info("CPU:0")
  except ValueError:
    return None
  return info["current"], info["peak"]


def _time_loop(trainer, steps, per_call):
  """(examples/s, measured step peak bytes or None, the trainer's StageTimes of the timed
  call or None)."""
  import tensorflow as tf
  trainer.restore()
  loop = trainer.compiled_train_loop()
  iterator = iter(trainer.distributed_train_dataset(0))
  loop(iterator, tf.constant(per_call)).numpy()   # trace and first run
  peak = None
  if _memory() is not None:
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = _memory()[0]
    loop(iterator, tf.constant(per_call)).numpy()
    peak = _memory()[1] - before
  began = time.perf_counter()
  loop(iterator, tf.constant(steps)).numpy()
  rate = steps * trainer.config.train_batch_size / (time.perf_counter() - began)
  return rate, peak, getattr(trainer, "stage_times", None)


def _conf(p, layers):
  """Embeddings with stage 0, the layers split evenly, heads (and loss) on the last stage."""
  from bert_tf.pipeline import conf as conf_lib
  stage_of_layer = [min(p - 1, i * p // layers) for i in range(layers)]
  return conf_lib.parse_conf({"module_to_stage_map": [0] + stage_of_layer + [p - 1, p - 1],
                              "stage_to_rank_map": {str(s): [s] for s in range(p)}})


def stage_bytes_per_microbatch(trainer):
  """Per stage: bytes one micro-batch's forward leaves held under its tape (eager, alone)."""
  import tensorflow as tf
  staged, cfg = trainer.staged, trainer.config
  batch = next(iter(trainer.distributed_train_dataset(0)))
  features = {k: v[0] for k, v in batch.items()}
  held, x = [], None
  for s in range(staged.num_stages):
    with tf.device(trainer.stage_devices[s]):
      before = _memory()[0]
      with tf.GradientTape() as tape:
        if x is not None:
          tape.watch(x)
        y = staged.forward(s, x, features, tf.constant([cfg.seed, 0], tf.int64))
      held.append(_memory()[0] - before)
      del tape
      x = y
  return held


def _mib(n):
  return f"{n / 2 ** 20:.2f}"


def _pipeline_trainer(args, config, features, conf, out, kind, m, recompute):
  from bert_tf.pipeline.trainer import PipelinePretrainer, pipeline_runtime
  from bert_tf.testing import builders
  train, opt = builders.split_configs(
      dict(gradient_accumulation_steps=m, recompute=recompute), builders.TrainConfig,
      dict(output_dir=out, train_batch_size=args.batch, max_seq_length=args.seq,
           max_predictions_per_seq=8, num_train_steps=1000, iterations_per_loop=2,
           save_checkpoints_steps=2, seed=1),
      dict(name="adamw", learning_rate=1e-4, num_train_steps=1000, num_warmup_steps=1))
  return PipelinePretrainer(config, train, opt, pipeline_runtime(conf, kind),
                            builders.dataset_fn(features), conf=conf, schedule=kind,
                            steps_per_call=2 if kind == "2bw" else 1)


def _runs(ms, p, recompute_modes):
  """(schedule, m, recompute) of every pipeline row: each schedule and m without recompute,
  then 1f1b at the first m under each other recompute mode."""
  runs = [(kind, m, "none") for kind in ("gpipe", "1f1b", "2bw") for m in ms
          if kind != "2bw" or m >= p]
  return runs + [("1f1b", ms[0], mode) for mode in recompute_modes if mode != "none"]


def measured_table(args, ms):
  from bert_tf.pipeline import schedule as sched
  from bert_tf.testing import builders
  from bert_tf.testing.synthetic import pretraining_features
  from bert_tf.testing.tiny import tiny_config
  config = tiny_config(num_hidden_layers=args.layers, hidden_size=args.hidden,
                       intermediate_size=4 * args.hidden, vocab_size=1000,
                       max_position_embeddings=max(64, args.seq))
  features = pretraining_features(config, batch=4 * args.batch, seq=args.seq, predictions=8)
  conf, p = _conf(args.stages, args.layers), args.stages
  rows = ["| run | m | recompute | examples/s | busy per stage (timing line) |",
          "|---|---|---|---|---|"]
  memory = ["| schedule | m | recompute | in flight per stage | activations held per stage, "
            "MiB (counted: in flight x measured per micro-batch) | step peak, MiB (measured, "
            "all stages) |", "|---|---|---|---|---|---|"]
  with tempfile.TemporaryDirectory() as tmp:
    dp = builders.pretrainer(os.path.join(tmp, "dp"), "mirrored", config=config,
                             features=features, steps=1000, train_batch_size=args.batch,
                             max_seq_length=args.seq, max_predictions_per_seq=8,
                             iterations_per_loop=args.steps)
    rate, dp_peak, _ = _time_loop(dp, args.steps, 1)
    rows.append(f"| data parallel (Mirrored, {p} devices) | - | none | {rate:.1f} | - |")
    per_mb = {}   # (m, recompute) -> held bytes per micro-batch per stage
    for kind, m, recompute in _runs(ms, p, args.recompute.split(",")):
      trainer = _pipeline_trainer(args, config, features, conf,
                                  os.path.join(tmp, f"{kind}{m}{recompute}"), kind, m, recompute)
      rate, peak, times = _time_loop(trainer, args.steps, trainer.steps_per_call)
      busy = " / ".join(f"{b:.2f}" for b in times.busy()) if times else "-"
      rows.append(f"| pipeline {kind}, {p} stages | {m} | {recompute} | {rate:.1f} | {busy} |")
      if peak is None:
        continue
      if (m, recompute) not in per_mb:   # depends on the micro-batch size and recompute only
        per_mb[(m, recompute)] = stage_bytes_per_microbatch(trainer)
      in_flight = sched.simulate(sched.make_schedule(kind, p, m, trainer.steps_per_call)
                                 ).max_in_flight
      held = " / ".join(_mib(n * b) for n, b in zip(in_flight, per_mb[(m, recompute)]))
      memory.append(f"| {kind}{' (2 steps/call)' if kind == '2bw' else ''} | {m} | {recompute} "
                    f"| {in_flight} | {held} | {_mib(peak)} |")
    if dp_peak is not None:
      memory.append(f"| data parallel (Mirrored) | - | none | - | - | {_mib(dp_peak)} |")
  if len(memory) == 2:
    memory.append("| (oneDNN off: the CPU allocator keeps no statistics; not measured) ||||||")
  return "\n".join(rows) + "\n\n" + "\n".join(memory)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--stages", type=int, default=2)
  parser.add_argument("--microbatches", default="4,8")
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--recompute", default="full,selective",
                      help="recompute modes of the extra 1f1b rows (first m): --recompute's")
  parser.add_argument("--no_measure", action="store_true", help="schedule table only")
  args = parser.parse_args()
  ms = [int(m) for m in args.microbatches.split(",")]
  from bert_tf.tools.machine import machine_line
  print(machine_line() + "\n")
  print(schedule_table(args.stages, ms) + "\n")
  print(schedule_table(4, [4, 8, 16]) + "\n")
  if not args.no_measure:
    distribution.split_cpu(args.stages)
    print(measured_table(args, ms))


if __name__ == "__main__":
  main()
