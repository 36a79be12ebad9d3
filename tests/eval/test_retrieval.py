"""Retrieval recall@K: hand-computed ranks with ties and several captions per image, and sharded == unsharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mmjax.eval import positive_ranks, recall_at_k, retrieval_metrics, retrieval_ranks

# Four images, four captions in 2-D. Image 3 has no caption; image 0 has two (captions 0 and 1).
IMAGES = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)
TEXTS = np.array([[1, 0], [0, 1], [0, 1], [1, 1]], np.float32)
TEXT_TO_IMAGE = np.array([0, 0, 1, 2])
# scores[image, caption] = <image, caption>:
#          T0  T1  T2  T3
#   I0  [   1,  0,  0,  1]
#   I1  [   0,  1,  1,  1]
#   I2  [  -1,  0,  0, -1]
#   I3  [   0, -1, -1, -1]
# image -> text (rank = wrong captions scoring >= the best correct caption):
#   I0: correct {T0: 1, T1: 0}, best 1; wrong T2=0, T3=1 -> T3 ties -> rank 1
#   I1: correct {T2: 1};  wrong T0=0, T1=1, T3=1 -> rank 2
#   I2: correct {T3: -1}; wrong T0=-1, T1=0, T2=0 -> rank 3
#   I3: no caption -> rank -1, left out: recall over 3 images
# text -> image (rank = other images scoring >= the caption's own image):
#   T0 (I0=1): others 0, -1, 0      -> rank 0
#   T1 (I0=0): I1=1, I2=0 tie, I3=-1 -> rank 2
#   T2 (I1=1): others 0, 0, -1      -> rank 0
#   T3 (I2=-1): I0=1, I1=1, I3=-1 tie -> rank 3
EXPECTED_I2T_RANKS = [1, 2, 3, -1]
EXPECTED_T2I_RANKS = [0, 2, 0, 3]


@pytest.mark.parametrize("chunk_size", [1, 3, 512])
def test_hand_computed_ranks_with_ties_and_several_captions(chunk_size):
    ranks = retrieval_ranks(IMAGES, TEXTS, TEXT_TO_IMAGE, chunk_size=chunk_size)
    np.testing.assert_array_equal(ranks["image_to_text"], EXPECTED_I2T_RANKS)
    np.testing.assert_array_equal(ranks["text_to_image"], EXPECTED_T2I_RANKS)


def test_hand_computed_recalls():
    metrics = retrieval_metrics(jnp.asarray(IMAGES), jnp.asarray(TEXTS), TEXT_TO_IMAGE, ks=(1, 2, 3, 5))
    expected = {
        # text -> image ranks [0, 2, 0, 3] over 4 captions
        "retrieval/text_to_image/recall@1": 2 / 4,
        "retrieval/text_to_image/recall@2": 2 / 4,
        "retrieval/text_to_image/recall@3": 3 / 4,
        "retrieval/text_to_image/recall@5": 4 / 4,
        # image -> text ranks [1, 2, 3] over the 3 images that have captions
        "retrieval/image_to_text/recall@1": 0 / 3,
        "retrieval/image_to_text/recall@2": 1 / 3,
        "retrieval/image_to_text/recall@3": 2 / 3,
        "retrieval/image_to_text/recall@5": 3 / 3,
    }
    assert metrics == pytest.approx(expected)


def test_default_keys():
    metrics = retrieval_metrics(IMAGES, TEXTS, TEXT_TO_IMAGE)
    assert sorted(metrics) == sorted(
        f"retrieval/{d}/recall@{k}" for d in ("text_to_image", "image_to_text") for k in (1, 5, 10)
    )


def test_all_ties_count_against_the_correct_item():
    # A collapsed model: every embedding equal. Each query ties with all 3 items; the 2 wrong ones rank first.
    same = np.ones((3, 4), np.float32)
    metrics = retrieval_metrics(same, same, [0, 1, 2], ks=(1, 2, 3))
    assert metrics["retrieval/text_to_image/recall@1"] == 0.0
    assert metrics["retrieval/image_to_text/recall@2"] == 0.0
    assert metrics["retrieval/image_to_text/recall@3"] == 1.0


def test_recall_at_k_ignores_queries_without_positive():
    assert recall_at_k(np.array([0, 4, -1, 1]), (1, 2, 5)) == {1: 1 / 3, 2: 2 / 3, 5: 1.0}
    assert np.isnan(recall_at_k(np.array([-1]), (1,))[1])


def test_gallery_mask_removes_items():
    # query [1, 0] against gallery scores [0.5, 0.9, 0.7]; positive is item 0 (id 7): rank 2, or 1 without item 1.
    gallery = np.array([[0.5, 0], [0.9, 0], [0.7, 0]], np.float32)
    args = (np.array([[1.0, 0.0]], np.float32), np.array([7]), gallery, np.array([7, 1, 2]))
    assert positive_ranks(*args).tolist() == [2]
    assert positive_ranks(*args, gallery_mask=np.array([True, False, True])).tolist() == [1]


def test_bad_text_to_image_is_an_error():
    with pytest.raises(ValueError, match="outside"):
        retrieval_metrics(IMAGES, TEXTS, [0, 0, 1, 4])
    with pytest.raises(ValueError, match="N_txt"):
        retrieval_metrics(IMAGES, TEXTS, [0, 0, 1])


def _reference_ranks(queries, query_ids, gallery, gallery_ids):
    """Independent check: sort the gallery by score, ties put wrong items first; rank = first correct position."""
    ranks = []
    for q, qid in zip(queries @ gallery.T, query_ids):
        correct = gallery_ids == qid
        if not correct.any():
            ranks.append(-1)
            continue
        order = np.lexsort((correct, -q))  # primary: score descending; secondary: wrong (False) before correct
        ranks.append(int(np.argmax(correct[order])))
    return np.array(ranks)


@pytest.mark.parametrize("integer_embeddings", [True, False])
def test_sharded_equals_unsharded_and_reference(integer_embeddings):
    assert jax.device_count() == 8, "tests/conftest.py sets 8 fake CPU devices"
    rng = np.random.default_rng(0)
    num_images, captions_per_image, dim = 64, 2, 8
    if integer_embeddings:  # small integers: exact scores with many ties
        images = rng.integers(-1, 2, (num_images, dim)).astype(np.float32)
        texts = rng.integers(-1, 2, (num_images * captions_per_image, dim)).astype(np.float32)
    else:
        images = rng.normal(size=(num_images, dim)).astype(np.float32)
        texts = rng.normal(size=(num_images * captions_per_image, dim)).astype(np.float32)
    text_to_image = rng.permutation(np.repeat(np.arange(num_images), captions_per_image)).astype(np.int32)

    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rows = NamedSharding(mesh, P("data"))
    sharded = [jax.device_put(x, rows) for x in (images, texts, text_to_image)]
    assert len(sharded[0].sharding.device_set) == 8

    expected_ranks = {
        "image_to_text": _reference_ranks(images, np.arange(num_images), texts, text_to_image),
        "text_to_image": _reference_ranks(texts, text_to_image, images, np.arange(num_images)),
    }
    for chunk_size in (16, 512):
        got = retrieval_ranks(*sharded, chunk_size=chunk_size)
        for direction, expected in expected_ranks.items():
            np.testing.assert_array_equal(got[direction], expected, err_msg=f"{direction} chunk {chunk_size}")
    assert retrieval_metrics(*sharded, chunk_size=16) == retrieval_metrics(images, texts, text_to_image)
