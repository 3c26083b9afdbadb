"""run_squad.py's configuration: the run (``SquadConfig``, a ``FinetuneConfig`` plus google's
answer post-processing settings) and the data (``SquadInputConfig``: which files, how they
are tokenised and cut into doc spans)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from bert_tf.configs.run import FinetuneConfig


@dataclasses.dataclass(frozen=True)
class SquadConfig(FinetuneConfig):
  """Fine-tuning and predicting SQuAD spans (google's defaults)."""
  max_seq_length: int = 384
  n_best_size: int = 20                 # n-best spans kept per question (nbest_predictions.json)
  max_answer_length: int = 30           # longest answer in word pieces
  null_score_diff_threshold: float = 0.0  # 2.0: predict "" if null - best span > this

  def __post_init__(self):
    super().__post_init__()
    for name in ("n_best_size", "max_answer_length"):
      if getattr(self, name) < 1:
        raise ValueError(f"SquadConfig: {name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class SquadInputConfig:
  """run_squad.py's data: SQuAD JSON files and how to make features of them."""
  vocab_file: str
  train_file: Optional[str] = None
  predict_file: Optional[str] = None
  do_lower_case: bool = True
  version_2_with_negative: bool = False
  doc_stride: int = 128
  max_query_length: int = 64
  skip_empty_contexts: bool = False
