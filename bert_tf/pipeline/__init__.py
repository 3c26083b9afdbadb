"""Pipeline parallelism (PipeDream-style): a conf.json layout, gpipe / 1f1b / 2bw schedules and
an engine that places each stage's forward, backward and update on its own device.

``conf`` parses and checks conf.json, ``schedule`` is the framework-free schedule generator (and
a discrete-event simulation of it), ``stages`` splits a BERT model into stage functions and
``engine`` runs the unrolled schedule in one ``tf.function`` per step. Nothing here is imported
by the rest of bert_tf unless pipeline mode is asked for.
"""
