"""Rebuilds keras_multimodel/data/files/bible_en_es.tsv.xz: verse-aligned Bible text.

Sources (both public domain), read with `mod2imp` from the SWORD utilities:
- English: World English Bible (Debian package `sword-text-web`, module engWEB2015eb);
- Spanish: Reina-Valera 1909 (Debian package `sword-text-sparv`, module spaRV1909eb).

Markup and footnotes are removed; verses empty in either language (or merged into a
neighbour) are dropped. Columns: reference, English, Spanish, split (0 train,
1 validation, 2 test; fixed by a hash of the reference).

    apt-get install libsword-utils sword-text-web sword-text-sparv
    python scripts/data/build_bible.py
"""

import hashlib
import html
import lzma
import pathlib
import re
import subprocess

OUT = pathlib.Path(__file__).resolve().parents[2] / "keras_multimodel/data/files"
NOTE = re.compile(r"<note\b.*?</note>", re.S)
TAG = re.compile(r"<[^>]+>")
SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?’”)])")


def verses(module):
    text = subprocess.run(["mod2imp", module], capture_output=True, text=True, check=True).stdout
    out = {}
    for block in text.split("$$$")[1:]:
        ref, _, body = block.partition("\n")
        if ref.startswith("[") or ref.endswith(" 0:0") or ref.endswith(":0"):
            continue
        body = TAG.sub(" ", NOTE.sub(" ", body))
        body = html.unescape(" ".join(body.split()))
        body = SPACE_BEFORE_PUNCT.sub(r"\1", body).replace("“ ", "“").replace("‘ ", "‘")
        if body:
            out[ref.strip()] = body
    return out


def split_of(ref):
    bucket = int(hashlib.md5(ref.encode()).hexdigest(), 16) % 100
    return 2 if bucket < 2 else 1 if bucket < 4 else 0


def main():
    english, spanish = verses("engWEB2015eb"), verses("spaRV1909eb")
    rows = [
        (ref, english[ref], spanish[ref], split_of(ref)) for ref in english if ref in spanish
    ]
    with lzma.open(OUT / "bible_en_es.tsv.xz", "wt", encoding="utf-8") as f:
        for row in rows:
            f.write("\t".join(str(col).replace("\t", " ") for col in row) + "\n")
    print(f"wrote {len(rows)} verse pairs")


if __name__ == "__main__":
    main()
