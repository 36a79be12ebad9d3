"""The shapes world is deterministic, its scenes obey their rules, and every answer follows from the scene."""

import itertools
import re

import numpy as np
import pytest

from mmjax.data import shapes

SCENES = [shapes.generate(3, split, i, image_size=48) for split in shapes.SPLITS for i in range(60)]


def test_same_seed_same_bytes_and_different_seed_different_scene():
    a, b = shapes.generate(7, "train", 11), shapes.generate(7, "train", 11)
    assert a["image"].tobytes() == b["image"].tobytes()
    assert a["captions"] == b["captions"] and a["qa"] == b["qa"]
    np.testing.assert_array_equal(a["boxes"], b["boxes"])
    assert shapes.generate(8, "train", 11)["image"].tobytes() != a["image"].tobytes()
    assert shapes.generate(7, "test", 11)["image"].tobytes() != a["image"].tobytes()


@pytest.mark.parametrize("example", SCENES[::7])
def test_scene_rules(example):
    scene, image = example["scene"], example["image"]
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert 2 <= len(scene.objects) <= 5
    for a, b in itertools.combinations(scene.objects, 2):
        assert shapes._apart(a.box, b.box, gap=1), "objects overlap"
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        # The object's colour is drawn at its box centre (every shape covers its centre).
        np.testing.assert_allclose(image[(y0 + y1) // 2, (x0 + x1) // 2], shapes.COLOURS[obj.colour], atol=1)
    np.testing.assert_allclose(example["boxes"] * 48, [o.box for o in scene.objects])
    assert list(example["labels"]) == [o.label for o in scene.objects]
    # Outside every box the image is pure background.
    outside = np.ones((48, 48), bool)
    for x0, y0, x1, y1 in (o.box for o in scene.objects):
        outside[y0:y1, x0:x1] = False
    assert (image[outside] == scene.background).all()


def test_compositional_split_is_the_only_one_with_held_out_pairs():
    for example in SCENES:
        pairs = {(o.colour, o.shape) for o in example["scene"].objects}
        split = shapes.SPLITS[SCENES.index(example) // 60]
        assert bool(pairs & shapes.HELD_OUT) == (split == "compositional")


def test_captions_name_every_object():
    for example in SCENES:
        scene = example["scene"]
        assert len(example["captions"]) == 5
        for i, caption in enumerate(example["captions"]):
            for obj in scene.objects:
                assert obj.colour in caption and obj.shape in caption and obj.size in caption
                # Caption 3 places objects relative to each other instead of on the grid.
                assert i == 3 or scene.position(obj) in caption


def _resolve(scene, phrase):
    """The one object a referent phrase like 'small red circle' / 'red object' / 'circle' names."""
    words = phrase.split()
    matches = [
        o
        for o in scene.objects
        if all(w in (o.size, o.colour, o.shape) or w == "object" for w in words)
        and (words[-1] == "object" or words[-1] == o.shape)
    ]
    assert len(matches) == 1, f"{phrase!r} is ambiguous in {scene}"
    return matches[0]


def _centre_dist(a, b):
    return np.hypot(a.centre[0] - b.centre[0], a.centre[1] - b.centre[1])


def _derive(scene, question):
    """Answers a question from the scene description alone, parsing its text without the generator's help."""
    objs = scene.objects
    if m := re.fullmatch(r"what shape is the object (closest to|furthest from) the (.+)\?", question):
        ref = _resolve(scene, m[2])
        dists = sorted((_centre_dist(o, ref), o.shape) for o in objs if o is not ref)
        kind = "closest" if m[1] == "closest to" else "furthest"
        return kind, (dists[0] if kind == "closest" else dists[-1])[1]
    if m := re.fullmatch(r"what (color|shape|size) is the (.+)\?", question):
        obj = _resolve(scene, m[2])
        attr = {"color": "colour", "shape": "shape", "size": "size"}[m[1]]
        assert getattr(obj, attr) not in m[2].split(), "the question gives its answer away"
        return "color" if m[1] == "color" else m[1], getattr(obj, attr)
    if m := re.fullmatch(r"how many (\w+)s are there\?", question):
        return "count", str(sum(o.shape == m[1] for o in objs))
    if m := re.fullmatch(r"how many (\w+) objects are there\?", question):
        return "count", str(sum(o.colour == m[1] for o in objs))
    if m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
        return "exists", "yes" if any((o.colour, o.shape) == (m[1], m[2]) for o in objs) else "no"
    if m := re.fullmatch(r"is the (.+) (left of|above) the (.+)\?", question):
        a, b = _resolve(scene, m[1]), _resolve(scene, m[3])
        axis = 0 if m[2] == "left of" else 1
        return m[2].replace(" ", "_"), "yes" if a.centre[axis] < b.centre[axis] else "no"
    raise AssertionError(f"unparsed question {question!r}")


def test_every_answer_rederived_from_the_scene_for_every_question_type():
    seen = set()
    for example in SCENES:
        for question, answer, kind in example["qa"]:
            assert answer in shapes.ANSWERS and kind in shapes.QUESTION_TYPES
            assert _derive(example["scene"], question) == (kind, answer), question
            seen.add(kind)
    assert seen == set(shapes.QUESTION_TYPES)


def test_answers_are_not_guessable_from_the_type_alone():
    answers = {}
    for example in SCENES:
        for _, answer, kind in example["qa"]:
            answers.setdefault(kind, []).append(answer)
    for kind, values in answers.items():
        _, counts = np.unique(values, return_counts=True)
        assert counts.max() / counts.sum() < 0.7, f"{kind}: one answer dominates"
