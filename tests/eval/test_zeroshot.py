"""Zero-shot classification: CLIP template averaging and top-K / per-class / subset accuracy, by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmjax.eval import DEFAULT_TEMPLATES, build_prompts, class_embeddings, encode_class_prompts, zeroshot_metrics

# Two classes x two templates in 2-D.
#   class 0: (3, 4) -> (0.6, 0.8); (1, 0) -> (1, 0); mean (0.8, 0.4), norm sqrt(0.8) -> (2, 1) / sqrt(5)
#   class 1: (0, 2) -> (0, 1); (-3, 4) -> (-0.6, 0.8); mean (-0.3, 0.9), norm sqrt(0.9) -> (-1, 3) / sqrt(10)
PROMPT_EMBEDS = np.array([[[3, 4], [1, 0]], [[0, 2], [-3, 4]]], np.float32)
EXPECTED_CLASSES = np.array([[2 / math.sqrt(5), 1 / math.sqrt(5)], [-1 / math.sqrt(10), 3 / math.sqrt(10)]])


def test_template_averaging_normalizes_before_and_after_the_mean():
    np.testing.assert_allclose(class_embeddings(jnp.asarray(PROMPT_EMBEDS)), EXPECTED_CLASSES, rtol=1e-6)


def test_template_averaging_decides_the_class():
    # image (-0.3, -1): recipe scores  c0: (-0.6 - 1) / sqrt(5) = -0.716,  c1: (0.3 - 3) / sqrt(10) = -0.854 -> class 0;
    # the raw mean of the unnormalized prompts, (2, 2) vs (-1.5, 3): -2.6 vs -2.55, would pick class 1.
    image = np.array([[-0.3, -1.0]], np.float32)
    assert zeroshot_metrics(image, PROMPT_EMBEDS, [0], ks=(1,))["zeroshot/top1"] == 1.0


# Three one-hot classes; four images:
#   x0 (0.9, 0.1, 0)  label 0: scores .9 .1 0   -> rank 0
#   x1 (0.5, 0.5, 0)  label 1: class 0 ties .5  -> rank 1 (ties count against the true class)
#   x2 (0.2, 0.3, .5) label 0: .3 and .5 higher -> rank 2
#   x3 (0, 0, 1)      label 2:                  -> rank 0
CLASSES = np.eye(3, dtype=np.float32)
IMAGES = np.array([[0.9, 0.1, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5], [0, 0, 1]], np.float32)
LABELS = np.array([0, 1, 0, 2])


def test_hand_computed_accuracies():
    metrics = zeroshot_metrics(
        IMAGES, CLASSES, LABELS, ks=(1, 2), subsets={"heldout": [1, 2]}, class_names=["a", "b", "c"], per_class=True
    )
    expected = {
        "zeroshot/top1": 2 / 4,  # x0, x3
        "zeroshot/top2": 3 / 4,  # + x1
        # per class top-1: class 0 {x0 hit, x2 miss} = 1/2, class 1 {x1 miss} = 0, class 2 {x3 hit} = 1
        "zeroshot/per_class_top1/a": 0.5,
        "zeroshot/per_class_top1/b": 0.0,
        "zeroshot/per_class_top1/c": 1.0,
        "zeroshot/mean_per_class_top1": (0.5 + 0 + 1) / 3,
        # held-out classes {1, 2}: images x1, x3. All 3 classes as candidates: x1 rank 1, x3 rank 0.
        "zeroshot/heldout/top1": 1 / 2,
        "zeroshot/heldout/top2": 2 / 2,
        # Only classes 1 and 2 as candidates: x1 scores .5 (class 1) vs 0 (class 2) -> rank 0.
        "zeroshot/heldout/top1_among_subset": 2 / 2,
        "zeroshot/heldout/top2_among_subset": 2 / 2,
    }
    assert metrics == pytest.approx(expected)


def test_sharded_images_give_the_same_accuracy():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rng = np.random.default_rng(1)
    images = rng.normal(size=(32, 6)).astype(np.float32)
    prompts = rng.normal(size=(5, 3, 6)).astype(np.float32)
    labels = rng.integers(0, 5, 32)
    sharded = jax.device_put(images, NamedSharding(mesh, P("data")))
    kwargs = dict(ks=(1, 3), subsets={"odd": [1, 3]}, chunk_size=8)
    assert zeroshot_metrics(sharded, prompts, labels, **kwargs) == zeroshot_metrics(images, prompts, labels, **kwargs)


def test_build_prompts_and_encode_with_a_callable():
    prompts = build_prompts(["cat", "red circle"], ["a photo of a {}.", "{}"])
    assert prompts == [["a photo of a cat.", "cat"], ["a photo of a red circle.", "red circle"]]
    assert len(build_prompts(["x"])[0]) == len(DEFAULT_TEMPLATES)
    with pytest.raises(ValueError, match="exactly one"):
        build_prompts(["x"], ["no slot"])

    table = {"a {}": [3, 4], "the {}": [1, 0]}  # a fake text tower: embedding depends on template and class
    seen = []

    def encode_text(strings):
        seen.append(len(strings))
        return np.array([[v * (1 if s.endswith("x") else -1) for v in table[s[:-1] + "{}"]] for s in strings])

    embeds = encode_class_prompts(encode_text, ["x", "y"], ["a {}", "the {}"], batch_size=3)
    assert embeds.shape == (2, 2, 2) and seen == [3, 1]
    np.testing.assert_allclose(embeds, [[[3, 4], [1, 0]], [[-3, -4], [-1, 0]]])


def test_labels_out_of_range_are_an_error():
    with pytest.raises(ValueError, match="labels"):
        zeroshot_metrics(IMAGES, CLASSES, [0, 1, 2, 3])
