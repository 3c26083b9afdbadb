"""Knowledge distillation: the loss against NumPy (T^2, alpha, transfer and padding rows),
alpha = 1 is plain fine-tuning bitwise, a precomputed teacher equals the on-the-fly teacher,
a teacher with its own vocabulary and casing, 2 replicas x 2 accumulation = one device (logical
CPU devices, 2 MultiWorkerMirrored processes and 2 Horovod ranks), and the flag checks."""
import dataclasses
import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bert_tf import checkpoints, distribution, tokenization
from bert_tf.configs import FinetuneConfig, OptimizerConfig
from bert_tf.configs.distillation import DistillConfig
from bert_tf.data import classifier as data
from bert_tf.data.classifier import distill as distill_data
from bert_tf.interop import hf
from bert_tf.modeling import BertClassifier, BertEncoder
from bert_tf.testing import launch
from bert_tf.testing.files import write_glue_task, write_tsv, write_xnli_sample
from bert_tf.testing.tiny import classifier_config, tiny_config
from bert_tf.training import distillation
from bert_tf.training.classification import ClassifierTrainer

SEQ = 48


RUN = dict(train_batch_size=384, batch_size_in_tokens=True, eval_batch_size=4096,
           max_seq_length=SEQ, num_train_epochs=1, iterations_per_loop=20,
           save_checkpoints_steps=1000, warmup_proportion=0.0)
EXAMPLE_BATCHES = dict(batch_size_in_tokens=False, train_batch_size=8)  # 8 examples a step


def _run_config(output_dir, **overrides):
  return FinetuneConfig(**{**RUN, "output_dir": str(output_dir), **overrides})


def _trainer(output_dir, config, task, distill=None, runtime="one_device", **overrides):
  run = _run_config(output_dir, **overrides)
  runtime = distribution.make_runtime(runtime)
  if distill is None:
    return ClassifierTrainer(config, run, OptimizerConfig(learning_rate=5e-4), runtime, task)
  return distillation.DistillationTrainer(config, run, OptimizerConfig(learning_rate=5e-4),
                                          runtime, task, distill)


def _cased_vocab(vocab_file, path):
  """A second vocabulary: every word also capitalised, in another order (other ids)."""
  words = open(vocab_file, encoding="utf-8").read().split()
  specials, rest = words[:5], words[5:]
  both = sorted({*rest, *(w.capitalize() for w in rest if not w.startswith("##"))},
                reverse=True)
  path.write_text("\n".join(specials + both) + "\n", encoding="utf-8")
  return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """XNLI-format sample (train en 240), a transfer set, the student's uncased and the
  teacher's cased vocabularies, and a teacher classifier trained for a few steps."""
  root = tmp_path_factory.mktemp("distill")
  paths = write_xnli_sample(root / "data", train=240, evals=30, languages=("en",))
  transfer = write_xnli_sample(root / "transfer", train=90, evals=3, languages=("en",))
  task = data.make_task("xnli", "en", "en")
  student_tok = tokenization.BertTokenizer(paths["vocab_file"], do_lower_case=True)
  teacher_tok = tokenization.BertTokenizer(
      _cased_vocab(paths["vocab_file"], root / "teacher_vocab.txt"), do_lower_case=False)
  examples, labelled = distill_data.read_examples(task, paths["data_dir"], transfer["data_dir"],
                                                  log=lambda *_: None)
  features = distill_data.distill_features(examples, labelled, task, student_tok, SEQ,
                                           teacher_tok)
  # Hidden and attention dropout 0.1: a teacher run in training mode would differ from the
  # precomputed logits (inference mode), so the precomputed-vs-on-the-fly test catches it.
  teacher_config = classifier_config(len(teacher_tok.vocab), dropout=0.1)
  teacher = _trainer(root / "teacher", teacher_config, task)
  teacher.train(features.teacher, stop_after_steps=4)
  return dict(task=task, features=features, labelled=labelled, student_tok=student_tok,
              teacher_tok=teacher_tok, teacher_config=teacher_config,
              teacher_dir=str(root / "teacher"), examples=examples,
              student_config=tiny_config(vocab_size=len(student_tok.vocab)),
              paths=dict(data_dir=paths["data_dir"], transfer_dir=transfer["data_dir"],
                         vocab_file=paths["vocab_file"],
                         teacher_vocab_file=str(root / "teacher_vocab.txt")))


def _only_labelled(features, n):
  s = features.student
  student = data.Features(s.ids[:s.offsets[n]], s.offsets[:n + 1], s.first_lengths[:n],
                          s.labels[:n])
  return distill_data.DistillFeatures(student, features.labelled[:n], features.fingerprint)


def _weights(trainer):
  return [v.numpy() for v in trainer.model.trainable_variables]


def _max_diff(a, b):
  return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.unit
@pytest.mark.parametrize("regression", [False, True])
def test_loss_equals_numpy_reference(regression, tmp_path):
  """Micro-batch of 5 rows: 2 labelled, 2 transfer, 1 padding; alpha 0.3, T 2.5 (T^2 scaling),
  global normaliser 7 (other micro-batches hold the rest)."""
  rng = np.random.default_rng(0)
  num_labels = 1 if regression else 3
  task = data.make_task("stsb" if regression else "xnli")
  config = tiny_config()
  distill = DistillConfig(alpha=0.3, temperature=2.5, teacher_logits_file="precomputed")
  dtask = distillation.DistillationTask(task, _run_config(tmp_path), distill)
  model = dtask.build_model(config, _run_config(tmp_path))
  ids = rng.integers(1, config.vocab_size, (1, 5, 7)).astype(np.int32)
  teacher = rng.normal(size=(1, 5, num_labels)).astype(np.float32) * 3
  labels = (rng.normal(size=(1, 5)).astype(np.float32) if regression
            else rng.integers(0, 3, (1, 5)).astype(np.int32))
  batch = dict(input_ids=ids, input_mask=np.ones_like(ids), segment_ids=np.zeros_like(ids),
               label_ids=labels, label_weights=np.array([[1, 1, 1, 1, 0]], np.float32),
               gold_weights=np.array([[1, 0, 1, 0, 0]], np.float32), teacher_logits=teacher)
  batch = {k: tf.constant(v) for k, v in batch.items()}
  total = tf.constant(7.0)
  loss, sums = dtask.micro_batch_loss(model, batch, 0, (total, batch["teacher_logits"]), None)
  s = model({k: batch[k][0] for k in ("input_ids", "input_mask", "segment_ids")})["logits"]
  s, t, y = s.numpy().astype(np.float64), teacher[0].astype(np.float64), labels[0]
  if regression:
    gold, soft = (s[:, 0] - y) ** 2, (s[:, 0] - t[:, 0]) ** 2
  else:
    gold = -_np_log_softmax(s)[np.arange(5), y]
    p = np.exp(_np_log_softmax(t / 2.5))
    soft = 2.5 ** 2 * -(p * _np_log_softmax(s / 2.5)).sum(-1)
  gold_w, soft_w = np.array([.3, 0, .3, 0, 0]), np.array([.7, 1, .7, 1, 0])
  expected = ((gold * gold_w).sum() + (soft * soft_w).sum()) / 7
  assert float(loss) == pytest.approx(expected, rel=1e-5)
  assert float(sums[4]) == pytest.approx((gold * gold_w).sum() / 7, rel=1e-5)
  assert float(sums[5]) == pytest.approx((soft * soft_w).sum() / 7, rel=1e-5)


@pytest.mark.integration
def test_alpha_one_is_plain_fine_tuning_bitwise(setup, tmp_path):
  n = setup["labelled"]
  features = _only_labelled(setup["features"], n)
  plain = _trainer(tmp_path / "plain", setup["student_config"], setup["task"])
  initial = _weights(plain)
  plain.train(features.student, stop_after_steps=2)
  distilled = _trainer(tmp_path / "alpha1", setup["student_config"], setup["task"],
                       DistillConfig(alpha=1.0))
  distilled.train(features, stop_after_steps=2)
  assert _max_diff(initial, _weights(plain)) > 1e-3  # trained
  for a, b in zip(_weights(plain), _weights(distilled)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.unit
def test_teacher_and_student_tokenize_each_example_with_their_own_vocab(setup):
  """The same text reaches the uncased student and the cased teacher through each tokenizer."""
  features, example = setup["features"], setup["examples"][0]
  for tokenizer, part in ((setup["student_tok"], features.student),
                          (setup["teacher_tok"], features.teacher)):
    ids = part.ids[part.offsets[0]:part.offsets[1]]
    tokens = [tokenizer.inv_vocab[int(i)] for i in ids]
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    expected = [tokenizer.inv_vocab[i] for i in tokenizer.encode_batch([example.text_a])[0]]
    assert tokens[1:1 + len(expected)] == expected
  first_word = example.text_a.split()[0]                 # "The"
  assert first_word[0].isupper()
  assert setup["student_tok"].inv_vocab[int(features.student.ids[1])] == first_word.lower()
  assert setup["teacher_tok"].inv_vocab[int(features.teacher.ids[1])] == first_word
  assert not np.array_equal(features.student.ids, features.teacher.ids)
  # Transfer examples (after the 240 labelled): their file's labels are dropped.
  n = setup["labelled"]
  assert n == 240 and len(features) == 330 and features.labelled.sum() == n
  assert (features.labels[:n] >= 0).all() and (features.labels[n:] == -1).all()
  batch = distill_data.assemble_distill(features, [np.array([0, n, 1])])
  np.testing.assert_array_equal(batch["gold_weights"], [[1, 0, 1]])
  np.testing.assert_array_equal(batch["label_weights"], [[1, 1, 1]])


def _distill(setup, **overrides):
  values = dict(alpha=0.5, temperature=2.0, teacher_config=setup["teacher_config"],
                teacher_checkpoint=setup["teacher_dir"], transfer_data_dir="transfer")
  values.update(overrides)
  return DistillConfig(**values)


def _example_batches(output_dir, setup, **distill_overrides):
  """Batches of 8 examples (the same examples per step whatever the split: count batches)."""
  return _trainer(output_dir, setup["student_config"], setup["task"],
                  _distill(setup, **distill_overrides), **EXAMPLE_BATCHES)


@pytest.fixture(scope="module")
def on_the_fly(setup, tmp_path_factory):
  """One device, on-the-fly teacher, transfer data, 2 steps of 8 examples, no warm-up: initial
  and final student weights and the metrics (the reference of the next two tests)."""
  trainer = _example_batches(tmp_path_factory.mktemp("fly"), setup)
  initial = _weights(trainer)
  metrics = trainer.train(setup["features"], stop_after_steps=2)
  return initial, _weights(trainer), metrics


@pytest.mark.integration
def test_precomputed_teacher_logits_equal_the_on_the_fly_teacher(setup, on_the_fly, tmp_path):
  """Teacher with its own (cased) vocabulary and dropout 0.1 (unused: inference mode); 2 steps
  with transfer data: same student."""
  run = _run_config(tmp_path / "teacher_logits")
  logits = distillation.compute_teacher_logits(_distill(setup), run, distribution.make_runtime(),
                                               setup["task"], setup["features"])
  path = str(tmp_path / "teacher_logits.npz")
  distill_data.write_teacher_logits(path, logits, setup["features"], setup["task"])
  precomputed = dataclasses.replace(setup["features"], teacher=None, teacher_logits=(
      distill_data.read_teacher_logits(path, setup["features"], setup["task"])))
  trainer = _example_batches(tmp_path / "file", setup, teacher_logits_file=path)
  metrics = trainer.train(precomputed, stop_after_steps=2)
  initial, fly, fly_metrics = on_the_fly
  for m in (metrics, fly_metrics):
    assert m["soft_loss"] > 0 and m["gold_loss"] > 0
  assert _max_diff(initial, fly) > 1e-3  # trained
  diff = _max_diff(_weights(trainer), fly)
  assert diff < 1e-5, diff
  # The file belongs to its examples: another set is refused, naming file and counts.
  fewer = _only_labelled(setup["features"], setup["labelled"])
  with pytest.raises(ValueError, match=r"teacher_logits_file=.*330 examples.*has 240"):
    distill_data.read_teacher_logits(path, fewer, setup["task"])


@pytest.mark.integration
def test_two_replicas_times_two_accumulation_equal_one_device(setup, on_the_fly, tmp_path):
  """On-the-fly teacher, transfer data, 2 steps of 8 examples on 2 replicas x 2 accumulation
  micro-batches: the one-device run's student."""
  trainer = _trainer(tmp_path, setup["student_config"], setup["task"], _distill(setup),
                     runtime="mirrored", gradient_accumulation_steps=2, **EXAMPLE_BATCHES)
  trainer.train(setup["features"], stop_after_steps=2)
  initial, fly, _ = on_the_fly
  assert _max_diff(initial, fly) > 1e-3  # trained
  diff = _max_diff(_weights(trainer), fly)
  assert diff < 2e-5, diff


def _launch(backend, spec, log_dir, timeout):
  """The spec's worker as 2 MultiWorkerMirrored processes or 2 horovodrun (gloo) ranks; the
  exit codes and each process's log tail."""
  command = [sys.executable, "-m", "bert_tf.testing.train_worker", json.dumps(spec)]
  if backend == "horovod":
    result = subprocess.run(launch.horovodrun(command), capture_output=True, text=True,
                            timeout=timeout, cwd=launch.ROOT)
    return [result.returncode], [result.stdout[-3000:] + result.stderr[-3000:]]
  procs = launch.start_workers(command, log_dir=log_dir)
  codes = launch.wait_all(procs, timeout=timeout)
  return codes, [launch.read_log(log_dir, i)[-3000:] for i in range(2)]


@pytest.mark.distributed
@pytest.mark.timeout(240)  # backstop over the launch's own limit
@pytest.mark.parametrize("backend", ["multi_worker_mirrored", "horovod"])
def test_two_processes_equal_one_device(backend, setup, on_the_fly, tmp_path):
  """2 MultiWorkerMirrored processes on localhost, or 2 Horovod ranks (horovodrun, gloo), each
  with 4 of the 8 examples of a step (the accumulation split is the test above's: it doubles
  the compile time here), on-the-fly teacher (cased vocabulary) and transfer data: the
  one-device student after 2 steps. The same launch checks that --skip_* input counts reach
  the chief's metrics as the total over the workers (worker i counts i + 1)."""
  if backend == "horovod":
    pytest.importorskip("horovod.tensorflow", reason="Horovod not installed "
                        "(scripts/bootstrap.sh --horovod)")
  initial, fly, _ = on_the_fly
  np.savez(tmp_path / "initial.npz", **{f"w{i}": w for i, w in enumerate(initial)})
  setup["student_config"].to_json_file(tmp_path / "student_config.json")
  setup["teacher_config"].to_json_file(tmp_path / "teacher_config.json")
  out = tmp_path / "student"
  spec = {"distribution": backend, "runs": [], "result_dir": str(tmp_path),
          "distill": dict(
              setup["paths"], output_dir=str(out), teacher_dir=setup["teacher_dir"],
              student_config=str(tmp_path / "student_config.json"),
              teacher_config=str(tmp_path / "teacher_config.json"),
              run={**RUN, **EXAMPLE_BATCHES},
              initial=str(tmp_path / "initial.npz"), steps=2)}
  began = time.monotonic()
  codes, logs = _launch(backend, spec, str(tmp_path), timeout=180)
  assert set(codes) == {0}, "\n".join(logs)
  got = np.load(tmp_path / "distill.npz")
  diff = _max_diff([got[f"w{i}"] for i in range(len(got.files))], fly)
  print(f"distillation, 2 {backend} processes: max |student weight diff| vs one device "
        f"{diff:.2e} (update {_max_diff(initial, fly):.2e}); launch "
        f"{time.monotonic() - began:.0f}s")
  print("\n".join(line for log in logs for line in log.splitlines() if "distill:" in line))
  assert _max_diff(initial, fly) > 1e-3  # trained
  assert diff < 2e-5, diff
  records = [json.loads(line) for line in open(out / "train_metrics.jsonl")]
  assert records and all(r["corrupt_files_skipped"] == 3 for r in records), records
  assert records[-1]["step"] == 2 and records[-1]["soft_loss"] > 0


@pytest.mark.unit
def test_bad_settings_are_refused_naming_the_flag(setup, tmp_path):
  with pytest.raises(ValueError, match=r"--distill_alpha=1.5: expected a value in \[0, 1\]"):
    DistillConfig(alpha=1.5)
  with pytest.raises(ValueError, match=r"--distill_temperature=0.0: expected a value > 0"):
    DistillConfig(temperature=0.0)
  with pytest.raises(FileNotFoundError, match="teacher_logits_file=.*missing.npz: no such file"):
    distill_data.read_teacher_logits(str(tmp_path / "missing.npz"), setup["features"],
                                     setup["task"])


@pytest.mark.integration
def test_fp16_and_recompute_run_the_teacher_under_the_students_policy(setup, tmp_path):
  trainer = _trainer(tmp_path, setup["student_config"], setup["task"], _distill(setup),
                     dtype="fp16", recompute="full")
  metrics = trainer.train(setup["features"], stop_after_steps=2)
  teacher = trainer.task.teacher
  assert teacher.encoder.compute_dtype == "float16" and not teacher.trainable_variables
  assert all(v.dtype == tf.float32 for v in teacher.variables)
  assert np.isfinite(metrics["soft_loss"]) and metrics["soft_loss"] > 0
  assert trainer.loss_scale() > 1


def _classifier_checkpoint(path, config, seed=1):
  """One of our classifier runs' checkpoints (``model/...``) of a 3-label ``config`` model."""
  model = BertClassifier(BertEncoder(config, seed=seed), 3)
  return model, tf.train.Checkpoint(model=model).write(str(path / "ckpt-1"))


@pytest.mark.unit
@pytest.mark.parametrize("kind,wrong,listed", [
    ("deeper", dict(num_hidden_layers=3), r"unexpected in checkpoint: 16 \['model/encoder/"
                                           r"blocks/2/"),
    ("wider", dict(intermediate_size=38), r"mis-shaped: 6 \['model/encoder/blocks/0/"
                                          r"intermediate/bias: checkpoint \[38\] vs teacher "
                                          r"\[37\]")])
def test_teacher_checkpoint_of_another_shape_is_refused_naming_file_and_config(
    kind, wrong, listed, tmp_path):
  """A deeper teacher once loaded silently (its extra layers dropped); a wider one raised
  TensorFlow's bare shape error. Both: one error with the file, the config and the names."""
  _, prefix = _classifier_checkpoint(tmp_path, tiny_config(**wrong))
  teacher = BertClassifier(BertEncoder(tiny_config()), 3)
  with pytest.raises(checkpoints.CheckpointMismatchError) as error:
    distillation.load_teacher(prefix, teacher)
  message = str(error.value)
  assert message.startswith(f"--teacher_init_checkpoint={prefix} does not match "
                            "--teacher_bert_config_file (vocab_size=99, hidden_size=32, "
                            "num_hidden_layers=2, intermediate_size=37"), (kind, message)
  assert re.search(listed, message), message
  # The same config loads, head included.
  source, prefix = _classifier_checkpoint(tmp_path / "same", tiny_config())
  assert distillation.load_teacher(prefix, teacher) == "classifier"
  np.testing.assert_array_equal(teacher.classifier.output_weights.numpy(),
                                source.classifier.output_weights.numpy())


@pytest.mark.unit
def test_hugging_face_classifier_folder_is_a_teacher_and_a_bare_encoder_is_not(tmp_path):
  config = tiny_config()
  source = BertClassifier(BertEncoder(config, seed=1), 3)
  hf.save_hf_weights(source, str(tmp_path / "model.safetensors"))
  teacher = BertClassifier(BertEncoder(config, seed=2), 3)
  assert distillation.load_teacher(str(tmp_path), teacher) == "hf"
  features = {k: tf.constant(v) for k, v in _tiny_inputs(config).items()}
  np.testing.assert_array_equal(teacher(features)["logits"].numpy(),
                                source(features)["logits"].numpy())
  # Another number of labels: the mis-shaped head is named, with the teacher's config.
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match=r"teacher_bert_config_file \(.*\) with the task's 2 label\(s\)"
                           r"(.|\n)*classifier.weight: file \[3, 32\] vs model \[2, 32\]"):
    distillation.load_teacher(str(tmp_path), BertClassifier(BertEncoder(config), 2))
  hf.save_hf_weights(source.encoder, str(tmp_path / "model.safetensors"))  # no head
  with pytest.raises(checkpoints.CheckpointMismatchError, match="not a fine-tuned classifier"):
    distillation.load_teacher(str(tmp_path), teacher)


def _tiny_inputs(config, batch=3, seq=7):
  rng = np.random.default_rng(0)
  ids = rng.integers(1, config.vocab_size, (batch, seq)).astype(np.int32)
  return dict(input_ids=ids, input_mask=np.ones_like(ids), segment_ids=np.zeros_like(ids))


@pytest.mark.unit
@pytest.mark.parametrize("skip_malformed", [False, True])
def test_transfer_rows_are_read_without_their_labels(skip_malformed, tmp_path):
  """Unlabelled transfer files: a blank or placeholder label column, or none (SST-2), and
  XNLI's own training reader: every row kept, labels None; the gold file is still checked."""
  log = lambda *_: None  # noqa: E731
  gold = write_glue_task(tmp_path, "sst2")
  for name, header, rows in (("blank", ["sentence", "label"], [["one", ""], ["two", "?"]]),
                             ("none", ["sentence"], [["one"], ["two"]])):
    write_tsv(tmp_path / name / "train.tsv", header, rows)
    examples, labelled = distill_data.read_examples(
        data.make_task("sst2"), gold, str(tmp_path / name), skip_malformed, log)
    assert labelled == 2 and [e.label for e in examples] == ["1", "0", None, None], name
    assert [e.text_a for e in examples[2:]] == ["one", "two"]
  for name, label in (("xnli_gold", "neutral"), ("xnli_transfer", "unlabelled")):
    write_tsv(tmp_path / name / "multinli" / "multinli.train.en.tsv",
              ["premise", "hypo", "label"], [[f"p {name}", "h", label]])
  examples, labelled = distill_data.read_examples(
      data.make_task("xnli", "en", "en"), str(tmp_path / "xnli_gold"),
      str(tmp_path / "xnli_transfer"), skip_malformed, log)
  assert labelled == 1 and [(e.text_a, e.label) for e in examples] == [
      ("p xnli_gold", "neutral"), ("p xnli_transfer", None)]
