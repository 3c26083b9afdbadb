"""Fine-tuning's public names, kept where callers have found them (``finetuning.
ClassifierTrainer``); the trainer lives in ``bert_tf.training.classification``."""
from bert_tf.configs import FinetuneConfig
from bert_tf.training.classification import ClassificationTask, ClassifierTrainer
from bert_tf.training.metrics import compute_metrics, f1_score, matthews_corrcoef

__all__ = ["FinetuneConfig", "ClassificationTask", "ClassifierTrainer", "compute_metrics",
           "f1_score", "matthews_corrcoef"]
