"""The measuring tools' shared parts, behind ``max_batch_size.py`` and ``benchmarks/``.

  max_batch        largest batch under a memory budget: doubling + bisection, each try in a
                   fresh ``memory_worker`` process held to the budget
  memory_worker    one try: the real pretraining step at one batch, its peak memory and call
                   times (``python -m bert_tf.tools.memory_worker '<json spec>'``)
  scaling_worker   one process of the scaling benchmark: examples/s of the real train loop
                   under a distribution (``python -m bert_tf.tools.scaling_worker '<json>'``)
  probe            the real ``Pretrainer`` loop on in-memory data, through its public API
  synthetic        random google-format pretraining features (NumPy, no TensorFlow)
  memory_stats     a process's resident memory and TensorFlow's allocator peak where kept
  launch           worker commands, their ``RESULT`` line, processes run under a deadline

Modules a parent process imports (``max_batch``, ``launch``, ``synthetic``,
``memory_stats``) do not import TensorFlow: a search's parent stays small, and its children
measure from a clean process.
"""
