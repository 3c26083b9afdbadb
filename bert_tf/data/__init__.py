"""Data: pretraining TFRecords (``pretraining`` creates them, ``pretraining_input`` reads them),
classification tasks and batches (``classifier``), raw prose -> google's input format
(``text``). The demo data generators live apart, in ``demo``."""
