"""absl flag definitions for the command-line tools; the only package that imports absl.flags.

Import it under an alias (``from flags import pretraining as pretraining_flags``), never next to
a bare ``from absl import flags``, so the two never shadow each other.
"""
