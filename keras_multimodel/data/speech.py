"""Speech data: espeak-ng synthesis of English sentences, and WAV reading.

espeak-ng (GPL) is called as a separate program, never linked. Each utterance gets
its own voice, variant, speed and pitch, drawn with a fixed seed, so a rebuilt copy
is the same on any machine with the same espeak-ng release.
"""

import functools
import io
import pathlib
import shutil
import subprocess
import tempfile
import wave

import numpy as np

from keras_multimodel.errors import DataError
from keras_multimodel.modalities.audio import PCM_SCALE
from keras_multimodel.modalities.audio import to_float as to_float  # one home, re-exported

SAMPLE_RATE = 16000
# espeak-ng's own English voices (no MBROLA) and some of its voice variants.
VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2")
SPEEDS = (130, 200)  # words per minute
PITCHES = (30, 70)  # espeak-ng's 0-99 scale


def espeak_binary():
    """Path of the espeak-ng program; a clear error if it is not installed."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise DataError(
            "the transcribe_speech task synthesises its data with espeak-ng, which is not "
            "installed: run `sudo apt-get install espeak-ng` (Debian/Ubuntu) or "
            "`brew install espeak-ng` (macOS), or leave the task out with --tasks."
        )
    return path


def voice_settings(count, seed):
    """`count` (voice, speed, pitch) triples, e.g. ("en-us+f3", 162, 41)."""
    rng = np.random.default_rng(seed)
    return [
        (
            f"{VOICES[rng.integers(len(VOICES))]}+{VARIANTS[rng.integers(len(VARIANTS))]}",
            int(rng.integers(SPEEDS[0], SPEEDS[1] + 1)),
            int(rng.integers(PITCHES[0], PITCHES[1] + 1)),
        )
        for _ in range(count)
    ]


def synthesize(text, voice="en-us", speed=170, pitch=50):
    """Speaks `text` with espeak-ng; float32 waveform in [-1, 1] at 16 kHz."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "speech.wav"
        subprocess.run(
            [
                espeak_binary(),
                "-v",
                voice,
                "-s",
                str(speed),
                "-p",
                str(pitch),
                "-w",
                str(path),
                text,
            ],
            check=True,
            capture_output=True,
        )
        return read_wav(path)


def resample(waveform, rate, new_rate):
    """Band-limited resampling of a whole 1-D signal (FFT truncation or zero-fill)."""
    if rate == new_rate:
        return waveform.astype("float32")
    new_length = int(round(len(waveform) * new_rate / rate))
    spectrum = np.fft.rfft(waveform.astype("float64"))
    bins = new_length // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), spectrum.dtype)])
    out = np.fft.irfft(spectrum, n=new_length) * (new_length / len(waveform))
    return out.astype("float32")


def to_pcm16(waveform):
    """A waveform as int16 PCM (half the memory of float32); int16 input is returned as is.

    >>> to_pcm16(np.array([0.0, 0.5, -1.0, 2.0], "float32")).tolist()
    [0, 16384, -32768, 32767]
    """
    waveform = np.asarray(waveform)
    if waveform.dtype == np.int16:
        return waveform
    return np.clip(np.round(waveform * PCM_SCALE), -32768, 32767).astype("int16")


def read_wav(source, sample_rate=SAMPLE_RATE):
    """Reads a PCM WAV file (path or bytes) as a mono float32 waveform at `sample_rate`.

    Raises `DataError` naming the file for a missing, corrupt or unsupported file.
    """
    name = source if not isinstance(source, bytes) else "<bytes>"
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as error:
        raise DataError(f"cannot read WAV file {name}: {error.strerror}") from None
    with handle:
        try:
            with wave.open(handle) as wav:
                channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
                frames = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError) as error:
            detail = str(error) or "the file ends before its header does"
            raise DataError(f"{name} is not a readable PCM WAV file ({detail})") from None
    if width not in (1, 2, 4):
        raise DataError(f"{name}: {8 * width}-bit samples are not supported; use 16-bit PCM")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    samples = np.frombuffer(frames[: len(frames) // width * width], dtype).astype("float32")
    if width == 1:
        samples = samples - 128.0
    samples /= float(2 ** (8 * width - 1))
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(1)
    if samples.size == 0:
        raise DataError(f"{name} holds no audio samples")
    return resample(samples, rate, sample_rate)


@functools.cache
def espeak_version():
    result = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True)
    return result.stdout.strip()
