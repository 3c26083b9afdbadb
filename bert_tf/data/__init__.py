"""Data: pretraining TFRecords (create and read), raw text -> google's input format, demo data."""
