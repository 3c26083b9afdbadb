"""Tiny BERT configs for tests. Odd sizes (DESIGN.md §4) catch transposed or mixed-up
dimensions: batch 13, sequence 7, vocab 99, hidden 32, 4 heads, inner 37."""
from bert_tf.configs import BertConfig

BATCH, SEQ, VOCAB, HIDDEN, HEADS, INNER = 13, 7, 99, 32, 4, 37
# Training runs (builders.pretrainer): a global batch of 8 sequences of 16, 3 predictions each.
TRAIN_BATCH, TRAIN_SEQ, TRAIN_PREDICTIONS = 8, 16, 3


def tiny_config(**overrides) -> BertConfig:
  """Two layers, no dropout (so runs compare exactly); any BertConfig field overrides."""
  values = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=2,
                num_attention_heads=HEADS, intermediate_size=INNER, max_position_embeddings=64,
                type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  values.update(overrides)
  return BertConfig(**values)


def dropout_config(rate: float = 0.1, **overrides) -> BertConfig:
  """``tiny_config`` with hidden and attention dropout ``rate``."""
  return tiny_config(hidden_dropout_prob=rate, attention_probs_dropout_prob=rate, **overrides)


def classifier_config(vocab_size: int, dropout: float = 0.1, **overrides) -> BertConfig:
  """Twice as wide, for fine-tuning runs that must learn (the XNLI-format sample)."""
  return dropout_config(dropout, vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                        **overrides)
