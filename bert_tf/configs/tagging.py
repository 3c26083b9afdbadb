"""run_tagging.py's data configuration (the run itself is a ``FinetuneConfig``)."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TaggingInputConfig:
  """Which tagging task, where its CoNLL files are, how to read and tokenise them."""
  task_name: str                     # conll2003 | bio
  data_dir: str
  vocab_file: str
  do_lower_case: bool = False        # NER wants cased models
  label_column: int = -1             # the column holding the tag (negative: from the end)
  strict_tags: bool = True           # every tag is O, B-TYPE or I-TYPE
  doc_context: bool = False          # fill windows with the document's neighbouring tokens
  skip_malformed_rows: bool = False  # skip and count sentences with a bad line
  cache_features: bool = True        # keep tokenised windows in --output_dir/features
