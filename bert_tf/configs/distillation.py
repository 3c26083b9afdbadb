"""Knowledge distillation settings (``run_classifier.py --distill_*`` / ``--teacher_*``)."""
from __future__ import annotations

import dataclasses
from typing import Optional

from bert_tf.configs.model import BertConfig


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  """How a student learns from a teacher (Hinton et al. 2015; Turc et al. 2019).

  Per example: ``alpha * CE(gold) + (1 - alpha) * T^2 * CE(softmax(t / T), softmax(s / T))``
  (regression: ``alpha * (s - y)^2 + (1 - alpha) * (s - t)^2``); transfer examples (no gold
  label) carry the soft term alone at full weight. Summed and divided by the number of real
  examples in the global step.

  Attributes:
    alpha: weight of the gold-label loss, in [0, 1]; 0 = soft labels only, 1 = plain
      fine-tuning.
    temperature: T > 0, softens both distributions; the soft term is scaled by T^2 so its
      gradients keep their size as T changes.
    teacher_config: the teacher's encoder (on-the-fly teacher or writing its logits).
    teacher_checkpoint: a fine-tuned classifier of the same task (google TF1 or ours).
    teacher_vocab_file, teacher_do_lower_case: the teacher's tokenizer (None: the student's).
    teacher_logits_file: precomputed teacher logits (``--write_teacher_logits``) instead of
      an on-the-fly teacher.
    transfer_data_dir: unlabelled transfer examples in the task's training format.
  """
  alpha: float = 0.5
  temperature: float = 1.0
  teacher_config: Optional[BertConfig] = None
  teacher_checkpoint: Optional[str] = None
  teacher_vocab_file: Optional[str] = None
  teacher_do_lower_case: Optional[bool] = None
  teacher_logits_file: Optional[str] = None
  transfer_data_dir: Optional[str] = None

  def __post_init__(self):
    if not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"--distill_alpha={self.alpha}: expected a value in [0, 1] (the weight "
                       "of the gold-label loss)")
    if not self.temperature > 0:
      raise ValueError(f"--distill_temperature={self.temperature}: expected a value > 0")

  @property
  def on_the_fly(self) -> bool:
    """The teacher runs in the training step (no precomputed logits file)."""
    return self.teacher_logits_file is None
