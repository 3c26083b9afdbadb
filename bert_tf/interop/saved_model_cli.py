"""``saved_model_cli`` with tensorflow-text's ops registered: ``python -m
bert_tf.interop.saved_model_cli run --dir=... --signature_def=text ...``.

Our SavedModels tokenize text in the graph with tensorflow-text's ops (``NormalizeUTF8``,
``FastWordpieceTokenizeWithOffsets``, ...). A process loads such a graph only after
``import tensorflow_text`` has registered them, and TensorFlow's own ``saved_model_cli`` has
no option to load op libraries: ``show`` works as it is, ``run`` needs this wrapper (Python
callers: ``import tensorflow_text`` before ``tf.saved_model.load``; TF Serving: a build with
tensorflow-text's ops).
"""
import sys


def main():
  import tensorflow_text  # noqa: F401  (registers the ops)
  from tensorflow.python.tools import saved_model_cli
  sys.argv[0] = "saved_model_cli"
  return saved_model_cli.main()


if __name__ == "__main__":
  sys.exit(main())
