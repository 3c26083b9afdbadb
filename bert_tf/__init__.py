"""bert_tf: BERT pre-training and fine-tuning in TensorFlow 2 with Keras 2 (tf_keras).

Importing this package selects Keras 2 for TensorFlow (``TF_USE_LEGACY_KERAS=1``). This is the
one place the variable is set; it must happen before TensorFlow first resolves ``tf.keras``,
so entry points import ``bert_tf`` before ``tensorflow``. Library code always imports
``tf_keras`` explicitly rather than relying on ``tf.keras``.
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ INFO lines drown the training log; warnings and errors still show.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
