"""Weights and models in other formats: Hugging Face folders (``hf``, ``hf_config``), google
checkpoints (through ``bert_tf.checkpoints``), SavedModels for serving (``serving``) and the
export command's library (``export``)."""
