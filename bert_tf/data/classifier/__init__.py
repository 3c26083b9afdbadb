"""Sentence(-pair) classification data: XNLI and GLUE readers, features, token-budget batches.

Reading order: ``read_tsv`` (rows with file:line errors), the task table ``make_task`` (which
file, which columns, which labels), ``Task.examples`` (one split as named example sets),
``featurize`` (google's [CLS] a [SEP] b [SEP] ids), ``plan_steps`` (examples -> micro-batches
-> optimizer steps, by count or by token budget) and ``make_dataset`` (the plan as tf.data).

Modules:
  reading   read_tsv, FileSpec (where a file's fields are), Example, ReadStats, errors
  tasks     Task, XnliTask, the GLUE/MNLI table and make_task for --task_name
  features  Features (ragged ids), featurize, load_features (with its on-disk cache)
  batching  micro_batches, plan_steps, assemble, make_dataset, planned_dataset, stack_parts

Why not Model Garden's ``official.nlp.data.classifier_data_lib`` processors (checked, 2.20):
its GLUE processors (CoLA, MNLI, MRPC, QNLI, QQP, RTE, SST-2, STS-B, WNLI) read TFDS, not the
official GLUE files; its ``XnliProcessor`` expects XNLI-1.0 and XNLI-MT-1.0 in one folder,
ignores the language for dev (every language mixed, no per-language result), and like its base
``_read_tsv`` reports neither the file nor the line of a bad row. Only its language list is
reused. What it gets right and is kept: TSV without quote handling (``quotechar=None``), the
column choices of google's run_classifier.py, XNLI-MT's ``contradictory`` label read as
``contradiction``.

File layouts (as distributed):
  XNLI:  XNLI-1.0/xnli.{dev,test}.tsv (columns by header: language, gold_label, sentence1,
         sentence2) and XNLI-MT-1.0/multinli/multinli.train.{lang}.tsv (premise, hypo, label).
         ``data_dir`` may be either folder or their parent.
  GLUE:  the folder of one task as download_glue_data.py writes it (e.g. glue_data/MRPC).
"""
from bert_tf.data.classifier.batching import (PAD_MULTIPLE, assemble, make_dataset,
                                              micro_batches, plan_steps, planned_dataset,
                                              round_up, stack_parts)
from bert_tf.data.classifier.features import (Features, cache_key, featurize, file_identity,
                                              load_features)
from bert_tf.data.classifier.reading import (Example, FileSpec, MalformedRowError, ReadStats,
                                             read_tsv)
from bert_tf.data.classifier.tasks import (GLUE_TASKS, NLI_LABELS, TASK_NAMES, XNLI_LANGUAGES,
                                           Task, XnliTask, make_task, parse_languages)
