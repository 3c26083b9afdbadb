"""SavedModels for serving, checked in a fresh process: a classifier trained in fp16 (our run
directory, exported through the library) and a cased encoder (a google checkpoint, exported
through export_model.py). Every signature against the Keras model (<= 1e-5); the text
signatures' ids against Model Garden's copy of google's FullTokenizer + convert_single_example;
``saved_model_cli show --all`` lists the signatures."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import save_file
from official.nlp.data import classifier_data_lib as google_data
from official.nlp.tools import tokenization as google_tokenization

from bert_tf import checkpoints
from bert_tf.interop import export
from bert_tf.modeling import BertEncoder
from bert_tf.testing.tiny import dropout_config
from bert_tf.vocab import RESERVED_TOKENS
from test_export import our_run_dir

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEQ = 12
WORDS = ("the quick brown fox jumps over lazy dog hello world is a not The Fox Hello "
         "héllo ! , . ? ##s ##ing ##ed ##ly 中").split()
TOKENS = list(RESERVED_TOKENS) + WORDS + list("abcdefghijklmnopqrstuvwxyz") + [
    "##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
PAIRS = [("The quick brown fox jumps.", "Hello world!"),
         ("Héllo, the LAZY dog is not quick; the fox jumps over the dog", "quickly, quickly!"),
         ("a", "the quick brown fox jumps over the lazy dog, hello hello world"),
         ("中 fox 中 dogs", ""), ("", "")]

# Runs in a new interpreter: nothing of the exporting process (its Keras objects, its traced
# functions) is reused; only the SavedModel directories are read.
SERVE = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer's ops, as any loader must)
args = json.load(open(sys.argv[1]))
ids, mask, segments = (np.array(args[k], np.int32) for k in ("ids", "mask", "segments"))
def example(i):
  feature = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=list(map(int, v))))
  return tf.train.Example(features=tf.train.Features(feature={
      "input_ids": feature(ids[i]), "input_mask": feature(mask[i]),
      "segment_ids": feature(segments[i])})).SerializeToString()
out = {}
for name, path in args["models"].items():
  loaded = tf.saved_model.load(path)
  s = loaded.signatures
  results = {
      "token_ids": s["token_ids"](input_word_ids=ids, input_mask=mask, input_type_ids=segments),
      "default": s["serving_default"](input_word_ids=ids, input_mask=mask,
                                       input_type_ids=segments),
      "example": s["serialized_example"](examples=tf.constant([example(i)
                                                               for i in range(len(ids))])),
      "pair": s["text_pair"](text_a=tf.constant(args["text_a"]),
                             text_b=tf.constant(args["text_b"])),
      "text": s["text"](text=tf.constant(args["text_a"]))}
  for sig, values in results.items():
    for key, value in values.items():
      out[f"{name}/{sig}/{key}"] = value.numpy()
np.savez(args["output"], **{k: v.astype(str) if v.dtype == object else v for k, v in out.items()})
"""


def write_vocab(path):
  path.write_text("".join(t + "\n" for t in TOKENS), encoding="utf-8")
  return str(path)


def google_features(vocab_file, lower, pairs):
  """Model Garden's copy of google's FullTokenizer and convert_single_example."""
  tokenizer = google_tokenization.FullTokenizer(vocab_file, do_lower_case=lower)
  rows = [google_data.convert_single_example(
      i, google_data.InputExample(str(i), a, b or None, label=0), None, SEQ, tokenizer)
      for i, (a, b) in enumerate(pairs)]
  return [np.array([getattr(r, k) for r in rows], np.int32)
          for k in ("input_ids", "input_mask", "segment_ids")]


def keras_outputs(source, ids, mask, segments):
  model = source.model if source.kind == "classifier" else source.model
  out = model({"input_ids": ids, "input_mask": mask, "segment_ids": segments}, training=False)
  if source.kind == "classifier":
    logits = out["logits"].numpy()
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return {"logits": logits, "probabilities": e / e.sum(-1, keepdims=True)}
  return {"pooled_output": out["pooled_output"].numpy(),
          "sequence_output": out["sequence_output"].numpy()}


def run(args, timeout=300):
  started = time.time()
  result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
  assert result.returncode == 0, result.stderr[-3000:]
  print(f"{args[1]}: {time.time() - started:.1f} s")
  return result.stdout


def test_saved_models_in_a_fresh_process(tmp_path):
  # With dropout, as trained: the export strips it (Keras' SavedModel tracing of training=True
  # would otherwise need dropout seeds).
  config = dropout_config(0.1, vocab_size=len(TOKENS))
  # Classifier, trained in fp16 (our run directory), exported through the library.
  our_run_dir(tmp_path / "run", "classifier", dtype="fp16", config=config, tokens=TOKENS)
  classifier = export.load_source(str(tmp_path / "run"))
  export.export(classifier, "savedmodel", str(tmp_path / "sm_classifier"), max_seq_length=SEQ)
  # Cased encoder from a google checkpoint, exported by the command.
  encoder = BertEncoder(config, seed=5)
  checkpoints.export_google_checkpoint(encoder, config, str(tmp_path / "google"))
  write_vocab(tmp_path / "google" / "vocab.txt")
  command = [sys.executable, "export_model.py", f"--checkpoint={tmp_path}/google/bert_model.ckpt",
             "--format=savedmodel", f"--output_dir={tmp_path}/sm_encoder", "--nodo_lower_case",
             f"--max_seq_length={SEQ}"]
  assert "exported encoder as savedmodel" in run(command)
  assert sorted(os.listdir(tmp_path / "sm_encoder")) == [
      "assets", "bert_config.json", "fingerprint.pb", "saved_model.pb", "variables", "vocab.txt"]
  cased = export.load_source(str(tmp_path / "google" / "bert_model.ckpt"), do_lower_case=False)

  lower_ids = google_features(str(tmp_path / "run" / "vocab.txt"), True, PAIRS)
  upper_ids = google_features(str(tmp_path / "google" / "vocab.txt"), False, PAIRS)
  single_ids = google_features(str(tmp_path / "run" / "vocab.txt"), True,
                               [(a, "") for a, _ in PAIRS])
  cased_single_ids = google_features(str(tmp_path / "google" / "vocab.txt"), False,
                                     [(a, "") for a, _ in PAIRS])
  assert (upper_ids[0] != lower_ids[0]).any()  # the casing changes ids
  args = {"ids": lower_ids[0].tolist(), "mask": lower_ids[1].tolist(),
          "segments": lower_ids[2].tolist(), "text_a": [a for a, _ in PAIRS],
          "text_b": [b for _, b in PAIRS], "output": str(tmp_path / "served.npz"),
          "models": {"classifier": str(tmp_path / "sm_classifier"),
                     "encoder": str(tmp_path / "sm_encoder")}}
  (tmp_path / "args.json").write_text(json.dumps(args))
  (tmp_path / "serve.py").write_text(SERVE)
  run([sys.executable, str(tmp_path / "serve.py"), str(tmp_path / "args.json")])
  served = dict(np.load(tmp_path / "served.npz"))

  worst = 0.0
  for name, source, text_ids, text_single_ids in (
      ("classifier", classifier, lower_ids, single_ids),
      ("encoder", cased, upper_ids, cased_single_ids)):
    for sig, ids in (("token_ids", lower_ids), ("default", lower_ids), ("example", lower_ids),
                     ("pair", text_ids), ("text", text_single_ids)):
      want = keras_outputs(source, *ids)
      for key, value in want.items():
        diff = np.abs(served[f"{name}/{sig}/{key}"] - value).max()
        worst = max(worst, diff)
        assert diff <= 1e-5, (name, sig, key, diff)
    for got, want in zip(("input_word_ids", "input_mask", "input_type_ids"), text_ids):
      np.testing.assert_array_equal(served[f"{name}/pair/{got}"], want)
    for got, want in zip(("input_word_ids", "input_mask", "input_type_ids"), text_single_ids):
      np.testing.assert_array_equal(served[f"{name}/text/{got}"], want)
  print(f"max |SavedModel - Keras| over all signatures: {worst:.2e}")
  logits = served["classifier/pair/logits"]
  names = np.array(["contradiction", "entailment", "neutral"])
  np.testing.assert_array_equal(served["classifier/pair/label_names"], np.tile(names, (5, 1)))
  np.testing.assert_array_equal(served["classifier/pair/predicted_label"],
                                names[logits.argmax(-1)])

  shown = run([os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "show",
               "--all", "--dir", str(tmp_path / "sm_classifier")])
  for signature in ("serving_default", "token_ids", "serialized_example", "text", "text_pair"):
    assert f"signature_def['{signature}']" in shown
  for output in ("logits", "probabilities", "label_names", "predicted_label", "input_word_ids"):
    assert f"outputs['{output}']" in shown


def test_command_names_a_safetensors_file_without_its_config(tmp_path):
  """TensorFlow's NotFoundError (no config.json beside the file) is a usage error, not a
  traceback."""
  save_file({"x": np.zeros([1], np.float32)}, str(tmp_path / "model.safetensors"))
  result = subprocess.run([sys.executable, "export_model.py",
                           f"--checkpoint={tmp_path}/model.safetensors", "--format=hf",
                           f"--output_dir={tmp_path}/out"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert result.returncode != 0
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  assert "model.safetensors" in result.stderr and "config.json" in result.stderr
