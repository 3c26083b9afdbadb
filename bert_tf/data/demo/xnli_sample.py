"""A small synthetic XNLI-format data set written for this project (no XNLI text in it).

Premises state properties of programming objects ("The list is empty and the file is open."),
hypotheses state one property. Entailment: a property the premise states. Contradiction: the
same property negated ("The list is not empty."). Neutral: a property of an object from a
second word list that premises never mention. The labels therefore have lexical cues a small
model picks up in a few hundred steps: the sample demonstrates the pipeline end to end and
shows learning; it says nothing about natural-language inference ability. Four languages
(en, de, es, fr) from a hand-written word list.

Layout, as the real data is distributed (so run_classifier.py reads it unchanged):
  <dir>/XNLI-1.0/xnli.dev.tsv, xnli.test.tsv        (19 columns, header, language column)
  <dir>/XNLI-MT-1.0/multinli/multinli.train.<lang>.tsv (premise, hypo, label; contradictory)
  <dir>/vocab.txt                                      (word-level, uncased: covers the data)
"""
from __future__ import annotations

import os
import random
import unicodedata

LANGUAGES = ("en", "de", "es", "fr")

_NOUNS = {  # en, de, es, fr
    "list": ("Liste", "lista", "liste"), "file": ("Datei", "archivo", "fichier"),
    "string": ("Zeichenkette", "cadena", "chaîne"), "module": ("Modul", "módulo", "module"),
    "function": ("Funktion", "función", "fonction"), "class": ("Klasse", "clase", "classe"),
    "method": ("Methode", "método", "méthode"), "object": ("Objekt", "objeto", "objet"),
    "value": ("Wert", "valor", "valeur"), "key": ("Schlüssel", "clave", "clé"),
    "tuple": ("Tupel", "tupla", "tuple"), "buffer": ("Puffer", "búfer", "tampon"),
    "thread": ("Faden", "hilo", "fil"), "queue": ("Warteschlange", "cola", "queue"),
    "iterator": ("Iterator", "iterador", "itérateur"),
    "dictionary": ("Wörterbuch", "diccionario", "dictionnaire"),
}
_ADJECTIVE_PAIRS = [  # (word, opposite) per language: en, de, es, fr
    (("empty", "full"), ("leer", "voll"), ("vacío", "lleno"), ("vide", "plein")),
    (("open", "closed"), ("offen", "geschlossen"), ("abierto", "cerrado"),
     ("ouvert", "fermé")),
    (("local", "global"), ("lokal", "global"), ("local", "global"), ("local", "global")),
    (("mutable", "immutable"), ("veränderlich", "unveränderlich"), ("mutable", "inmutable"),
     ("mutable", "immuable")),
    (("valid", "invalid"), ("gültig", "ungültig"), ("válido", "inválido"),
     ("valide", "invalide")),
    (("new", "old"), ("neu", "alt"), ("nuevo", "viejo"), ("nouveau", "vieux")),
    (("public", "private"), ("öffentlich", "privat"), ("público", "privado"),
     ("public", "privé")),
]
_TEMPLATES = {  # clause, negated clause, conjunction
    "en": ("the {n} is {a}", "the {n} is not {a}", "and"),
    "de": ("{n} ist {a}", "{n} ist nicht {a}", "und"),
    "es": ("el {n} es {a}", "el {n} no es {a}", "y"),
    "fr": ("le {n} est {a}", "le {n} n'est pas {a}", "et"),
}
# Objects of neutral hypotheses only (en, de, es, fr).
_OTHER_NOUNS = {
    "socket": ("Sockel", "enchufe", "prise"), "record": ("Datensatz", "registro", "fiche"),
    "handler": ("Behandler", "manejador", "gestionnaire"), "frame": ("Rahmen", "marco", "cadre"),
    "stream": ("Strom", "flujo", "flux"), "table": ("Tabelle", "tabla", "table"),
}
HEADER = ("language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse",
          "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID",
          "genre", "label1", "label2", "label3", "label4", "label5", "sentence1_tokenized",
          "sentence2_tokenized", "match")


def _noun(key: str, lang: str) -> str:
  words = _NOUNS.get(key) or _OTHER_NOUNS[key]
  return key if lang == "en" else words[LANGUAGES.index(lang) - 1]


def _adjective(pair: int, side: int, lang: str) -> str:
  return _ADJECTIVE_PAIRS[pair][LANGUAGES.index(lang)][side]


def make_examples(n: int, lang: str, seed: int, clauses: int = 2) -> list[tuple[str, str, str]]:
  """``n`` (premise, hypothesis, label) triples in ``lang``, labels in turn."""
  rng = random.Random(f"{seed}-{lang}")
  clause, negated, conjunction = _TEMPLATES[lang]
  adjective_pairs = len(_ADJECTIVE_PAIRS)
  out = []
  for i in range(n):
    label = ("entailment", "contradiction", "neutral")[i % 3]
    facts = [(noun, rng.randrange(adjective_pairs), rng.randrange(2))
             for noun in rng.sample(sorted(_NOUNS), clauses)]
    premise = f" {conjunction} ".join(
        clause.format(n=_noun(noun, lang), a=_adjective(p, s, lang)) for noun, p, s in facts)
    noun, p, s = rng.choice(facts)
    template = negated if label == "contradiction" else clause
    if label == "neutral":
      noun, p, s = rng.choice(sorted(_OTHER_NOUNS)), rng.randrange(adjective_pairs), \
          rng.randrange(2)
    hypothesis = template.format(n=_noun(noun, lang), a=_adjective(p, s, lang))
    out.append((premise[0].upper() + premise[1:] + ".",
                hypothesis[0].upper() + hypothesis[1:] + ".", label))
  return out


def _normalise(word: str) -> str:
  """google's uncased basic tokenization of one word: lower case, accents stripped."""
  word = unicodedata.normalize("NFD", word.lower())
  return "".join(c for c in word if unicodedata.category(c) != "Mn")


def vocabulary() -> list[str]:
  """Word-level uncased vocabulary covering the sample (plus letters, for anything else)."""
  words = set()
  for lang in LANGUAGES:
    clause, negated, conjunction = _TEMPLATES[lang]
    for template in (clause, negated):
      words.update(template.replace("{n}", "").replace("{a}", "").replace("'", " ").split())
    words.add(conjunction)
    words.update(_noun(k, lang) for k in (*_NOUNS, *_OTHER_NOUNS))
    words.update(_adjective(p, s, lang) for p in range(len(_ADJECTIVE_PAIRS)) for s in (0, 1))
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
  specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  tokens = sorted({_normalise(w) for w in words} | set(letters) | {".", "'"})
  return specials + tokens + ["##" + c for c in letters]


def write_sample(output_dir: str, train_per_language: int = 2000, eval_per_language: int = 300,
                 languages=LANGUAGES, clauses: int = 2, seed: int = 12345) -> dict[str, str]:
  """Writes the sample in XNLI's layout; returns {"data_dir", "vocab_file"}.

  Deterministic: the same arguments write the same bytes.
  """
  mt = os.path.join(output_dir, "XNLI-MT-1.0", "multinli")
  xnli = os.path.join(output_dir, "XNLI-1.0")
  os.makedirs(mt, exist_ok=True)
  os.makedirs(xnli, exist_ok=True)
  for lang in languages:
    with open(os.path.join(mt, f"multinli.train.{lang}.tsv"), "w", encoding="utf-8") as f:
      f.write("premise\thypo\tlabel\n")
      for premise, hypothesis, label in make_examples(train_per_language, lang, seed, clauses):
        label = "contradictory" if label == "contradiction" else label  # as XNLI-MT writes it
        f.write(f"{premise}\t{hypothesis}\t{label}\n")
  for split, offset in (("dev", 1), ("test", 2)):
    with open(os.path.join(xnli, f"xnli.{split}.tsv"), "w", encoding="utf-8") as f:
      f.write("\t".join(HEADER) + "\n")
      for lang in languages:
        rows = make_examples(eval_per_language, lang, seed + offset, clauses)
        for i, (premise, hypothesis, label) in enumerate(rows):
          fields = [lang, label, premise, hypothesis, premise, hypothesis, premise, hypothesis,
                    str(i), str(i), "sample", *[label] * 5, premise, hypothesis, "True"]
          f.write("\t".join(fields) + "\n")
  vocab_file = os.path.join(output_dir, "vocab.txt")
  with open(vocab_file, "w", encoding="utf-8") as f:
    f.write("\n".join(vocabulary()) + "\n")
  return {"data_dir": output_dir, "vocab_file": vocab_file}
