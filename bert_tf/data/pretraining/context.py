"""What instance creation runs on: the options (``PretrainingDataConfig``) and the vocabulary
facts (``PretrainingContext``), one object passed to every worker-side function.

Worker side: no TensorFlow import here (spawned workers import this module).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class PretrainingDataConfig:
  """google's create_pretraining_data options (same names and defaults) plus scale options."""
  max_seq_length: int = 128
  max_predictions_per_seq: int = 20
  random_seed: int = 12345
  dupe_factor: int = 10
  masked_lm_prob: float = 0.15
  short_seq_prob: float = 0.1
  do_whole_word_mask: bool = False
  num_workers: int = 0  # 0: all cores, or 1 (this process) for a small job (writer.py)
  documents_per_chunk: int = 20000
  # True: draw every random number exactly as the reference does (same records for the same
  # seed on a one-chunk corpus with one worker; slower). False: masks drawn with numpy in
  # batches, the same distribution (tested against the reference).
  exact_reference_rng: bool = False

  def __post_init__(self):
    if self.max_seq_length < 5:
      raise ValueError(f"max_seq_length must be >= 5 ([CLS] a [SEP] b [SEP]), got {self.max_seq_length}")
    if self.max_predictions_per_seq < 0 or self.dupe_factor < 1 or self.documents_per_chunk < 1:
      raise ValueError("max_predictions_per_seq must be >= 0, dupe_factor and "
                       f"documents_per_chunk >= 1: got {self}")
    for name in ("masked_lm_prob", "short_seq_prob"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class PretrainingContext:
  """The vocabulary and options that instance creation, masking and serialization read.

  Built once in the parent process (``from_tokenizer``) and pickled whole to each worker
  process, so the worker-side functions take it as an argument rather than reading module
  state.

  Attributes:
    vocab_ids: int token ids in vocab.txt order. google draws a random replacement with
      ``rng.choice(list(vocab.keys()))``; the ids in that order consume the same random
      numbers and give the same tokens.
    is_subword: bool per token id (index = id): a "##" continuation piece, for whole-word
      masking.
    cls_id, sep_id, mask_id: the ids of [CLS], [SEP] and [MASK].
    config: the ``PretrainingDataConfig``.
  """
  vocab_ids: tuple[int, ...]
  is_subword: tuple[bool, ...]
  cls_id: int
  sep_id: int
  mask_id: int
  config: PretrainingDataConfig

  @classmethod
  def from_tokenizer(cls, tokenizer, config: PretrainingDataConfig) -> "PretrainingContext":
    """From a ``bert_tf.tokenization.BertTokenizer``; ValueError if [CLS], [SEP] or [MASK]
    is missing from its vocabulary (naming the vocab file)."""
    vocab = tokenizer.vocab
    vocab_ids = tuple(vocab.values())
    is_subword = [False] * (max(vocab_ids) + 1)
    for token, i in vocab.items():
      is_subword[i] = token.startswith("##")
    for token in ("[CLS]", "[SEP]", "[MASK]"):
      if token not in vocab:
        raise ValueError(f"{tokenizer.vocab_file}: the vocabulary has no {token} token")
    return cls(vocab_ids, tuple(is_subword), vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"],
               config)
