"""Spoken data built offline: speech synthesised by eSpeak NG, for spoken digits and spoken `shapes` captions.

eSpeak NG (Debian `espeak-ng`, which `make test` installs where it can) is a formant synthesiser: no download, no
model weights, the same waveform for the same text and voice on every run. A *voice* is an accent (`en-us`,
`en-gb-scotland`, ...) with a variant (`+Annie`, `+klatt4`, ...: its timbre); each utterance also draws its speed
(words per minute) and pitch. Voices are split: the held-out voices (`HELD_OUT_VOICES`) speak only in the `test`
split, so a model is tested on speakers it never heard, as speech benchmarks test on unseen speakers.

Utterance `index` of `split` under `seed` comes from its own generator, like the still and moving shapes, so any
one can be regenerated alone.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import wave

import numpy as np

from mmjax.data import shapes
from mmjax.data.media import resample

SAMPLE_RATE = 16_000  # what the audio models here and their feature extractors (AST, Whisper) take
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VARIANTS = ("", "+m3", "+f2", "+Annie", "+klatt4", "+Andy", "+f4", "+Mike")
# one accent and two timbres the training splits never hear
HELD_OUT_VOICES = frozenset(
    {f"en-gb-x-gbclan{v}" for v in VARIANTS} | {f"{a}+f4" for a in ACCENTS} | {f"{a}+Mike" for a in ACCENTS}
)
VOICES = tuple(f"{a}{v}" for a in ACCENTS for v in VARIANTS)
SPLITS = ("train", "validation", "test")
_SPEED = (120, 200)  # words per minute
_PITCH = (25, 75)  # eSpeak's 0-99 scale


class SynthesisError(RuntimeError):
    pass


@functools.cache
def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SynthesisError("spoken data needs the eSpeak NG synthesiser: apt-get install espeak-ng")
    return path


def synthesize(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> np.ndarray:
    """`text` spoken by `voice` as float32 [samples] in [-1, 1] at SAMPLE_RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.wav")
        cmd = [_espeak(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", path, text]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0 or not os.path.exists(path):
            raise SynthesisError(f"espeak-ng failed for voice {voice!r}: {done.stderr.strip() or done.returncode}")
        with wave.open(path) as w:
            rate, width = w.getframerate(), w.getsampwidth()
            if width != 2:
                raise SynthesisError(f"espeak-ng wrote {8 * width}-bit samples; expected 16-bit PCM")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return resample(pcm.astype(np.float32) / 32768.0, rate, SAMPLE_RATE)


def voices(split: str) -> tuple[str, ...]:
    """The voices that speak in `split`: the held-out ones in `test` only."""
    if split not in SPLITS:
        raise ValueError(f"spoken data has splits {SPLITS}, got {split!r}")
    held = split == "test"
    return tuple(v for v in VOICES if (v in HELD_OUT_VOICES) == held)


def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index, stream])


def _delivery(rng: np.random.Generator, split: str) -> dict:
    pool = voices(split)
    return {
        "voice": pool[int(rng.integers(len(pool)))],
        "speed": int(rng.integers(*_SPEED)),
        "pitch": int(rng.integers(*_PITCH)),
    }


def spoken_digit(seed: int, split: str, index: int) -> dict:
    """Utterance `index` of `split`: one digit word, label = the digit (cycling through 0-9, so splits are
    balanced), its waveform and how it was spoken."""
    label = index % len(DIGITS)
    how = _delivery(_rng(seed, split, index, 2), split)
    return {"audio": synthesize(DIGITS[label], **how), "label": label, "text": DIGITS[label], **how}


def object_phrase(caption: str, objects: int = 2) -> str:
    """The first `objects` objects a `shapes` caption names: "a small red square at the left, a large blue cross at
    the top and a ..." -> "a small red square at the left and a large blue cross at the top"."""
    return " and ".join(re.split(r", | and ", caption.rstrip("."))[:objects])


def spoken_caption(seed: int, split: str, index: int) -> dict:
    """Utterance `index` of `split`: two objects of scene `index` of the still `shapes` world (one if it has one),
    described as its first caption does ("a large blue cross at the top and a small red square at the left": size,
    colour, shape, place), spoken; its text and waveform, and how it was spoken. Two objects, not the whole scene
    (40 words, 15 s of speech): 3-7 s of speech, and nearly every description in a split is unique (997 of 1,000
    test ones), which retrieval needs (a repeated text has several right answers)."""
    scene = shapes.generate(seed, split, index, 32)  # the smallest image: only the caption is used
    how = _delivery(_rng(seed, split, index, 3), split)
    text = object_phrase(scene["captions"][0])
    return {"audio": synthesize(text, **how), "text": text, **how}
