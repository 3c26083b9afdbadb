"""Flags shared by run_pretraining.py and run_classifier.py: model, precision, recompute,
distribution. Each concept has one general flag and, where the seeds had one, a short form
(``--use_fp16`` = ``--dtype=fp16``, ``--multi_gpu`` = ``--distribution=mirrored``); the short form
and the general flag must agree or the run is refused (see ``validate_common``)."""
from __future__ import annotations

from absl import flags as absl_flags

from bert_tf import distribution, precision
from bert_tf.modeling import RECOMPUTE_MODES


class _Definer:
  """absl's DEFINE_* bound to one FlagValues (tests define flags on a fresh FlagValues)."""

  def __init__(self, flag_values):
    self._flag_values = flag_values

  def __getattr__(self, name):
    define = getattr(absl_flags, name)
    return lambda *args, **kwargs: define(*args, flag_values=self._flag_values, **kwargs)


def define_common_flags(flag_values=absl_flags.FLAGS) -> None:
  f = _Definer(flag_values)
  f.DEFINE_string("bert_config_file", None, "google bert_config.json of the model.")
  f.DEFINE_string("bert_preset", None, "Instead of --bert_config_file: tiny, mini, small, medium, "
                  "base, large or L-{2..12}_H-{128,256,512,768}_A-*. Needs --vocab_size.")
  f.DEFINE_integer("vocab_size", None, "Vocabulary size for --bert_preset.")
  f.DEFINE_string("init_checkpoint", None, "Initial weights: a google TF1 checkpoint "
                  "(bert_model.ckpt), one of our pretraining checkpoints or an encoder export.")
  f.DEFINE_string("output_dir", None, "Where checkpoints, logs and results go.")
  f.DEFINE_integer("max_seq_length", 128, "Maximum total input sequence length in tokens.")
  f.DEFINE_enum("dtype", None, list(precision.DTYPES), "Compute precision (default fp32). "
                "fp16 = mixed_float16 with dynamic loss scaling; bf16 = mixed_bfloat16.")
  f.DEFINE_bool("use_fp16", False, "Short form of --dtype=fp16.")
  f.DEFINE_enum("distribution", None, list(distribution.DISTRIBUTIONS),
                "How to spread the work (default one_device).")
  f.DEFINE_bool("multi_gpu", False, "Short form of --distribution=mirrored: all local GPUs.")
  f.DEFINE_bool("use_horovod", False, "Short form of --distribution=horovod (launch with "
                "horovodrun -np N ...; one device per process).")
  f.DEFINE_enum("collective", "auto", list(distribution.COLLECTIVES), "multi_worker_mirrored "
                "all-reduce implementation: ring (gRPC, CPU), nccl (GPU) or auto.")
  f.DEFINE_bool("horovod_fp16_compression", False, "horovod: all-reduce gradients in float16.")
  f.DEFINE_float("stall_timeout_secs", 1800.0, "If no training loop call finishes for this "
                 "long (a dead or frozen peer), dump all stacks and exit non-zero (0: off).")
  f.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices, so that "
                   "--multi_gpu runs on a machine without GPUs (for trying things out).")
  f.DEFINE_enum("recompute", "none", list(RECOMPUTE_MODES), "Activation recompute: none; "
                "full (every transformer block); selective (the attention core and the FFN "
                "activation: cheap to recompute, large to keep).")
  f.DEFINE_integer("gradient_accumulation_steps", 1, "Micro-batches per optimizer step; the "
                   "global batch is split into replicas x this many micro-batches.")
  f.DEFINE_bool("use_xla", False, "Compile the training loop with XLA (measure first: it was "
                "slower on CPU).")
  f.DEFINE_integer("seed", 12345, "Seed for initialisation, data order and dropout.")
  f.DEFINE_bool("deterministic", False, "Enable TensorFlow op determinism (bitwise repeatable "
                "runs and resumes; slower on GPU).")


def resolved_dtype(flag_values) -> str:
  return flag_values.dtype or ("fp16" if flag_values.use_fp16 else "fp32")


def resolved_distribution(flag_values) -> str:
  v = flag_values
  return v.distribution or ("horovod" if v.use_horovod else
                            "mirrored" if v.multi_gpu else "one_device")


def validate_common(flag_values) -> list[str]:
  """Problems with the shared flags, as messages naming the flags (empty if none)."""
  problems = []
  v = flag_values
  if v.use_fp16 and v.dtype not in (None, "fp16"):
    problems.append(f"--use_fp16 contradicts --dtype={v.dtype} (use one of them)")
  if v.multi_gpu and v.distribution not in (None, "mirrored"):
    problems.append(f"--multi_gpu contradicts --distribution={v.distribution} (--multi_gpu "
                    "means --distribution=mirrored)")
  if v.use_horovod and v.distribution not in (None, "horovod"):
    problems.append(f"--use_horovod contradicts --distribution={v.distribution}")
  if v.use_horovod and v.multi_gpu:
    problems.append("--use_horovod and --multi_gpu are two different backends; give one "
                    "(under horovodrun each process drives one GPU)")
  dist = resolved_distribution(v)
  if v["collective"].present and dist != "multi_worker_mirrored":
    problems.append(f"--collective applies to --distribution=multi_worker_mirrored, not {dist}")
  if v.horovod_fp16_compression and dist != "horovod":
    problems.append(f"--horovod_fp16_compression applies to --distribution=horovod, not {dist}")
  if bool(v.bert_config_file) == bool(v.bert_preset):
    problems.append("give exactly one of --bert_config_file and --bert_preset")
  if v.bert_preset and not v.vocab_size:
    problems.append("--bert_preset needs --vocab_size (the size of your vocab.txt)")
  if not v.output_dir:
    problems.append("--output_dir is required")
  if v.gradient_accumulation_steps < 1:
    problems.append(f"--gradient_accumulation_steps must be >= 1, got "
                    f"{v.gradient_accumulation_steps}")
  if v.max_seq_length < 2:
    problems.append(f"--max_seq_length must be >= 2, got {v.max_seq_length}")
  if v.cpu_devices < 0:
    problems.append(f"--cpu_devices must be >= 0, got {v.cpu_devices}")
  return problems


def bert_config_from_flags(flag_values):
  from bert_tf import configs
  if flag_values.bert_config_file:
    return configs.BertConfig.from_json_file(flag_values.bert_config_file)
  return configs.preset(flag_values.bert_preset, vocab_size=flag_values.vocab_size)
