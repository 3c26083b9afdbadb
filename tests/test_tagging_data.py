"""Tagging data: CoNLL reading with file:line errors (each bad-input case, and skip-and-count),
word-to-sub-token alignment (split words, vanishing words, long sentences, document context)
and entity scoring against a hand-computed example."""
import os
import shutil

import numpy as np
import pytest

from bert_tf import tokenization
from bert_tf.data import tagging as data

pytestmark = pytest.mark.unit
SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "conll")


@pytest.fixture(scope="module")
def tokenizer():
  return tokenization.BertTokenizer(os.path.join(SAMPLE, "vocab.txt"), do_lower_case=False)


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_reads_documents_sentences_and_the_label_set():
  sentences = data.read_conll(os.path.join(SAMPLE, "train.txt"))
  assert len(sentences) == 80 and {s.document for s in sentences} == set(range(1, 9))
  assert sentences[0].words[:2] == ("Ahmed", "Rossi") and sentences[0].tags[:2] == (
      "B-PER", "I-PER")
  assert sentences[0].where.endswith("train.txt:3")
  assert data.label_list(sentences) == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG",
                                        "I-PER"]


def test_split_files_under_their_conll2003_names(tmp_path):
  for name, alias in (("train.txt", "eng.train"), ("dev.txt", "eng.testa"),
                      ("test.txt", "eng.testb")):
    shutil.copy(os.path.join(SAMPLE, name), tmp_path / alias)
  assert data.split_path(str(tmp_path), "dev").endswith("eng.testa")
  (tmp_path / "valid.txt").write_text("")
  assert data.split_path(str(tmp_path), "dev").endswith("valid.txt")
  os.remove(tmp_path / "eng.testb")
  with pytest.raises(FileNotFoundError, match="no test file .*test.txt, eng.testb"):
    data.split_path(str(tmp_path), "test")


BAD = {  # name: (file text, read_conll keywords, the error after "file:line: ")
    "columns": ("EU NNP B-NP B-ORG\nrejects VBZ B-VP\n", {},
                "2: expected 4 columns (word ... tag), got 3"),
    "unknown tag": ("EU NNP B-NP B-ORG\n", {"labels": ["O", "B-PER"]},
                    "1: tag 'B-ORG' is not in the training label set ['O', 'B-PER']"),
    "not BIO": ("EU NNP B-NP S-ORG\n", {},
                "1: tag 'S-ORG' is not BIO/IOB1 (expected O, B-TYPE or I-TYPE)"),
    "label column": ("EU B-ORG\n", {"task": "bio", "label_column": 5},
                     "1: --label_column=5 is outside the 2 columns"),
    "utf-8": (None, {}, "1: not valid UTF-8 (byte 0xff at column 3)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_file_and_line(tmp_path, case):
  text, kwargs, reason = BAD[case]
  path = tmp_path / "train.txt"
  if text is None:
    path.write_bytes(b"EU\xff NNP B-NP B-ORG\n")
  else:
    path.write_text(text)
  with pytest.raises(data.MalformedRowError) as error:
    data.read_conll(str(path), **kwargs)
  assert str(error.value) == f"{path}:{reason}"


def test_skip_malformed_drops_whole_sentences_and_counts_them(tmp_path):
  path = _write(tmp_path / "x.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nsays VBZ B-VP\n"
                "\nPeter NNP B-NP B-PER\n\nBonn NNP B-NP E-LOC\n")
  stats = data.ReadStats()
  sentences = data.read_conll(path, skip_malformed=True, stats=stats)
  assert [s.words for s in sentences] == [("Peter",)]
  assert (stats.rows, stats.skipped) == (3, 2)
  assert stats.first_skipped[0].startswith(f"{path}:4: expected 4 columns")
  assert data.read_conll(path, skip_malformed=True, strict=False)[-1].tags == ("E-LOC",)
  # A line that is not UTF-8 drops its sentence too (not just the line).
  path = tmp_path / "y.txt"
  path.write_bytes(b"EU NNP B-NP B-ORG\nsa\xffys VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
                   b"\nBonn NNP B-NP B-LOC\nis\xff VBZ B-VP O\n")
  stats = data.ReadStats()
  assert [s.words for s in data.read_conll(str(path), skip_malformed=True, stats=stats)] == [
      ("Peter",)]
  assert stats.first_skipped == [f"{path}:2: not valid UTF-8", f"{path}:7: not valid UTF-8"]
  assert (stats.rows, stats.skipped) == (3, 2)


def test_bio_task_takes_any_column_count_and_a_label_column(tmp_path):
  path = _write(tmp_path / "x.txt", "Peter\tx\tB-PER\tNNP\nBonn\tx\tB-LOC\tNNP\n")
  (sentence,) = data.read_conll(path, task="bio", label_column=2)
  assert sentence.words == ("Peter", "Bonn") and sentence.tags == ("B-PER", "B-LOC")


def _sentence(words, tags, document=0):
  return data.Sentence(tuple(words), tuple(tags), document, "x:1")


def test_first_sub_token_carries_the_label_and_vanished_words_have_none(tokenizer):
  ids = {"O": 0, "B-LOC": 1, "B-PER": 2, "I-PER": 3}
  words = ["Olga", "Petrova", "\u200b", "visited", "Berlin", "\x7f"]
  tags = ["B-PER", "I-PER", "O", "O", "B-LOC", "B-PER"]
  assert tokenizer.tokenize("Petrova") == ["Petro", "##va"] and not tokenizer.tokenize("\u200b")
  f = data.featurize([_sentence(words, tags)], tokenizer, 16, ids)
  assert tokenizer.convert_ids_to_tokens(f.ids) == [
      "[CLS]", "Olga", "Petro", "##va", "visited", "Ber", "##lin", "[SEP]"]
  assert f.labels.tolist() == [-1, 2, 3, -1, 0, 1, -1, -1]
  assert f.word_ids.tolist() == [-1, 0, 1, -1, 3, 4, -1, -1]
  assert f.vanished.tolist() == [2, 5] and f.num_words == 6
  positions, word_ids = f.positions(0)
  assert positions.tolist() == [1, 2, 4, 5] and word_ids.tolist() == [0, 1, 3, 4]
  batch = data.assemble(f, [np.array([0])], pad_to=16)
  assert batch["label_weights"][0, 0].tolist() == [0, 1, 1, 0, 1, 1] + [0] * 10
  assert batch["input_mask"][0, 0].sum() == 8 and batch["example_index"].tolist() == [[0]]


def test_long_sentences_split_at_word_boundaries_and_document_context(tokenizer):
  ids = {"O": 0, "B-LOC": 1}
  long = _sentence(["Berlin", "Paris", "Berlin", "Oslo", "Berlin"], ["B-LOC"] * 5, 1)
  before, after = (_sentence(["Lima"], ["B-LOC"], 1), _sentence(["Cairo", "Oslo"], ["O"] * 2, 1))
  # 8 tokens of room: Ber ##lin Paris Ber ##lin Oslo | Ber ##lin
  f = data.featurize([long], tokenizer, 8, ids)
  assert f.lengths.tolist() == [8, 4] and f.split_sentences == 1
  assert f.window_sentence.tolist() == [0, 0]
  assert [f.positions(w)[1].tolist() for w in range(2)] == [[0, 1, 2, 3], [4]]
  # With context: the window around "Cairo Oslo" takes the tokens before it.
  f = data.featurize([before, long, after], tokenizer, 8, ids, doc_context=True)
  tokens = lambda w: tokenizer.convert_ids_to_tokens(  # noqa: E731
      f.ids[f.offsets[w]:f.offsets[w + 1]])
  assert tokens(0) == ["[CLS]", "Lima", "Ber", "##lin", "Paris", "Ber", "##lin", "[SEP]"]
  assert f.positions(0)[0].tolist() == [1]  # labels only on the window's own sentence
  assert tokens(3)[-3:] == ["Cairo", "Oslo", "[SEP]"] and f.positions(3)[0].tolist() == [5, 6]
  assert data.context_sizes(10, 1, 6) == (5, 1) and data.context_sizes(2, 10, 6) == (2, 4)


def test_entity_scores_match_a_hand_computed_example():
  gold = [["B-PER", "I-PER", "O", "B-LOC", "O"],
          ["I-ORG", "I-ORG", "O", "I-PER", "B-PER"],   # IOB1: chunks start at I-
          ["O", "B-MISC"]]
  predicted = [["B-PER", "I-LOC", "O", "B-LOC", "O"],  # B-PER broken by an I-LOC
               ["I-ORG", "I-ORG", "O", "I-PER", "I-PER"],
               ["O", "O"]]
  # By hand. Gold chunks: PER[0,2) LOC[3,4) | ORG[0,2) PER[3,4) PER[4,5) | MISC[1,2): 6.
  # Predicted: PER[0,1) LOC[1,2) LOC[3,4) | ORG[0,2) PER[3,5): 5. Correct: LOC[3,4), ORG[0,2).
  scores = data.entity_scores(gold, predicted)
  assert scores["precision"] == pytest.approx(2 / 5)
  assert scores["recall"] == pytest.approx(2 / 6)
  assert scores["f1"] == pytest.approx(4 / 11)  # 2 x 0.4 x 0.333 / 0.733
  assert scores["accuracy"] == pytest.approx(9 / 12)
  assert scores["per_type"]["LOC"] == pytest.approx((1 / 2, 1.0, 2 / 3, 1))
  assert scores["per_type"]["PER"] == (0.0, 0.0, 0.0, 3)
  assert scores["per_type"]["ORG"] == (1.0, 1.0, 1.0, 1)
  assert scores["per_type"]["MISC"] == (0.0, 0.0, 0.0, 1)
  assert data.chunks(["B-PER", "B-PER", "I-PER", "I-LOC"]) == {
      ("PER", 0, 1), ("PER", 1, 3), ("LOC", 3, 4)}


def test_predictions_file_is_conll_format():
  sentences = [_sentence(["EU", "says"], ["B-ORG", "O"], 1), _sentence(["Bonn"], ["B-LOC"], 2)]
  assert data.conll_lines(sentences, [["B-ORG", "O"], ["O"]]) == [
      "EU B-ORG B-ORG\n", "says O O\n", "\n", "-DOCSTART- O O\n", "\n", "Bonn B-LOC O\n", "\n"]


def test_entity_scores_equal_seqeval_on_random_iob1_and_iob2_tags():
  """seqeval's default mode follows conlleval: the same chunks, hence the same scores."""
  from seqeval import metrics as seqeval
  rng = np.random.default_rng(0)
  tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
  gold = [list(rng.choice(tags, rng.integers(1, 12))) for _ in range(300)]
  predicted = [[t if rng.random() < 0.7 else str(rng.choice(tags)) for t in g] for g in gold]
  scores = data.entity_scores(gold, predicted)
  assert scores["precision"] == pytest.approx(seqeval.precision_score(gold, predicted))
  assert scores["recall"] == pytest.approx(seqeval.recall_score(gold, predicted))
  assert scores["f1"] == pytest.approx(seqeval.f1_score(gold, predicted))
  assert scores["accuracy"] == pytest.approx(seqeval.accuracy_score(gold, predicted))
  report = seqeval.classification_report(gold, predicted, output_dict=True)
  for kind, (p, r, f1, count) in scores["per_type"].items():
    assert (p, r, f1, count) == pytest.approx((report[kind]["precision"],
                                               report[kind]["recall"],
                                               report[kind]["f1-score"], report[kind]["support"]))


def test_columns_split_on_spaces_and_tabs_only(tmp_path):
  """Other whitespace (a no-break space, U+3000) is part of a word, as conlleval reads it; a line
  of any whitespace alone ends a sentence."""
  path = _write(tmp_path / "x.txt", "New\u00a0York NNP B-NP B-LOC\n\u3000 SYM O O\n\u3000\n"
                "Bonn\tNNP  B-NP\tB-LOC \n")
  sentences = data.read_conll(path)
  assert [s.words for s in sentences] == [("New\u00a0York", "\u3000"), ("Bonn",)]
  assert sentences[1].tags == ("B-LOC",) and sentences[1].where.endswith("x.txt:4")


def test_feature_cache_is_read_back_and_invalidated_by_vocab_length_and_file(tmp_path):
  conll = tmp_path / "train.txt"
  shutil.copy(os.path.join(SAMPLE, "train.txt"), conll)
  vocab = tmp_path / "vocab.txt"
  shutil.copy(os.path.join(SAMPLE, "vocab.txt"), vocab)
  cache, options = str(tmp_path / "features"), {"task": "conll2003"}
  tokenizers = {}

  def run(max_seq_length=32):
    """True when the features came from the cache (then checked equal to fresh ones)."""
    sentences = data.read_conll(str(conll))
    ids = {t: i for i, t in enumerate(data.label_list(sentences))}
    size = os.path.getsize(vocab)
    if size not in tokenizers:
      tokenizers[size] = tokenization.BertTokenizer(str(vocab), do_lower_case=False)
    logged = []
    features = data.cached_featurize(sentences, tokenizers[size], max_seq_length, ids, False,
                                     str(conll), options, cache, log=logged.append)
    hit = any("features from cache" in line for line in logged)
    if hit:
      fresh = data.featurize(sentences, tokenizers[size], max_seq_length, ids)
      for field in ("ids", "offsets", "labels", "word_ids", "window_sentence", "word_offsets",
                    "vanished", "split_sentences", "truncated_words"):
        np.testing.assert_array_equal(getattr(features, field), getattr(fresh, field), field)
    return hit

  assert not run() and len(os.listdir(cache)) == 1
  assert run()                                        # the second run reads the cache
  assert not run(max_seq_length=16) and run(max_seq_length=16)
  with open(vocab, "a") as f:                         # another vocabulary: rebuilt
    f.write("Zebra\n")
  assert not run() and run()
  with open(conll, "a") as f:                         # the file changed: rebuilt
    f.write("\nZebra NN B-NP O\n")
  assert not run() and run()
  assert len(os.listdir(cache)) == 4  # one entry per setting
