"""The `sounding_shapes` world: `moving_shapes` clips with a soundtrack, for audio-visual learning.

Pure numpy and deterministic like `mmjax.data.moving_shapes` (whose motions it reuses, and the still shapes'
renderer): clip `index` of `split` under `seed` comes from its own generator, frames and sound alike.

Scene. Two objects, both visible from the first frame to the last, of different colours and different sizes, both
performing the clip's action (one of `MOTIONS`: moving_shapes' motions without "stays", since a still object could
not be a sound source), each over its own window of frames [start, stop], at least half the clip long, still
before and after it. One of the two, picked by a fair coin drawn after everything visible, is the sound source: it
plays a tone while it moves, from start / FPS to stop / FPS seconds; the other one is silent. The soundtrack is
exactly zero wherever the source is still, and the source's box changes between frames t and t + 1 only where the
sound covers [t / FPS, (t + 1) / FPS) (a translation changes it in the first and last of those intervals too; a
side growing by under a pixel a frame may pause for a frame). A bounce sounds like any other motion (a tone while
moving, no click at the turn): the sound says when the source moves, never how.

Sound. 16 kHz mono float32, `FPS` frames a second (8 frames = 1 s). Pitch is set by colour (`PITCHES`, 4.5
semitones apart, so no fundamental is another's harmonic), timbre by shape (`HARMONICS`: amplitudes of harmonics
1-5, the fundamental always the strongest); the loudness (`LEVEL`) and the harmonics' phases are drawn apart from
everything else, with 5 ms fades. Nothing in the sound depends on size or position.

Labels: `label` the action (index in `MOTIONS`); `sounding` the source's index among the objects (its per-frame
boxes locate it: localization); `fused_label` the source's size (index in `SIZES`: small, large).

Why the fused label needs both modalities. "The colour of the sounding object" does not: the pitch alone names the
colour. The label must be a visible attribute the sound does not encode, of an object the sound does identify
through one the video shows. Colour and shape are heard; a position changes with the motion (at 32 px an object
crosses half the frame); the size is fixed and heard nowhere. So:
  - video alone: one small and one large object, doing the same thing; which one sounds is a coin drawn after
    every visible quantity, so no pixel depends on it: at best 1/2.
  - audio alone: the sound carries the source's colour (pitch), shape (timbre), motion window (on/off) and a
    loudness and phases of its own; the source's size is independent of all of them (the sizes are a random
    permutation, drawn like colours, shapes and windows before the rejection sampling, which redraws only sides
    and places; the coin comes after): at best 1/2.
  - both: pitch names the colour, the two colours always differ, so the frames show which object sounds and its
    size: 1. When the two windows differ, timing links sound and object as well; when the shapes differ, timbre.
Chance for each single modality is thus 1/2, also the majority class (both sizes equally likely). For comparison:
the action, video 1 and audio 1/7 (the sound is the same for every motion); `sounding`, video 1/2, audio 1/2 (the
objects' order is as drawn) and both 1.

A curriculum for the fused label (`single_fraction`): that share of the train clips holds the sounding shape
alone, so its size needs no binding there (the frames say it). A model that has learnt to read the size of what
it attends to then gains from attending to the shape the sound names, a first-order signal that the two-shape
clips alone do not give (their label is an exclusive-or of two coins, which the single modalities cannot see).
Which clips are single is drawn from a stream of its own: every other quantity of clip `index` is as without it.
The other splits always hold two shapes, so every evaluation keeps each single modality at 1/2.

The compositional split holds sounds never heard on objects never seen: both objects are (colour, shape) pairs from
`shapes.HELD_OUT` (a pitch-timbre pair each), which the other splits never contain, for either object.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from mmjax.data import moving_shapes
from mmjax.data.moving_shapes import MAX_OBJECTS, Mover
from mmjax.data.shapes import COLOUR_NAMES, HELD_OUT, SHAPES, SIZES, Scene, ShapeObject, render

SPLITS = moving_shapes.SPLITS
MOTIONS = tuple(m for m in moving_shapes.MOTIONS if m != "stays")
SAMPLE_RATE = 16_000
FPS = 8  # frames a second: a clip of T frames lasts T / FPS seconds
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
PITCHES = {c: 200.0 * 2 ** (4.5 * k / 12) for k, c in enumerate(COLOUR_NAMES)}  # Hz: 200 ... 1235
HARMONICS = {  # relative amplitudes of harmonics 1, 2, ...; the 5th of the highest pitch is under 6.2 kHz
    "circle": (1.0,),  # a pure tone
    "square": (1.0, 0.0, 1 / 3, 0.0, 1 / 5),  # odd harmonics, as a square wave's
    "triangle": (1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5),  # every harmonic, as a sawtooth's
    "diamond": (1.0, 0.6),  # with its octave
    "cross": (1.0, 0.0, 0.0, 0.6),  # with its second octave
}
LEVEL = (0.08, 0.2)  # RMS of the tone; its peak stays under 0.6
_FADE = SAMPLE_RATE // 200  # 5 ms ramps in and out: no clicks at the edges
_SIDE = {"small": (0.2, 0.24), "large": (0.3, 0.34)}  # box side as a fraction of the frame, as moving_shapes'
DIRECTIONS = ("left", "right", "up", "down")
PLURALS = {"left": "move left", "right": "move right", "up": "move up", "down": "move down", "grows": "grow",
           "shrinks": "shrink", "bounces": "bounce"}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SoundingObject:
    """An object of the clip: its look and motion (`mover`, whose `start` is the first frame of its motion) and the
    frame `stop` its motion ends in; still at its first box before `start`, at its last after `stop`."""

    mover: Mover
    stop: int

    def box(self, frame: int, image_size: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels at `frame`."""
        return self.mover.box(min(max(frame, self.mover.start), self.stop), self.stop + 1, image_size)

    @property
    def start(self) -> int:
        return self.mover.start

    def name(self) -> str:
        return self.mover.name()


@dataclasses.dataclass(frozen=True)
class Clip:
    image_size: int
    num_frames: int
    background: tuple[int, int, int]
    objects: tuple[SoundingObject, ...]  # two
    source: int  # which object sounds
    level: float  # RMS of its tone
    phases: tuple[float, ...]  # of its harmonics, radians

    @property
    def sounding(self) -> SoundingObject:
        return self.objects[self.source]

    def boxes(self) -> np.ndarray:
        """[T, MAX_OBJECTS, 4] float32 boxes in [0, 1] (x0, y0, x1, y1)."""
        out = np.zeros((self.num_frames, MAX_OBJECTS, 4), np.float32)
        for t, (i, o) in itertools.product(range(self.num_frames), enumerate(self.objects)):
            out[t, i] = np.asarray(o.box(t, self.image_size), np.float32) / self.image_size
        return out

    def sound_times(self) -> np.ndarray:
        """[MAX_OBJECTS, 2] float32 (on, off) seconds of each object's sound; on == off: silent."""
        out = np.zeros((MAX_OBJECTS, 2), np.float32)
        out[self.source] = self.sounding.start / FPS, self.sounding.stop / FPS
        return out


def _rng(seed: int, split: str, index: int, stream: int = 4) -> np.random.Generator:
    # a stream apart from the other worlds' (moving_shapes: 1, spoken: 2 and 3); 5: which train clips are single
    return np.random.default_rng([seed, SPLITS.index(split), index, stream])


def _window(rng: np.random.Generator, num_frames: int) -> tuple[int, int]:
    """[start, stop]: at least half the clip long, inside it."""
    length = int(rng.integers(num_frames // 2, num_frames))
    start = int(rng.integers(0, num_frames - length))
    return start, start + length


def _path(obj: SoundingObject, num_frames: int, image_size: int) -> tuple[int, int, int, int] | None:
    """The box around every box of `obj` over the clip, or None if one leaves the frame (1 px margin)."""
    boxes = np.asarray([obj.box(t, image_size) for t in range(num_frames)])
    x0, y0, x1, y1 = int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max())
    return (x0, y0, x1, y1) if min(x0, y0) >= 1 and max(x1, y1) <= image_size - 1 else None


def _apart(a, b, gap: int = 1) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def pairs(split: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs objects of `split` are drawn from: the held-out ones in `compositional` only."""
    if split == "compositional":
        return sorted(HELD_OUT)
    return [p for p in itertools.product(COLOUR_NAMES, SHAPES) if p not in HELD_OUT]


def sample_clip(rng: np.random.Generator, image_size: int, num_frames: int, split: str) -> Clip:
    """Two objects (different colours and sizes, one motion), paths inside the frame and apart; then the source."""
    pool = pairs(split)
    motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    first = pool[int(rng.integers(len(pool)))]
    others = [p for p in pool if p[0] != first[0]]
    looks = (first, others[int(rng.integers(len(others)))])
    sizes = [SIZES[i] for i in rng.permutation(2)]
    windows = [_window(rng, num_frames) for _ in looks]
    while True:  # rejection sampling of sides and places alone: what the sound carries never depends on them
        objects, paths = [], []
        for (colour, shape), size, (start, stop) in zip(looks, sizes, windows):
            side = rng.uniform(*_SIDE[size]) * image_size
            for _ in range(50):
                centre = tuple(float(v) for v in rng.uniform(side / 2 + 1, image_size - side / 2 - 1, 2))
                obj = SoundingObject(Mover(colour, shape, size, motion, centre, side, start), stop)
                path = _path(obj, num_frames, image_size)
                if path is not None and all(_apart(path, p) for p in paths):
                    objects.append(obj)
                    paths.append(path)
                    break
        if len(objects) == 2:
            break
    background = tuple(int(v) for v in rng.integers(215, 256, 3))
    # drawn after everything visible: nothing in the frames depends on which object sounds
    source = int(rng.integers(2))
    level = float(rng.uniform(*LEVEL))
    phases = tuple(float(v) for v in rng.uniform(0, 2 * np.pi, len(HARMONICS[objects[source].mover.shape])))
    return Clip(image_size, num_frames, background, tuple(objects), source, level, phases)


def render_clip(clip: Clip) -> np.ndarray:
    """The frames as uint8 [T, S, S, 3], each drawn by the still scenes' renderer."""
    frames = []
    for t in range(clip.num_frames):
        objects = tuple(
            ShapeObject(o.mover.colour, o.mover.shape, o.mover.size, o.box(t, clip.image_size)) for o in clip.objects
        )
        frames.append(render(Scene(clip.image_size, clip.background, objects)))
    return np.stack(frames)


def tone(colour: str, shape: str, num_samples: int, level: float, phases) -> np.ndarray:
    """float32 [num_samples]: the colour's pitch with the shape's harmonics, at RMS `level`, faded in and out."""
    t = np.arange(num_samples) / SAMPLE_RATE
    amplitudes = np.asarray(HARMONICS[shape])
    wave = sum(
        a * np.sin(2 * np.pi * (n + 1) * PITCHES[colour] * t + p) for n, (a, p) in enumerate(zip(amplitudes, phases))
    )
    wave *= level / np.sqrt(np.sum(amplitudes**2) / 2)
    ramp = np.minimum(1.0, np.minimum(np.arange(num_samples) + 1, num_samples - np.arange(num_samples)) / _FADE)
    return (wave * ramp).astype(np.float32)


def soundtrack(clip: Clip) -> np.ndarray:
    """float32 [T * SAMPLES_PER_FRAME]: the source's tone over its motion window, silence elsewhere."""
    out = np.zeros(clip.num_frames * SAMPLES_PER_FRAME, np.float32)
    src = clip.sounding
    on, off = src.start * SAMPLES_PER_FRAME, src.stop * SAMPLES_PER_FRAME
    out[on:off] = tone(src.mover.colour, src.mover.shape, off - on, clip.level, clip.phases)
    return out


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def captions(clip: Clip) -> list[str]:
    """Three phrasings naming both objects, what they do, and which one makes the sound."""
    src = clip.sounding.mover
    does = PLURALS[src.motion]
    if len(clip.objects) == 1:
        a = clip.sounding.name()
        return [
            f"{_a(a)} makes a sound as it {'moves ' if src.motion in DIRECTIONS else ''}{src.motion}",
            f"the {src.size} {src.colour} {src.shape} makes a sound",
            f"one shape: {_a(a)}. the sound comes from the {src.size} {src.shape}",
        ]
    a, b = (o.name() for o in clip.objects)
    return [
        f"{_a(a)} and {_a(b)} {does}, the {src.colour} {src.shape} makes a sound",
        f"the {src.size} {src.colour} {src.shape} makes a sound as two shapes {does}",
        f"two shapes {does}: {_a(a)} and {_a(b)}. the sound comes from the {src.size} {src.shape}",
    ]


def generate(
    seed: int, split: str, index: int, image_size: int = 32, num_frames: int = 8, single_fraction: float = 0.0
) -> dict:
    """Clip `index` of `split`: frames uint8 [T,S,S,3], audio float32 [T * SAMPLES_PER_FRAME], labels (see the
    module docstring), captions, boxes [T, 2, 4] in [0, 1] and sound_times [2, 2] (on, off) seconds. A train clip
    holds the sounding shape alone with probability `single_fraction` (its boxes and sound times then in row 0)."""
    if num_frames < 4:
        raise ValueError(f"sounding_shapes needs at least 4 frames to show a motion, got num_frames={num_frames}")
    if not 0 <= single_fraction <= 1:
        raise ValueError(f"sounding_shapes single_fraction must be in [0, 1], got {single_fraction}")
    clip = sample_clip(_rng(seed, split, index), image_size, num_frames, split)
    if split == "train" and single_fraction and _rng(seed, split, index, 5).uniform() < single_fraction:
        clip = dataclasses.replace(clip, objects=(clip.sounding,), source=0)
    return {
        "clip": clip,
        "video": render_clip(clip),
        "audio": soundtrack(clip),
        "label": MOTIONS.index(clip.sounding.mover.motion),
        "motion": clip.sounding.mover.motion,
        "sounding": clip.source,
        "fused_label": SIZES.index(clip.sounding.mover.size),
        "captions": captions(clip),
        "boxes": clip.boxes(),
        "sound_times": clip.sound_times(),
    }
