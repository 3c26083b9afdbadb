"""extract_features: google's JSON format and packing, values equal to the encoder's layers,
from a google TF1 checkpoint and from our TF2 checkpoint, library and CLI."""
import json

import bert_tf  # noqa: F401  (before tensorflow: selects Keras 2)
import numpy as np
import pytest
import tensorflow as tf
from official.nlp.tools import tokenization as reference

from bert_tf import checkpoints, features, tokenization
from bert_tf.testing.launch import run_script
from bert_tf.testing.tiny import dropout_config

LINES = ["The quick brown fox jumps over the lazy dog.",
         "Who was Jim Henson ? ||| Jim Henson was a puppeteer",
         "Unaffable résumé naïve café " * 8 + "||| short",
         "a ||| " + "long second text that keeps going " * 6,
         ""]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("features")
  words = sorted({w for line in LINES for w in reference.BasicTokenizer().tokenize(line)})
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words[:-3] + ["##s", "un", "##aff"]
  (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
  config = dropout_config(0.1, vocab_size=len(vocab), num_hidden_layers=3)
  config.to_json_file(str(root / "bert_config.json"))
  tf.random.set_seed(3)
  encoder = features.load_encoder(config, None)
  google = checkpoints.export_google_checkpoint(encoder, config, str(root / "google"))
  ours = tf.train.Checkpoint(encoder=encoder).save(str(root / "ours" / "ckpt"))
  (root / "input.txt").write_text("\n".join(LINES) + "\n")
  return root, config, encoder, google, ours


def _reference_tokens(vocab_file, line, max_seq_length):
  """google's convert_examples_to_features tokens, with google's tokenizer."""
  tok = reference.FullTokenizer(vocab_file, do_lower_case=True)
  a, b = (line.split(" ||| ") + [None])[:2] if " ||| " in line else (line, None)
  ta, tb = tok.tokenize(a), tok.tokenize(b) if b is not None else None
  if tb is not None:
    while len(ta) + len(tb) > max_seq_length - 3:
      (ta if len(ta) > len(tb) else tb).pop()
  else:
    ta = ta[:max_seq_length - 2]
  return ["[CLS]"] + ta + ["[SEP]"] + (tb + ["[SEP]"] if tb else [])


@pytest.mark.unit
@pytest.mark.parametrize("which", ["google", "ours"])
def test_values_and_tokens(setup, which):
  root, config, encoder, google, ours = setup
  vocab_file = str(root / "vocab.txt")
  tokenizer = tokenization.BertTokenizer(vocab_file)
  loaded = features.load_encoder(config, google if which == "google" else ours)
  records = list(features.extract_features(LINES, tokenizer, loaded, [-1, 0, -2], 24,
                                           batch_size=2))
  assert [r["linex_index"] for r in records] == list(range(len(LINES)))
  for line, record in zip(LINES, records):
    tokens = [f["token"] for f in record["features"]]
    assert tokens == _reference_tokens(vocab_file, line, 24)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    segs = np.cumsum([0] + [t == "[SEP]" for t in tokens[:-1]]).clip(0, 1)
    out = encoder({"input_ids": tf.constant([ids]), "input_mask": tf.ones([1, len(ids)], tf.int32),
                   "segment_ids": tf.constant([segs], tf.int32)})["encoder_outputs"]
    for j, layer in enumerate(record["features"][0]["layers"]):
      assert layer["index"] == [-1, 0, -2][j]
    got = np.array([[l["values"] for l in f["layers"]] for f in record["features"]])  # [T, L, H]
    want = np.stack([out[i][0].numpy() for i in (-1, 0, -2)], axis=1)
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.unit
def test_bad_layer_index(setup):
  root, config, encoder, google, _ = setup
  tokenizer = tokenization.BertTokenizer(str(root / "vocab.txt"))
  with pytest.raises(ValueError, match="layer index -4 out of range for 3 layers"):
    list(features.extract_features(LINES, tokenizer, encoder, [-4], 16))


@pytest.mark.integration
def test_cli_writes_google_json(setup):
  root, config, encoder, google, _ = setup
  out = root / "out.jsonl"
  proc = run_script("extract_features.py", [
      f"--input_file={root / 'input.txt'}", f"--output_file={out}",
      f"--vocab_file={root / 'vocab.txt'}", f"--bert_config_file={root / 'bert_config.json'}",
      f"--init_checkpoint={google}", "--layers=-1,-2", "--max_seq_length=32", "--batch_size=4"],
      timeout=180)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = [json.loads(l) for l in out.read_text().splitlines()]
  assert len(records) == len(LINES)
  first = records[0]["features"][0]
  assert first["token"] == "[CLS]" and [l["index"] for l in first["layers"]] == [-1, -2]
  assert len(first["layers"][0]["values"]) == config.hidden_size
