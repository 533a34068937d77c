"""transcribe_speech: 16 kHz speech -> lower-case words.

Sentences of the parse set (3 to 10 words, World English Bible), spoken by espeak-ng
(Debian, GPL, run as a separate program) with a seeded voice, variant, speed and
pitch each; synthesised on first use and cached (`sources.cache_dir()`; about a
minute on 2 CPU cores). "small": 6,000 / 100 / 100 utterances, "full": 6,000 / 300 /
300 (other voices; its held-out sentences begin with small's, and its training
sentences are small's but one, a sentence full holds out); utterances over 6 s are
left out, by rule. 6,000 training utterances, because the main job memorises fewer
(benchmarks/README.md#recipepy-the-main-jobs-settings-measured-on-its-table). The
extra test split "real" holds the 10 real recordings of Debian's
`pocketsphinx-testdata` (LibriVox and spoken card names).
"""

import functools
import hashlib
import os
import pathlib
import re
from concurrent import futures

import numpy as np

from keras_multimodel import metrics
from keras_multimodel.data import speech
from keras_multimodel.data.bundled import baselines, sources
from keras_multimodel.data.bundled.formats import AudioFormat, TextFormat
from keras_multimodel.data.bundled.record import Baseline, BundledTask, Metric, register
from keras_multimodel.errors import DataError

COUNTS = {"small": (6000, 100, 100), "full": (6000, 300, 300)}  # train, validation, test
MAX_SECONDS = 6.0  # longest synthetic utterance kept
AUDIO_MAX_SECONDS = 8.0  # longest waveform the model takes (the real recordings run to 7.1 s)
POCKETSPHINX = pathlib.Path("/usr/share/pocketsphinx/test/data")


@functools.cache
def sentences(split, data_size):
    """The sentences to speak: parse-set sentences of 3 to 10 words, in a fixed order.

    The Bible repeats some verses word for word (the lists of returning families in
    Ezra and Nehemiah), so a sentence of a later split (validation, then test) is
    left out of the earlier ones: no test sentence is spoken in training.
    """
    index = sources.SPLITS.index(split)
    count = COUNTS[data_size][index]
    later = {t for other in sources.SPLITS[index + 1 :] for t in sentences(other, data_size)}
    texts = sorted(
        {sources.transcript(text) for text, _ in sources.parse_rows(split, "full")} - later,
        key=lambda t: hashlib.md5(t.encode()).hexdigest(),
    )
    texts = [t for t in texts if 3 <= len(t.split()) <= 10]
    if len(texts) < count:
        raise DataError(f"only {len(texts)} speech sentences for {split}; need {count}")
    return tuple(texts[:count])


def synthetic(split, data_size):
    """Synthesised utterances of one split (cached on disk, read anew each call, so
    no copy outlives its datasets) and their transcripts."""
    texts = sentences(split, data_size)
    seed = 1000 * sources.SPLITS.index(split) + sources.DATA_SIZES.index(data_size)
    settings = speech.voice_settings(len(texts), seed)
    key = hashlib.md5(repr((texts, settings, speech.espeak_version())).encode()).hexdigest()[:12]
    path = sources.cache_dir() / f"speech-{data_size}-{split}-{key}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"Synthesising {len(texts)} {split} utterances with espeak-ng into {path}")
        with futures.ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
            waves = list(
                pool.map(
                    lambda a: speech.synthesize(a[0], *a[1]), zip(texts, settings, strict=True)
                )
            )
        pcm = [speech.to_pcm16(w) for w in waves]
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, pcm=np.concatenate(pcm), lengths=np.array([len(p) for p in pcm]))
        tmp.replace(path)  # atomic: a killed synthesis leaves no half-written cache
    with np.load(path) as data:
        pcm, lengths = data["pcm"], data["lengths"]
    waves = np.split(pcm, np.cumsum(lengths)[:-1])  # int16 views of one array
    limit = int(MAX_SECONDS * speech.SAMPLE_RATE)
    keep = [i for i, w in enumerate(waves) if len(w) <= limit]  # rule: at most 6 s of speech
    return [waves[i] for i in keep], [texts[i] for i in keep]


def real_recordings():
    """Real recordings from Debian's pocketsphinx-testdata, with their transcripts."""
    waves, texts = [], []
    for folder, listing in (("librivox", "transcription"), ("cards", "cards.transcription")):
        path = POCKETSPHINX / folder / listing
        if not path.exists():
            raise DataError(
                "the real-speech test set reads Debian's pocketsphinx-testdata: run "
                "`sudo apt-get install pocketsphinx-testdata`"
            )
        for line in path.read_text().splitlines():
            match = re.match(r"<s>(.*)</s>\s*\((\S+)\)", line.strip())
            if match:
                texts.append(sources.transcript(match.group(1)))
                wav = speech.read_wav(POCKETSPHINX / folder / f"{match.group(2)}.wav")
                waves.append(speech.to_pcm16(wav))
    return waves, texts


def examples(split, data_size):
    return real_recordings() if split == "real" else synthetic(split, data_size)


RECORD = register(
    BundledTask(
        name="transcribe_speech",
        description="16 kHz speech -> words",
        inputs=AudioFormat(speech.SAMPLE_RATE, AUDIO_MAX_SECONDS),
        targets=TextFormat(),
        examples=examples,
        metrics=(
            Metric("WER (lower is better)", metrics.word_error_rate, higher_is_better=False),
            Metric("looping outputs (share)", metrics.looping_share, higher_is_better=False),
        ),
        baselines=(
            Baseline("empty output", baselines.empty_output),
            Baseline("most frequent transcript", baselines.most_frequent_output, learned=True),
            Baseline("nearest log-mel mean", baselines.nearest_neighbour_transcript, learned=True),
        ),
        extra_splits=("real",),
        vocabulary_texts=lambda data_size: sentences("train", data_size),
    )
)
