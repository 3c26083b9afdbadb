"""Writes the committed CoNLL-2003-format sample (train.txt, dev.txt, test.txt, vocab.txt):
synthetic news sentences whose tag is a function of the word (first names B-PER, surnames
I-PER, cities B-LOC, company names B-ORG then Bank/Corp I-ORG, nationalities B-MISC), in
documents of 10 sentences. Several names split into two WordPiece pieces (Ber ##lin).

  python tests/data/conll/generate.py   # rewrites the files next to this script
"""
import os
import random

FIRST = ["John", "Maria", "Ahmed", "Olga", "Kenji", "Lucia"]
LAST = ["Smith", "Garcia", "Khan", "Petrova", "Tanaka", "Rossi"]
CITY = ["Paris", "Berlin", "Tokyo", "Lima", "Cairo", "Oslo"]
COMPANY = ["Acme", "Globex", "Initech", "Umbrella"]
SUFFIX = ["Bank", "Corp"]
MISC = ["German", "French", "Olympic"]
PIECES = ["Ber", "##lin", "Petro", "##va", "Tana", "##ka", "Glo", "##bex"]  # split words
TEMPLATES = ["P visited L on Monday .", "O signed a deal with O .", "P met P in L .",
             "The M team from L said nothing .", "P works for O in L .",
             "M officials and O said P was right ."]


def entity(kind, rng):
  if kind == "P":
    words = [rng.choice(FIRST)] + ([rng.choice(LAST)] if rng.random() < 0.7 else [])
    return [(w, "NNP", "B-PER" if i == 0 else "I-PER") for i, w in enumerate(words)]
  if kind == "O":
    words = [rng.choice(COMPANY)] + ([rng.choice(SUFFIX)] if rng.random() < 0.6 else [])
    return [(w, "NNP", "B-ORG" if i == 0 else "I-ORG") for i, w in enumerate(words)]
  if kind == "L":
    return [(rng.choice(CITY), "NNP", "B-LOC")]
  if kind == "M":
    return [(rng.choice(MISC), "JJ", "B-MISC")]
  return [(kind, "XX", "O")]


def write(path, sentences, per_document=10):
  with open(path, "w") as f:
    for i, sentence in enumerate(sentences):
      if i % per_document == 0:
        f.write("-DOCSTART- -X- -X- O\n\n")
      for word, pos, tag in sentence:
        f.write(f"{word} {pos} O {tag}\n")
      f.write("\n")


def main():
  here = os.path.dirname(os.path.abspath(__file__))
  rng = random.Random(13)
  make = lambda: [t for k in rng.choice(TEMPLATES).split() for t in entity(k, rng)]  # noqa
  for name, count in (("train.txt", 80), ("dev.txt", 30), ("test.txt", 30)):
    write(os.path.join(here, name), [make() for _ in range(count)])
  plain = {w for t in TEMPLATES for w in t.split() if w not in "POLM"}
  words = sorted(set(FIRST + LAST + CITY + COMPANY + SUFFIX + MISC) | plain)
  words = [w for w in words if w not in ("Berlin", "Petrova", "Tanaka", "Globex")] + PIECES
  with open(os.path.join(here, "vocab.txt"), "w") as f:
    f.write("".join(t + "\n" for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))


if __name__ == "__main__":
  main()
