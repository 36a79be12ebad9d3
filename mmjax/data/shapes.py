"""The `shapes` world: scenes of 2-5 coloured shapes, their captions, and Sort-of-CLEVR style questions.

Pure numpy and deterministic: scene `index` of split `split` under `seed` is drawn from its own generator
`np.random.default_rng([seed, split_id, index])`, so any scene can be regenerated alone, in any order.

A scene is a background colour plus non-overlapping objects, each a (colour, shape, size) in a square box.
The compositional split uses only scenes holding at least one colour-shape pair from `HELD_OUT`, and the other
splits never contain those pairs, so a model must compose attributes it has only seen apart.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 20),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
    "cyan": (30, 200, 210),
    "brown": (120, 70, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
SIZES = ("small", "large")
# Box side as a fraction of the image side, per size; far enough apart that size is never ambiguous.
_SIDE = {"small": (0.13, 0.16), "large": (0.23, 0.27)}
COLOUR_NAMES = tuple(COLOURS)
HELD_OUT = frozenset((c, SHAPES[i % len(SHAPES)]) for i, c in enumerate(COLOUR_NAMES))
SPLITS = ("train", "validation", "test", "compositional")
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five")
ANSWERS = (*COLOUR_NAMES, *SHAPES, *SIZES, *(str(n) for n in range(6)), "yes", "no")
QUESTION_TYPES = ("color", "shape", "size", "count", "exists", "closest", "furthest", "left_of", "above")
SUBSET_ALL = ("size", "colour", "shape")
# Relations whose two sides differ by fewer pixels than this are too close to call, so no question asks them.
_MARGIN = 3.0


@dataclasses.dataclass(frozen=True)
class ShapeObject:
    colour: str
    shape: str
    size: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    @property
    def label(self) -> int:
        """Colour-shape class in [0, 40): what a detector would name this region."""
        return COLOUR_NAMES.index(self.colour) * len(SHAPES) + SHAPES.index(self.shape)

    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Scene:
    image_size: int
    background: tuple[int, int, int]
    objects: tuple[ShapeObject, ...]

    def position(self, obj: ShapeObject) -> str:
        """Where an object sits on a 3x3 grid: "top left", "top", ..., "center", ..., "bottom right"."""
        return grid_position(obj.centre, self.image_size)


def grid_position(centre: tuple[float, float], image_size: int) -> str:
    """Where the point (x, y) lies on a 3x3 grid of the frame: "top left", "top", ..., "center", ..., "bottom right"."""
    third = image_size / 3
    col = ("left", "", "right")[min(int(centre[0] // third), 2)]
    row = ("top", "", "bottom")[min(int(centre[1] // third), 2)]
    return " ".join(w for w in (row, col) if w) or "center"


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index])


def sample_scene(rng: np.random.Generator, image_size: int, split: str) -> Scene:
    """Draws 2-5 non-overlapping objects; compositional scenes hold >= 1 `HELD_OUT` pair, others none."""
    allowed = [p for p in itertools.product(COLOUR_NAMES, SHAPES) if p not in HELD_OUT]
    held = sorted(HELD_OUT)
    while True:  # rejection sampling; 5 large objects fill < 40% of the image, so this ends quickly
        count = int(rng.integers(2, 6))
        pairs = [allowed[i] for i in rng.integers(0, len(allowed), count)]
        if split == "compositional":
            pairs[0] = held[int(rng.integers(len(held)))]
        objects = []
        for colour, shape in pairs:
            size = SIZES[int(rng.integers(2))]
            side = max(5, round(rng.uniform(*_SIDE[size]) * image_size))
            for _ in range(50):
                x0, y0 = (int(v) for v in rng.integers(1, image_size - side, 2))
                box = (x0, y0, x0 + side, y0 + side)
                if all(_apart(box, o.box, gap=2) for o in objects):
                    objects.append(ShapeObject(colour, shape, size, box))
                    break
        if len(objects) == count:
            background = tuple(int(v) for v in rng.integers(215, 256, 3))
            return Scene(image_size, background, tuple(objects))


def _apart(a, b, gap: int) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of points (u, v) in [-1, 1]^2 (v pointing down) in a shape filling that square."""
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":  # apex up, base along the bottom edge
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "cross":
        return ((np.abs(u) <= 0.34) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.34) & (np.abs(u) <= 1.0))
    raise ValueError(f"unknown shape {shape!r}")


def render(scene: Scene, supersample: int = 4) -> np.ndarray:
    """The scene as uint8 [S, S, 3]; edges are anti-aliased by averaging supersample^2 points per pixel."""
    size = scene.image_size
    image = np.empty((size, size, 3), np.float32)
    image[:] = scene.background
    offsets = (np.arange(supersample) + 0.5) / supersample
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        side = x1 - x0
        # Sample points inside each pixel of the box, mapped to the shape's [-1, 1] frame.
        xs = ((np.arange(x0, x1)[:, None] + offsets[None]).ravel() - x0) / side * 2 - 1
        ys = ((np.arange(y0, y1)[:, None] + offsets[None]).ravel() - y0) / side * 2 - 1
        hit = _inside(obj.shape, xs[None, :], ys[:, None]).astype(np.float32)
        coverage = hit.reshape(side, supersample, side, supersample).mean(axis=(1, 3))[..., None]
        patch = image[y0:y1, x0:x1]
        image[y0:y1, x0:x1] = patch * (1 - coverage) + np.asarray(COLOURS[obj.colour], np.float32) * coverage
    return np.round(image).astype(np.uint8)


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _relation(a: ShapeObject, b: ShapeObject) -> str:
    """The dominant direction from a to b, worded as a's relation to b."""
    dx, dy = b.centre[0] - a.centre[0], b.centre[1] - a.centre[1]
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five captions, each naming every object's size, colour, shape and place, in different words and orders.

    Naming everything makes each caption pick out its scene among thousands: what retrieval training needs.
    """
    objs = list(scene.objects)
    left_to_right = sorted(objs, key=lambda o: o.centre)
    shuffled = [objs[i] for i in rng.permutation(len(objs))]
    n = COUNT_WORDS[len(objs)]
    per_shape = [
        f"{COUNT_WORDS[k]} {s}s" if k > 1 else f"one {s}" for s in SHAPES if (k := sum(o.shape == s for o in objs))
    ]
    chain = [_a(shuffled[0].name())] + [
        f"{_relation(prev, cur)} {_a(cur.name())}" for prev, cur in zip(shuffled, shuffled[1:])
    ]
    return [
        _join([f"{_a(o.name())} at the {scene.position(o)}" for o in left_to_right]) + ".",
        f"{n} shapes: " + _join([f"{_a(o.name())} ({scene.position(o)})" for o in shuffled]) + ".",
        _join(per_shape) + ". " + " ".join(f"the {o.colour} {o.shape} is {o.size}, {scene.position(o)}." for o in objs),
        " ".join(chain) + ", " + ", ".join(f"the {o.shape} at the {scene.position(o)}" for o in shuffled[:2]) + ".",
        f"a picture of {n} objects. " + _join([f"{scene.position(o)}: {_a(o.name())}" for o in shuffled[::-1]]),
    ]


def referent(scene: Scene, obj: ShapeObject, avoid: str) -> str | None:
    """The shortest phrase naming only `obj` without using attribute `avoid` (which the question asks about).

    Phrases are built from subsets of (size, colour, shape), e.g. "circle", "red object", "small red circle".
    """
    for attrs in (
        ("shape",),
        ("colour",),
        ("colour", "shape"),
        ("size", "shape"),
        ("size", "colour"),
        SUBSET_ALL,
    ):
        if avoid in attrs:
            continue
        mine = [getattr(obj, a) for a in attrs]
        if sum([getattr(o, a) for a in attrs] == mine for o in scene.objects) == 1:
            words = [getattr(obj, a) for a in ("size", "colour") if a in attrs]
            return " ".join([*words, obj.shape if "shape" in attrs else "object"])
    return None


def questions(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(question, answer, question type) triples: one per type that this scene can answer unambiguously."""
    objs = list(scene.objects)
    out = []

    def pick(items):
        return items[int(rng.integers(len(items)))]

    for attr, word in (("colour", "color"), ("shape", "shape"), ("size", "size")):
        named = [(o, r) for o in objs if (r := referent(scene, o, avoid=attr))]
        if named:
            o, r = pick(named)
            out.append((f"what {word} is the {r}?", getattr(o, attr), word))
    # Counting mostly what is there (answers 1-5), sometimes what is not (answer 0).
    subject = pick(objs) if rng.random() < 0.75 else None
    if rng.random() < 0.5:
        shape = subject.shape if subject else pick(SHAPES)
        out.append((f"how many {shape}s are there?", str(sum(o.shape == shape for o in objs)), "count"))
    else:
        colour = subject.colour if subject else pick(COLOUR_NAMES)
        out.append((f"how many {colour} objects are there?", str(sum(o.colour == colour for o in objs)), "count"))
    present = {(o.colour, o.shape) for o in objs}
    # Half the existence questions name a pair that is there, half one that is not, so "yes" is not a prior.
    if rng.random() < 0.5:
        colour, shape = pick(sorted(present))
    else:
        colour, shape = pick([p for p in itertools.product(COLOUR_NAMES, SHAPES) if p not in present])
    out.append((f"is there a {colour} {shape}?", "yes" if (colour, shape) in present else "no", "exists"))
    named = [(o, r) for o in objs if (r := referent(scene, o, avoid=""))]
    for kind, choose in (("closest", min), ("furthest", max)):
        candidates = [(o, r) for o, r in named if _extreme(scene, o, choose) is not None]
        if candidates:
            o, r = pick(candidates)
            word = "closest to" if kind == "closest" else "furthest from"
            out.append((f"what shape is the object {word} the {r}?", _extreme(scene, o, choose).shape, kind))
    for kind, axis, word in (("left_of", 0, "left of"), ("above", 1, "above")):
        pairs = [
            (a, b) for a, b in itertools.permutations(named, 2) if abs(a[0].centre[axis] - b[0].centre[axis]) >= _MARGIN
        ]
        if pairs:
            (a, ra), (b, rb) = pick(pairs)
            answer = "yes" if a.centre[axis] < b.centre[axis] else "no"
            out.append((f"is the {ra} {word} the {rb}?", answer, kind))
    return out


def distance(a: ShapeObject, b: ShapeObject) -> float:
    return float(np.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]))


def _extreme(scene: Scene, obj: ShapeObject, choose) -> ShapeObject | None:
    """The object nearest (choose=min) or furthest (max) from `obj`, if no other is within `_MARGIN` of it."""
    others = sorted((o for o in scene.objects if o is not obj), key=lambda o: distance(o, obj))
    best = choose(others, key=lambda o: distance(o, obj))
    if len(others) == 1:
        return best
    runner_up = others[1] if choose is min else others[-2]
    if abs(distance(best, obj) - distance(runner_up, obj)) < _MARGIN:
        return None
    return best


def generate(seed: int, split: str, index: int, image_size: int = 64) -> dict:
    """Scene `index` of `split`: image uint8 [S,S,3], 5 captions, QA triples, objects (boxes in [0,1])."""
    rng = _rng(seed, split, index)
    scene = sample_scene(rng, image_size, split)
    return {
        "scene": scene,
        "image": render(scene),
        "captions": captions(scene, rng),
        "qa": questions(scene, rng),
        "boxes": np.asarray([o.box for o in scene.objects], np.float32) / image_size,
        "labels": np.asarray([o.label for o in scene.objects], np.int64),
    }
