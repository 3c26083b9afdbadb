"""Writes the committed distillation task (SST-2's file format, labels 0/1): a sentence holds
five adjectives, each with a hidden polarity; the label is the majority polarity. Words are
made-up syllable pairs, so no model knows them before training.

  labelled/  train.tsv (200: the student's gold labels), dev.tsv (400), test.tsv
  transfer/  train.tsv (1800 more examples; run_classifier ignores their labels)
  teacher/   train.tsv (labelled + transfer, 2000, all labelled: the teacher's edge, standing
             in for a large teacher's pretraining), dev.tsv
  vocab.txt  word-level, uncased

With 200 examples each of the 150 adjectives is seen about 7 times: a student on gold labels
alone learns part of the lexicon; a teacher trained on 2000 learns most of it, and a student
distilled on the teacher's soft labels of the transfer set inherits that.

  python tests/data/distill/generate.py   # rewrites the files next to this script
"""
import os
import random

SYLLABLES = ["ba", "ko", "mi", "tu", "ze", "ra", "lo", "fi", "pu", "se", "da", "no", "vi",
             "gu", "he"]
NOUNS = ["report", "movie", "meal", "trip", "song", "game", "book", "plan"]
VERBS = ["was", "seemed", "felt", "looked"]
ADJECTIVES_PER_SENTENCE = 5


def lexicon(seed=7):
  rng = random.Random(seed)
  words = sorted({a + b for a in SYLLABLES for b in SYLLABLES if a != b})
  rng.shuffle(words)
  adjectives = words[:150]
  return {w: i % 2 for i, w in enumerate(adjectives)}


def sentences(n, seed, polarity):
  rng = random.Random(seed)
  adjectives = sorted(polarity)
  rows = []
  for _ in range(n):
    chosen = rng.sample(adjectives, ADJECTIVES_PER_SENTENCE)
    label = int(sum(polarity[a] for a in chosen) * 2 > ADJECTIVES_PER_SENTENCE)
    text = (f"the {rng.choice(NOUNS)} {rng.choice(VERBS)} {', '.join(chosen[:-1])} and "
            f"{chosen[-1]} .")
    rows.append((text, str(label)))
  return rows


def write(path, rows, header=("sentence", "label")):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\t".join(header) + "\n")
    for row in rows:
      f.write("\t".join(row) + "\n")


def main(root=os.path.dirname(os.path.abspath(__file__))):
  polarity = lexicon()
  labelled, transfer = sentences(200, 1, polarity), sentences(1800, 2, polarity)
  dev, test = sentences(400, 3, polarity), sentences(100, 4, polarity)
  write(os.path.join(root, "labelled", "train.tsv"), labelled)
  write(os.path.join(root, "transfer", "train.tsv"), transfer)
  write(os.path.join(root, "teacher", "train.tsv"), labelled + transfer)
  for folder in ("labelled", "teacher"):
    write(os.path.join(root, folder, "dev.tsv"), dev)
  write(os.path.join(root, "labelled", "test.tsv"), [(str(i), t) for i, (t, _) in
                                                      enumerate(test)], ("index", "sentence"))
  vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "and",
           *NOUNS, *VERBS, *sorted(polarity)]
  with open(os.path.join(root, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(vocab) + "\n")


if __name__ == "__main__":
  main()
