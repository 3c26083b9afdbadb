"""The largest training batch that fits a memory budget, per recompute mode (seed-style table).

For a model (preset or bert_config.json), sequence length, dtype and recompute mode(s), finds
the largest global batch whose real pretraining step (``training.Pretrainer``'s train loop:
forward, backward, clipping, AdamW update) fits the budget: doubling from ``--start_batch``
until a try fails, then binary search between the last fit and the first failure. Every try
runs in a fresh subprocess (``python -m bert_tf.tools.memory_worker``), so an out-of-memory
failure cannot poison the next try and each peak is measured from a clean process.

    # CPU, 8 GiB budget (peak resident set of the child), BERT-Base:
    python max_batch_size.py --preset base --max_seq_length 128 --memory_limit_gb 8
    python max_batch_size.py --preset base --max_seq_length 512 --memory_limit_gb 8 \\
        --recompute none,selective,full
    # GPU: the budget is the device's memory (or --memory_limit_gb caps it); OOM = failure.
    python max_batch_size.py --preset large --max_seq_length 512 --dtype fp16

Prints the seed's table: Baseline (recompute none), Recompute (each mode), +x%. On CPU the
peak is the child's resident high-water mark, on any CPU and whether or not oneDNN is on;
``bert_tf/tools/max_batch.py`` says how the budget is enforced.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os

from bert_tf.tools import max_batch, synthetic
from bert_tf.tools.memory_stats import GIB


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--preset", default="base", help="model size: tiny, mini, small, base, "
                      "large, L-4_H-256_A-4, ... (ignored with --bert_config_file)")
  parser.add_argument("--bert_config_file", default=None,
                      help="a google bert_config.json instead of --preset")
  parser.add_argument("--max_seq_length", type=int, default=128)
  parser.add_argument("--max_predictions_per_seq", type=int, default=0,
                      help="0: google's 20 at seq 128, 80 at seq 512 (about 15%%)")
  parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
  parser.add_argument("--recompute", default="none,selective,full",
                      help="comma list of modes; 'none' is the baseline of the +x%% column")
  parser.add_argument("--memory_limit_gb", type=float, default=None,
                      help="CPU: peak resident-set budget of the child in GiB (required on "
                      "CPU); GPU: caps GPU:0 at this many GiB (default: the whole device)")
  parser.add_argument("--start_batch", type=int, default=1,
                      help="first batch of the doubling; 0: the estimator's prediction "
                      "(bert_tf.memory, needs --memory_limit_gb), which saves most tries")
  parser.add_argument("--runtime_gb", type=float, default=1.3,
                      help="with --start_batch 0: the framework's resident share on CPU")
  parser.add_argument("--max_batch", type=int, default=1 << 14)
  parser.add_argument("--tolerance", type=float, default=0.0,
                      help="stop bisecting when hi - lo <= tolerance * lo (0: exact)")
  parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per try")
  parser.add_argument("--baseline_batch", type=int, default=0,
                      help="known baseline (recompute none) maximum: skips its search")
  parser.add_argument("--json_out", default=None, help="also write every try here (JSON)")
  args = parser.parse_args(argv)
  if args.start_batch <= 0 and not args.memory_limit_gb:
    parser.error("--start_batch 0 needs --memory_limit_gb")
  return parser, args


def worker_spec(args) -> tuple:
  """(the memory worker's spec without batch and recompute, the model's name)."""
  spec = {"seq": args.max_seq_length, "dtype": args.dtype,
          "predictions": args.max_predictions_per_seq or None}
  if args.bert_config_file:
    with open(args.bert_config_file) as f:
      spec["config"] = json.load(f)
    return spec, os.path.basename(os.path.dirname(os.path.abspath(args.bert_config_file)))
  spec["preset"] = args.preset
  return spec, f"BERT-{args.preset}"


def estimated_start(args, spec: dict, mode: str, on_gpu: bool) -> int:
  """The estimator's largest batch under the budget (plain arithmetic, no TensorFlow)."""
  from bert_tf import configs, memory  # pylint: disable=import-outside-toplevel
  config = (configs.BertConfig.from_dict(spec["config"]) if "config" in spec
            else configs.preset(args.preset))
  return max(1, memory.max_batch(
      config, args.max_seq_length, int(args.memory_limit_gb * GIB),
      predictions=spec["predictions"] or synthetic.default_predictions(args.max_seq_length),
      dtype=args.dtype, recompute=mode,
      runtime_bytes=0 if on_gpu else int(args.runtime_gb * GIB)))


def main(argv=None):
  parser, args = parse_args(argv)
  on_gpu = max_batch.has_gpu()
  if not on_gpu and args.memory_limit_gb is None:
    parser.error("--memory_limit_gb is required on CPU (the budget of the child's peak RSS)")
  spec, model = worker_spec(args)
  budget = None
  if on_gpu:
    if args.memory_limit_gb:
      spec["gpu_memory_limit_mb"] = int(args.memory_limit_gb * 1024)
    budget_label = (f"GPU:0 capped at {args.memory_limit_gb:g} GiB" if args.memory_limit_gb
                    else "GPU:0 memory")
  else:
    budget = int(args.memory_limit_gb * GIB)
    budget_label = f"CPU, peak RSS <= {args.memory_limit_gb:g} GiB"
  start_for = lambda mode: (args.start_batch if args.start_batch > 0
                            else estimated_start(args, spec, mode, on_gpu))
  found, trials = max_batch.search_modes(
      spec, [m.strip() for m in args.recompute.split(",") if m.strip()], budget, start_for,
      baseline_batch=args.baseline_batch, log=lambda line: print(line, flush=True),
      max_batch=args.max_batch, tolerance=args.tolerance, timeout=args.timeout)
  base, base_hi = found["none"]
  rows = [dict(model=model, seq=args.max_seq_length, dtype=args.dtype, mode=mode, lo=lo, hi=hi,
               base=base, base_hi=base_hi) for mode, (lo, hi) in found.items() if mode != "none"]
  print()
  print(max_batch.format_table(rows, budget_label))
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump({"args": vars(args), "found": found,
                 "trials": {m: [dataclasses.asdict(t) for t in ts] for m, ts in trials.items()}},
                f, indent=1)


if __name__ == "__main__":
  main()
