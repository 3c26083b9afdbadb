"""Flags of the data tools: create_pretraining_data.py, build_vocab.py, extract_features.py,
prepare_demo_data.py. google's names and defaults where google's scripts have the flag."""
from __future__ import annotations

from absl import flags as absl_flags


def define_create_pretraining_data_flags(fv=absl_flags.FLAGS) -> None:
  """google's create_pretraining_data.py flags, plus --num_workers and --documents_per_chunk."""
  absl_flags.DEFINE_string("input_file", None, "Input raw text file(s): globs and/or a comma "
                           "list. One sentence a line, blank lines between documents.",
                           flag_values=fv)
  absl_flags.DEFINE_string("output_file", None, "Output TFRecord file(s), comma list: "
                           "instances are written round-robin (one file per worker or more).",
                           flag_values=fv)
  absl_flags.DEFINE_string("vocab_file", None, "google's vocab.txt.", flag_values=fv)
  absl_flags.DEFINE_bool("do_lower_case", True, "Lower case and strip accents (uncased "
                         "models); False for cased models.", flag_values=fv)
  absl_flags.DEFINE_bool("do_whole_word_mask", False, "Mask whole words rather than word "
                         "pieces.", flag_values=fv)
  absl_flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.", flag_values=fv)
  absl_flags.DEFINE_integer("max_predictions_per_seq", 20, "Maximum number of masked LM "
                            "predictions per sequence (0: unmasked records, for dynamic "
                            "masking).", flag_values=fv)
  absl_flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.",
                            flag_values=fv)
  absl_flags.DEFINE_integer("dupe_factor", 10, "Number of times to duplicate the input data "
                            "(with different masks).", flag_values=fv)
  absl_flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.", flag_values=fv)
  absl_flags.DEFINE_float("short_seq_prob", 0.1, "Probability of creating sequences shorter "
                          "than the maximum length.", flag_values=fv)
  absl_flags.DEFINE_integer("num_workers", 0, "Worker processes for instance creation "
                            "(0: automatic: this process alone when the text x dupe_factor is "
                            "under 128 MiB, where spawning workers costs more than the job; "
                            "otherwise all cores).", flag_values=fv)
  absl_flags.DEFINE_integer("documents_per_chunk", 20000, "Documents processed together "
                            "(memory bound; random next sentences come from the same chunk). "
                            "A corpus within one chunk gives exactly google's output "
                            "with --exact_reference_rng and --num_workers=1.",
                            flag_values=fv)
  absl_flags.DEFINE_bool("exact_reference_rng", False, "Draw random numbers exactly as "
                         "google's script (slower); default: masks drawn in numpy batches, "
                         "the same distribution.", flag_values=fv)


def define_build_vocab_flags(fv=absl_flags.FLAGS) -> None:
  absl_flags.DEFINE_string("input_file", None, "Text file(s) to learn from: globs and/or a "
                           "comma list; every line is text.", flag_values=fv)
  absl_flags.DEFINE_string("output_file", None, "Where to write vocab.txt.", flag_values=fv)
  absl_flags.DEFINE_integer("vocab_size", 30522, "Maximum vocabulary size, special tokens "
                            "included.", flag_values=fv)
  absl_flags.DEFINE_bool("do_lower_case", True, "Learn an uncased vocabulary.", flag_values=fv)
  absl_flags.DEFINE_integer("num_unused", 0, "[unusedN] placeholder tokens to reserve.",
                            flag_values=fv)
  absl_flags.DEFINE_integer("min_count", 2, "Minimum count of a word piece.", flag_values=fv)
  absl_flags.DEFINE_bool("overwrite", False, "Replace an existing --output_file.",
                         flag_values=fv)


def define_extract_features_flags(fv=absl_flags.FLAGS) -> None:
  """google's extract_features.py flags."""
  absl_flags.DEFINE_string("input_file", None, "One text a line: a sentence, or "
                           "'text_a ||| text_b'.", flag_values=fv)
  absl_flags.DEFINE_string("output_file", None, "JSON lines output.", flag_values=fv)
  absl_flags.DEFINE_string("layers", "-1,-2,-3,-4", "Encoder layers to output (negative: "
                           "from the top).", flag_values=fv)
  absl_flags.DEFINE_string("bert_config_file", None, "google bert_config.json.",
                           flag_values=fv)
  absl_flags.DEFINE_integer("max_seq_length", 128, "Maximum total input sequence length; "
                            "longer inputs are truncated.", flag_values=fv)
  absl_flags.DEFINE_string("init_checkpoint", None, "A google TF1 checkpoint "
                           "(bert_model.ckpt), a TF2 checkpoint of ours, or a Hugging Face BERT "
                           "folder / model.safetensors.", flag_values=fv)
  absl_flags.DEFINE_string("vocab_file", None, "google's vocab.txt.", flag_values=fv)
  absl_flags.DEFINE_bool("do_lower_case", True, "Lower case the input (uncased models).",
                         flag_values=fv)
  absl_flags.DEFINE_integer("batch_size", 32, "Batch size for predictions.", flag_values=fv)


def define_prepare_demo_data_flags(fv=absl_flags.FLAGS) -> None:
  absl_flags.DEFINE_string("output_dir", "demo_data", "Directory for corpus.txt, vocab.txt "
                           "and the pretraining TFRecords.", flag_values=fv)
  absl_flags.DEFINE_integer("vocab_size", 8000, "Maximum vocabulary size.", flag_values=fv)
  absl_flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.", flag_values=fv)
  absl_flags.DEFINE_integer("max_predictions_per_seq", 20, "Masked LM predictions per "
                            "sequence.", flag_values=fv)
  absl_flags.DEFINE_integer("dupe_factor", 5, "Copies of the corpus with different masks.",
                            flag_values=fv)
  absl_flags.DEFINE_integer("num_shards", 2, "TFRecord files to write (one per worker or "
                            "more, for file-sharded reading).", flag_values=fv)
  absl_flags.DEFINE_integer("random_seed", 12345, "Random seed.", flag_values=fv)
  absl_flags.DEFINE_integer("num_workers", 0, "Worker processes (0: all cores).",
                            flag_values=fv)
  absl_flags.DEFINE_bool("overwrite", False, "Rebuild outputs made with other settings.",
                         flag_values=fv)
