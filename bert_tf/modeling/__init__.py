"""BERT model: encoder, heads and task models (tf_keras)."""
from bert_tf.modeling.encoder import RECOMPUTE_MODES, BertEncoder
from bert_tf.modeling.heads import ClassifierHead, MaskedLMHead, NextSentenceHead
from bert_tf.modeling.losses import pretraining_losses
from bert_tf.modeling.models import BertClassifier, BertPretrainer

__all__ = ["RECOMPUTE_MODES", "BertEncoder", "BertPretrainer", "BertClassifier",
           "MaskedLMHead", "NextSentenceHead", "ClassifierHead", "pretraining_losses"]
