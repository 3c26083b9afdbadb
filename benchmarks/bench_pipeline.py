"""Pipeline schedules on this machine: bubble, in-flight micro-batches and examples/s.

  .venv/bin/python benchmarks/bench_pipeline.py [--layers 4 --hidden 128 --seq 64 --batch 32
                                                 --stages 2 --microbatches 4,8 --steps 6]

Two tables, printed as Markdown.
- Schedule figures, from ``bert_tf.pipeline.schedule.simulate`` (no TensorFlow):
  - unit stage times;
  - idle fraction against (p - 1)/(m + p - 1);
  - most micro-batches in flight per stage. This is the activation memory a stage holds, in
    micro-batches: the schedule fixes it and the engine enforces it with control dependencies.
  - per-stage peak memory is not measured: logical CPU devices share one allocator.
- Measured, CPU only, one process, p stages on p logical CPU devices:
  - examples/s of every schedule and m, against data parallelism (Mirrored) over the same
    devices at the same global batch;
  - the first loop call (tracing) is excluded;
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


def _time_loop(trainer, steps, per_call):
  import tensorflow as tf
  trainer.restore()
  loop = trainer.compiled_train_loop()
  iterator = iter(trainer.distributed_train_dataset(0))
  loop(iterator, tf.constant(per_call)).numpy()   # trace and first run
  began = time.perf_counter()
  loop(iterator, tf.constant(steps)).numpy()
  return steps * trainer.config.train_batch_size / (time.perf_counter() - began)


def measured_table(args, ms):
  from bert_tf.pipeline import conf as conf_lib
  from bert_tf.pipeline.trainer import PipelinePretrainer, pipeline_runtime
  from bert_tf.testing import builders
  from bert_tf.testing.synthetic import pretraining_features
  from bert_tf.testing.tiny import tiny_config
  config = tiny_config(num_hidden_layers=args.layers, hidden_size=args.hidden,
                       intermediate_size=4 * args.hidden, vocab_size=1000,
                       max_position_embeddings=max(64, args.seq))
  features = pretraining_features(config, batch=4 * args.batch, seq=args.seq, predictions=8)
  conf = conf_lib.uniform_conf(args.stages, args.layers)
  rows = ["| run | m | examples/s |", "|---|---|---|"]
  with tempfile.TemporaryDirectory() as tmp:
    dp = builders.pretrainer(os.path.join(tmp, "dp"), "mirrored", config=config,
                             features=features, steps=1000, train_batch_size=args.batch,
                             max_seq_length=args.seq, max_predictions_per_seq=8,
                             iterations_per_loop=args.steps)
    rows.append(f"| data parallel (Mirrored, {args.stages} devices) | - | "
                f"{_time_loop(dp, args.steps, 1):.1f} |")
    for kind in ("gpipe", "1f1b", "2bw"):
      for m in ms:
        if kind == "2bw" and m < args.stages:
          continue
        per_call = 2 if kind == "2bw" else 1
        train, opt = builders._split(  # pylint: disable=protected-access
            dict(gradient_accumulation_steps=m), builders.TrainConfig,
            dict(output_dir=os.path.join(tmp, f"{kind}{m}"), train_batch_size=args.batch,
                 max_seq_length=args.seq, max_predictions_per_seq=8, num_train_steps=1000,
                 iterations_per_loop=2, save_checkpoints_steps=2, seed=1),
            dict(name="adamw", learning_rate=1e-4, num_train_steps=1000, num_warmup_steps=1))
        trainer = PipelinePretrainer(config, train, opt, pipeline_runtime(conf, kind),
                                     builders.dataset_fn(features), conf=conf, schedule=kind,
                                     steps_per_call=per_call)
        rows.append(f"| pipeline {kind}, {args.stages} stages | {m} | "
                    f"{_time_loop(trainer, args.steps, per_call):.1f} |")
  return "\n".join(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--stages", type=int, default=2)
  parser.add_argument("--microbatches", default="4,8")
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--no_measure", action="store_true", help="schedule table only")
  args = parser.parse_args()
  ms = [int(m) for m in args.microbatches.split(",")]
  print(schedule_table(args.stages, ms) + "\n")
  print(schedule_table(4, [4, 8, 16]) + "\n")
  if not args.no_measure:
    distribution.split_cpu(args.stages)
    print(measured_table(args, ms))


if __name__ == "__main__":
  main()
