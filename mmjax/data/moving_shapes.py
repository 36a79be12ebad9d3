"""The `moving_shapes` world: short clips of coloured shapes that move, with action labels and captions that need
time ("a red circle at the top left moves left, then a blue square appears at the bottom and grows").

Pure numpy and deterministic, like `mmjax.data.shapes` (whose shapes, colours and renderer it reuses): clip `index`
of `split` under `seed` comes from its own generator, so any clip can be regenerated alone, in any order.

A clip has an actor, which performs one of `MOTIONS` over the whole clip (its action label), and with probability
one half a second object that appears half way through and performs its own motion in the second half. Six of the
eight motions are order-dependent: a clip played backwards turns left into right, up into down and grows into
shrinks, so a model that ignores frame order cannot tell them apart; `bounces` (down and back up) and `stays` read
the same both ways. The compositional split holds clips whose actor is a (motion, shape) pair from `HELD_OUT`; the
other splits never contain those pairs, for either object.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmjax.data.shapes import COLOUR_NAMES, SHAPES, SIZES, Scene, ShapeObject, grid_position, render

MOTIONS = ("left", "right", "up", "down", "grows", "shrinks", "bounces", "stays")
# motions whose time reversal is another motion: what a frame-order-blind model confuses
REVERSED = {"left": "right", "right": "left", "up": "down", "down": "up", "grows": "shrinks", "shrinks": "grows"}
HELD_OUT = frozenset((m, SHAPES[i % len(SHAPES)]) for i, m in enumerate(MOTIONS))
SPLITS = ("train", "validation", "test", "compositional")
PHRASES = {
    "left": "moves left",
    "right": "moves right",
    "up": "moves up",
    "down": "moves down",
    "grows": "grows",
    "shrinks": "shrinks",
    "bounces": "bounces",
    "stays": "stays still",
}
# Box side as a fraction of the frame, per size (larger than the still scenes': a 32 px frame must show the motion)
_SIDE = {"small": (0.2, 0.24), "large": (0.3, 0.34)}
_TRAVEL = 0.4  # how far a moving object travels over its motion, as a fraction of the frame
_SCALE = 1.6  # how much a growing object grows (a shrinking one shrinks by the same factor)
MAX_OBJECTS = 2


@dataclasses.dataclass(frozen=True)
class Mover:
    """An object and its motion over the frames [start, num_frames): its box is a function of the frame."""

    colour: str
    shape: str
    size: str
    motion: str
    centre: tuple[float, float]  # at the start of its motion, in pixels
    side: float  # at the start of its motion
    start: int  # the frame it appears in

    def box(self, frame: int, num_frames: int, image_size: int) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) in pixels at `frame`, or None before the object appears."""
        if frame < self.start:
            return None
        length = max(num_frames - 1 - self.start, 1)
        p = (frame - self.start) / length  # progress through the motion, 0 -> 1
        (cx, cy), side, travel = self.centre, self.side, _TRAVEL * image_size
        dx, dy, scale = {
            "left": (-travel * p, 0.0, 1.0),
            "right": (travel * p, 0.0, 1.0),
            "up": (0.0, -travel * p, 1.0),
            "down": (0.0, travel * p, 1.0),
            "grows": (0.0, 0.0, 1.0 + (_SCALE - 1.0) * p),
            "shrinks": (0.0, 0.0, _SCALE - (_SCALE - 1.0) * p),
            "bounces": (0.0, travel * (1.0 - abs(2.0 * p - 1.0)), 1.0),
            "stays": (0.0, 0.0, 1.0),
        }[self.motion]
        s = max(3, round(side * scale))
        x0, y0 = round(cx + dx - s / 2), round(cy + dy - s / 2)
        return x0, y0, x0 + s, y0 + s

    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Clip:
    image_size: int
    num_frames: int
    background: tuple[int, int, int]
    movers: tuple[Mover, ...]  # the actor first

    def boxes(self) -> np.ndarray:
        """[T, MAX_OBJECTS, 4] float32 boxes in [0, 1] (x0, y0, x1, y1); zeros where an object is not visible."""
        out = np.zeros((self.num_frames, MAX_OBJECTS, 4), np.float32)
        for t in range(self.num_frames):
            for i, m in enumerate(self.movers):
                box = m.box(t, self.num_frames, self.image_size)
                if box is not None:
                    out[t, i] = np.asarray(box, np.float32) / self.image_size
        return out


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    # a stream apart from the still scenes' (whose key has 3 entries), so the two worlds never share draws
    return np.random.default_rng([seed, SPLITS.index(split), index, 1])


def _fits(mover: Mover, num_frames: int, image_size: int) -> bool:
    boxes = [mover.box(t, num_frames, image_size) for t in range(mover.start, num_frames)]
    return all(b[0] >= 1 and b[1] >= 1 and b[2] <= image_size - 1 and b[3] <= image_size - 1 for b in boxes)


def _extent(mover: Mover, num_frames: int, image_size: int) -> tuple[int, int, int, int]:
    boxes = np.asarray([mover.box(t, num_frames, image_size) for t in range(mover.start, num_frames)])
    return int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max())


def _apart(a, b, gap: int = 1) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _sample_mover(rng, pair, start: int, num_frames: int, image_size: int, avoid=None) -> Mover | None:
    motion, shape = pair
    colour = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
    size = SIZES[int(rng.integers(2))]
    side = rng.uniform(*_SIDE[size]) * image_size
    for _ in range(50):  # rejection sampling: the whole path inside the frame, clear of the other object's path
        centre = tuple(float(v) for v in rng.uniform(side / 2 + 1, image_size - side / 2 - 1, 2))
        mover = Mover(colour, shape, size, motion, centre, side, start)
        if _fits(mover, num_frames, image_size) and (
            avoid is None or _apart(_extent(mover, num_frames, image_size), avoid)
        ):
            return mover
    return None


def sample_clip(rng: np.random.Generator, image_size: int, num_frames: int, split: str) -> Clip:
    """An actor over the whole clip, and half of the time a second object from the middle frame on."""
    allowed = [(m, s) for m in MOTIONS for s in SHAPES if (m, s) not in HELD_OUT]
    held = sorted(HELD_OUT)
    while True:
        pool = held if split == "compositional" else allowed
        actor = _sample_mover(rng, pool[int(rng.integers(len(pool)))], 0, num_frames, image_size)
        if actor is None:
            continue
        movers = [actor]
        if rng.random() < 0.5:
            extent = _extent(actor, num_frames, image_size)
            pair = allowed[int(rng.integers(len(allowed)))]
            second = _sample_mover(rng, pair, num_frames // 2, num_frames, image_size, avoid=extent)
            if second is not None:
                movers.append(second)
        background = tuple(int(v) for v in rng.integers(215, 256, 3))
        return Clip(image_size, num_frames, background, tuple(movers))


def render_clip(clip: Clip) -> np.ndarray:
    """The clip as uint8 [T, S, S, 3], each frame drawn by the still scenes' renderer."""
    frames = []
    for t in range(clip.num_frames):
        objects = []
        for m in clip.movers:
            box = m.box(t, clip.num_frames, clip.image_size)
            if box is not None:
                objects.append(ShapeObject(m.colour, m.shape, m.size, box))
        frames.append(render(Scene(clip.image_size, clip.background, tuple(objects))))
    return np.stack(frames)


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def captions(clip: Clip) -> list[str]:
    """Three phrasings of what happens, in order; the second object's part needs the frames' order. Each object is
    placed where it starts (on the frame's 3 x 3 grid), so that a caption names one clip among a thousand, as a
    retrieval test needs: without it, 27 % of the test clips share their caption with another."""
    actor, *rest = clip.movers
    out = []
    for name in (actor.name(), f"{actor.colour} {actor.shape}", actor.name()):
        text = f"{_a(name)} at the {start_place(actor, clip)} {PHRASES[actor.motion]}"
        if rest:
            other = rest[0]
            what = f"appears at the {start_place(other, clip)}"
            text += f", then {_a(other.colour + ' ' + other.shape)} {what}"
            text += "" if other.motion == "stays" else f" and {PHRASES[other.motion]}"
        out.append(text)
    out[2] = out[2].replace(", then", " and then")
    return out


def start_place(mover: Mover, clip: Clip) -> str:
    """Where the object's first drawn box lies on the 3 x 3 grid (its pixels, not its unrounded centre): the place
    its captions give it."""
    x0, y0, x1, y1 = mover.box(mover.start, clip.num_frames, clip.image_size)
    return grid_position(((x0 + x1) / 2, (y0 + y1) / 2), clip.image_size)


def generate(seed: int, split: str, index: int, image_size: int = 32, num_frames: int = 8) -> dict:
    """Clip `index` of `split`: frames uint8 [T,S,S,3], label (the actor's motion), captions, per-frame boxes."""
    if num_frames < 4:
        raise ValueError(f"moving_shapes needs at least 4 frames to show a motion, got num_frames={num_frames}")
    clip = sample_clip(_rng(seed, split, index), image_size, num_frames, split)
    return {
        "clip": clip,
        "video": render_clip(clip),
        "label": MOTIONS.index(clip.movers[0].motion),
        "motion": clip.movers[0].motion,
        "captions": captions(clip),
        "boxes": clip.boxes(),
    }
