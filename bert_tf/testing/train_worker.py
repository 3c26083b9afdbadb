"""A training worker for the multi-process parity tests: one MultiWorkerMirrored worker (via
TF_CONFIG) or one Horovod rank (under horovodrun).

  python -m bert_tf.testing.train_worker SPEC_JSON

SPEC: {"distribution", "initial_weights": npz, "features_seed": int, "runs": [{"name",
"output_dir", and ``parity_pretrainer`` overrides}], "result_dir": dir, "classifier": bool,
"squad": bool}.
For each run: load the initial weights, train, and (chief only) save the weights to
result_dir/<name>.npz and the last metrics to <name>.json. With "classifier": true, then also
fine-tune ``parity_classifier`` and evaluate it (every worker takes part; the chief saves
classifier.npz with the weights and the eval logits, and classifier.json with the metrics).
With "squad": true, then also predict the committed SQuAD 2.0 file with ``parity_squad``
(every worker takes part; the chief saves squad.npz with the span logits and squad.json with
the predictions, n-best, null odds and scores).
With "distill": {``distill_trainer`` arguments, "initial": npz of the student's trainable
weights, "steps"}: also distil (on-the-fly teacher) for "steps" steps; before it, worker i
counts i + 1 skipped input files (``reporting.count_input``), so the chief's metrics show the
total over the workers; the chief saves distill.npz with the student's trainable weights.

The tests build the same ``parity_pretrainer`` / ``parity_classifier`` / ``parity_squad`` on
one device as the reference.
"""
import json
import os
import sys
import time

import bert_tf  # noqa: F401  (Keras 2 before tensorflow)
import numpy as np

from bert_tf import distribution, tokenization
from bert_tf.configs import OptimizerConfig
from bert_tf.configs.squad import SquadConfig
from bert_tf.data import squad as squad_data
from bert_tf.testing import builders
from bert_tf.testing.launch import ROOT
from bert_tf.testing.synthetic import classifier_features
from bert_tf.testing.tiny import tiny_config
from bert_tf.training.squad import SquadTrainer


def parity_pretrainer(runtime, features_seed, *, output_dir, steps=2, **overrides):
  """A pretraining run with a log line at every step, a checkpoint at the end, no warm-up and
  no stall watchdog."""
  values = dict(iterations_per_loop=1, save_checkpoints_steps=steps, num_warmup_steps=0,
                stall_timeout_secs=0.0, **overrides)
  return builders.pretrainer(output_dir, runtime, steps=steps, features_seed=features_seed,
                             **values)


def parity_classifier(runtime, *, output_dir, accumulation=1):
  """A token-batched MRPC fine-tune (no dropout): (trainer, train features, eval sets)."""
  trainer = builders.classifier_trainer(
      output_dir, runtime, task="mrpc",
      config=tiny_config(vocab_size=100, num_attention_heads=2, intermediate_size=64,
                         max_position_embeddings=32),
      train_batch_size=160, eval_batch_size=96, max_seq_length=24, num_train_epochs=1,
      iterations_per_loop=2, save_checkpoints_steps=100,
      gradient_accumulation_steps=accumulation, seed=3, learning_rate=1e-2)
  # 37 eval examples: the batches do not split evenly over the replicas.
  return trainer, classifier_features(0, 40), {"": classifier_features(1, 37)}


SQUAD_DIR = os.path.join(ROOT, "tests", "data", "squad")
SQUAD_SEQ, SQUAD_STRIDE, SQUAD_QUERY = 64, 16, 12  # the long paragraph: many doc spans


def squad_sets(version_2=True):
  """The committed SQuAD file (2.0 or 1.1) as {"train": training features, "examples",
  "features": predict examples and features, "dataset": the file's data list}."""
  path = os.path.join(SQUAD_DIR, "tiny-v2.0.json" if version_2 else "tiny-v1.1.json")
  tokenizer = tokenization.BertTokenizer(os.path.join(SQUAD_DIR, "vocab.txt"))
  make = lambda examples, training: squad_data.convert_examples_to_features(  # noqa: E731
      examples, tokenizer, SQUAD_SEQ, SQUAD_STRIDE, SQUAD_QUERY, training)
  examples = squad_data.read_squad_examples(path, False, version_2)
  return {"train": make(squad_data.read_squad_examples(path, True, version_2), True),
          "examples": examples, "features": make(examples, False),
          "dataset": squad_data.load_squad_json(path)}


def parity_squad(runtime, *, output_dir, **overrides):
  """A tiny SQuAD span model (no dropout, seed 5): predict batches of 7 features (they do not
  split evenly over 2 replicas), 16 features per train step, AdamW at 1e-3."""
  values = dict(output_dir=output_dir, max_seq_length=SQUAD_SEQ, predict_batch_size=7,
                train_batch_size=16, num_train_epochs=2, iterations_per_loop=1,
                save_checkpoints_steps=1000, seed=5, stall_timeout_secs=0.0, n_best_size=5)
  values.update(overrides)
  config = tiny_config(vocab_size=206, max_position_embeddings=SQUAD_SEQ)
  return SquadTrainer(config, SquadConfig(**values), OptimizerConfig(learning_rate=1e-3),
                      runtime)


def squad_predict(trainer, sets, version_2=True):
  """predict() on the committed file, as run_squad.py does."""
  return trainer.predict(sets["examples"], sets["features"], do_lower_case=True,
                         version_2_with_negative=version_2, dataset=sets["dataset"])


def distill_trainer(runtime, *, output_dir, data_dir, transfer_dir, vocab_file,
                    teacher_vocab_file, student_config, teacher_config, teacher_dir, run,
                    alpha=0.5, temperature=2.0, learning_rate=5e-4):
  """An XNLI (en) distillation run with an on-the-fly teacher of its own cased vocabulary, and
  transfer data: (trainer, features). ``run``: ``FinetuneConfig`` fields; the configs are JSON
  files."""
  from bert_tf.configs import BertConfig, FinetuneConfig
  from bert_tf.configs.distillation import DistillConfig
  from bert_tf.data import classifier as classifier_data
  from bert_tf.data.classifier import distill as distill_data
  from bert_tf.training import distillation
  task = classifier_data.make_task("xnli", "en", "en")
  student_tok = tokenization.BertTokenizer(vocab_file, do_lower_case=True)
  teacher_tok = tokenization.BertTokenizer(teacher_vocab_file, do_lower_case=False)
  examples, labelled = distill_data.read_examples(task, data_dir, transfer_dir,
                                                  log=lambda *_: None)
  config = FinetuneConfig(**dict(run, output_dir=output_dir))
  features = distill_data.distill_features(examples, labelled, task, student_tok,
                                           config.max_seq_length, teacher_tok)
  distill = DistillConfig(alpha=alpha, temperature=temperature,
                          teacher_config=BertConfig.from_json_file(teacher_config),
                          teacher_checkpoint=teacher_dir, transfer_data_dir=transfer_dir)
  trainer = distillation.DistillationTrainer(
      BertConfig.from_json_file(student_config), config,
      OptimizerConfig(learning_rate=learning_rate), runtime, task, distill)
  return trainer, features


def _save(result_dir, name, weights, **arrays):
  np.savez(os.path.join(result_dir, f"{name}.npz"), **arrays,
           **{f"w{i}": w for i, w in enumerate(weights)})


def main(argv):
  if len(argv) != 2:
    sys.exit(__doc__)
  spec = json.loads(argv[1])
  runtime = distribution.make_runtime(spec["distribution"])
  result_dir = spec["result_dir"]
  for run in spec["runs"]:
    initial = dict(np.load(spec["initial_weights"]))
    run = dict(run)
    name = run.pop("name")
    trainer = parity_pretrainer(runtime, spec["features_seed"], **run)
    trainer.model.set_weights([initial[f"w{i}"] for i in range(len(initial))])
    metrics = trainer.train()
    if runtime.is_chief:
      _save(result_dir, name, trainer.model.get_weights())
      with open(os.path.join(result_dir, f"{name}.json"), "w") as f:
        json.dump({k: v for k, v in metrics.items() if not isinstance(v, str)}, f)
  if spec.get("classifier"):
    trainer, train, evals = parity_classifier(
        runtime, output_dir=os.path.join(result_dir, "classifier"))
    trainer.train(train)
    results = trainer.evaluate(evals)
    logits = trainer.logits(evals[""], trainer.config.eval_batch_size)
    if runtime.is_chief:
      _save(result_dir, "classifier", trainer.model.get_weights(), logits=logits)
      with open(os.path.join(result_dir, "classifier.json"), "w") as f:
        json.dump(results, f)
  if spec.get("squad"):
    trainer = parity_squad(runtime, output_dir=os.path.join(result_dir, "squad"))
    out = squad_predict(trainer, squad_sets())
    if runtime.is_chief:
      np.savez(os.path.join(result_dir, "squad.npz"), logits=out["logits"])
      with open(os.path.join(result_dir, "squad.json"), "w") as f:
        json.dump({k: out[k] for k in ("predictions", "nbest", "null_odds", "eval")}, f)
  if spec.get("distill"):
    from bert_tf.training import reporting
    values = dict(spec["distill"])
    initial, steps = np.load(values.pop("initial")), values.pop("steps")
    began = time.monotonic()
    trainer, features = distill_trainer(runtime, **values)
    assert len(initial.files) == len(trainer.model.trainable_variables)
    for i, variable in enumerate(trainer.model.trainable_variables):
      variable.assign(initial[f"w{i}"])
    reporting.count_input("corrupt_files_skipped", runtime.worker_index + 1)
    print(f"distill: student, teacher and features built in {time.monotonic() - began:.1f}s",
          flush=True)
    began = time.monotonic()
    trainer.train(features, stop_after_steps=steps)
    print(f"distill: {steps} steps trained in {time.monotonic() - began:.1f}s", flush=True)
    if runtime.is_chief:
      _save(result_dir, "distill", [v.numpy() for v in trainer.model.trainable_variables])
  print(f"worker {runtime.worker_index} done", flush=True)


if __name__ == "__main__":
  main(sys.argv)
