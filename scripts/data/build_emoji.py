"""Rebuilds keras_multimodel/data/files/emoji.npz: emoji glyph images and their names.

Sources:
- glyphs: Noto Color Emoji (Debian package `fonts-noto-color-emoji`, Apache-2.0 license),
  rendered with Pillow at the font's native 109 px and resized to 32x32 RGB on white;
- captions: the emoji's CLDR short names from the PyPI package `emoji` (BSD license),
  e.g. "grinning face with big eyes".

Every fully-qualified emoji the font can draw is kept, except skin-tone variants and
flags (names like "waving hand: medium skin tone" or country names, ~2.3k more, which
would double the copy's size for little new vocabulary). The split (0 train,
1 validation, 2 test) is fixed by a hash of the emoji's name, so it never changes
when the emoji list grows.

    apt-get install fonts-noto-color-emoji && pip install emoji pillow
    python scripts/data/build_emoji.py
"""

import hashlib
import pathlib

import emoji
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
OUT = pathlib.Path(__file__).resolve().parents[2] / "keras_multimodel/data/files"
SIZE = 32
SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}


def render(font, text):
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((10, 10), text, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    return np.asarray(square.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS))


def split_of(name):
    bucket = int(hashlib.md5(name.encode()).hexdigest(), 16) % 100
    return 2 if bucket < 8 else 1 if bucket < 14 else 0


def main():
    font = ImageFont.truetype(FONT, 109)
    fully = emoji.STATUS["fully_qualified"]
    images, captions, splits = [], [], []
    for char, data in sorted(emoji.EMOJI_DATA.items(), key=lambda kv: kv[1]["en"]):
        if data["status"] != fully:
            continue
        is_flag = any(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char) or "flag" in data["en"]
        has_tone = any(c in SKIN_TONES for c in char)
        if is_flag or has_tone:
            continue
        image = render(font, char)
        if image is None or (image == 255).all():
            continue
        images.append(image)
        captions.append(data["en"].strip(":").replace("_", " "))
        splits.append(split_of(data["en"]))
    np.savez_compressed(
        OUT / "emoji.npz",
        images=np.stack(images),
        captions=np.array(captions),
        split=np.array(splits, np.int8),
    )
    print(f"wrote {len(images)} emoji")


if __name__ == "__main__":
    main()
