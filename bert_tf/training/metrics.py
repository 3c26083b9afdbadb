"""Classification metrics, as google's run_classifier reports them plus GLUE's own: accuracy
and loss, F1 (MRPC, QQP), Matthews correlation (CoLA), Pearson / Spearman (STS-B)."""
from __future__ import annotations

import math

import numpy as np


def softmax(logits):
  z = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def f1_score(labels, predictions, positive=1) -> float:
  tp = np.sum((predictions == positive) & (labels == positive))
  fp = np.sum((predictions == positive) & (labels != positive))
  fn = np.sum((predictions != positive) & (labels == positive))
  return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def matthews_corrcoef(labels, predictions) -> float:
  """Binary Matthews correlation (CoLA's metric); 0 when a margin is empty."""
  tp = float(np.sum((predictions == 1) & (labels == 1)))
  tn = float(np.sum((predictions == 0) & (labels == 0)))
  fp = float(np.sum((predictions == 1) & (labels == 0)))
  fn = float(np.sum((predictions == 0) & (labels == 1)))
  denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return (tp * tn - fp * fn) / denominator if denominator else 0.0


def compute_metrics(task, logits: np.ndarray, labels: np.ndarray) -> dict:
  """google's eval keys (eval_accuracy, eval_loss) plus the task's own metrics."""
  if task.is_regression:
    from scipy import stats
    scores = logits[:, 0]
    pearson = float(stats.pearsonr(scores, labels)[0]) if len(labels) > 1 else 0.0
    spearman = float(stats.spearmanr(scores, labels)[0]) if len(labels) > 1 else 0.0
    return {"eval_loss": float(np.mean((scores - labels) ** 2)), "eval_pearson": pearson,
            "eval_spearman": spearman, "eval_corr": (pearson + spearman) / 2}
  probabilities = softmax(logits.astype(np.float64))
  predictions = probabilities.argmax(-1)
  picked = probabilities[np.arange(len(labels)), labels]
  results = {"eval_accuracy": float(np.mean(predictions == labels)),
             "eval_loss": float(-np.mean(np.log(np.maximum(picked, 1e-30))))}
  if "f1" in task.metrics:
    results["eval_f1"] = f1_score(labels, predictions)
  if "mcc" in task.metrics:
    results["eval_mcc"] = matthews_corrcoef(labels, predictions)
  return results
