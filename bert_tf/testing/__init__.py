"""The test harness: what tests, workers, scripts and benchmarks build their runs from.

  tiny.py               the tiny odd-sized BERT config (DESIGN.md §4) and its variants
  synthetic.py          random features: pretraining (google's names), classification
  numerics.py           pretraining loss and gradients, max |difference| assertions
  builders.py           a Pretrainer or ClassifierTrainer with test defaults, keyword overrides
  files.py              google-format TFRecords, small GLUE/XNLI files, strict metrics reader
  model_garden.py       Model Garden's encoder given our weights (the independent reference)
  launch.py             subprocesses with hard timeouts: scripts, MWMS workers, horovodrun
  train_worker.py       python -m bert_tf.testing.train_worker SPEC (a multi-process run)
  kill_harness.py       python -m bert_tf.testing.kill_harness (forks launches to SIGKILL)
  horovod_allreduce.py  python -m bert_tf.testing.horovod_allreduce (under horovodrun)
  elastic_job.py        Horovod elastic on localhost: discovery script, horovodrun, traces

Never imported by library code. Nothing here imports pytest: assertions are plain ``assert``.
"""
