"""Image-text retrieval: recall@K in both directions, with several captions per image.

  text -> image: each caption is a query over all images; a hit at K when its own image is in the top K.
  image -> text: each image is a query over all captions; a hit at K when ANY of its captions is in the top K.

Ties are broken against the correct item (see `mmjax.eval.ranking`): rank = the number of WRONG items scoring
greater than or EQUAL to the best correct one, and a hit at K means rank < K. Images without any caption are left
out of the image -> text average (they are still candidates for text -> image).

Scores are plain dot products of the embeddings as given (models return L2-normalized embeddings, so this is the
cosine similarity). The similarity is computed under `jax.jit` in chunks of queries, on global and possibly sharded
jax.Arrays; only the [N] rank vectors come back to the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.eval.ranking import DEFAULT_CHUNK_SIZE, positive_ranks, recall_at_k, to_host

DEFAULT_KS = (1, 5, 10)


def retrieval_ranks(
    image_embeds: jax.Array,
    text_embeds: jax.Array,
    text_to_image: jax.Array | np.ndarray | Sequence[int],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, np.ndarray]:
    """Pessimistic ranks of the correct item for every query, in both directions.

    Args:
      image_embeds: [N_img, E] image embeddings (a jax.Array, possibly sharded over a mesh, or numpy).
      text_embeds: [N_txt, E] caption embeddings (possibly sharded).
      text_to_image: [N_txt] int, the index in [0, N_img) of the image each caption describes.
      chunk_size: queries scored per step (memory ~ chunk_size x gallery size floats).

    Returns:
      {"image_to_text": [N_img] int32, "text_to_image": [N_txt] int32} on the host; rank -1 marks an image with
      no caption.
    """
    num_images, num_texts = image_embeds.shape[0], text_embeds.shape[0]
    if isinstance(text_to_image, jax.Array):
        text_to_image = text_to_image.astype(jnp.int32)
    else:
        text_to_image = np.asarray(text_to_image, np.int32)
    owners = to_host(text_to_image)
    if text_to_image.shape != (num_texts,):
        raise ValueError(f"text_to_image must be [N_txt] = [{num_texts}], got shape {tuple(text_to_image.shape)}")
    if owners.size and (owners.min() < 0 or owners.max() >= num_images):
        raise ValueError(f"text_to_image holds image indices outside [0, {num_images}): {owners.min()}..{owners.max()}")
    image_ids = jnp.arange(num_images, dtype=jnp.int32)
    return {
        "image_to_text": positive_ranks(image_embeds, image_ids, text_embeds, text_to_image, chunk_size=chunk_size),
        "text_to_image": positive_ranks(text_embeds, text_to_image, image_embeds, image_ids, chunk_size=chunk_size),
    }


def retrieval_metrics(
    image_embeds: jax.Array,
    text_embeds: jax.Array,
    text_to_image: jax.Array | np.ndarray | Sequence[int],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    prefix: str = "retrieval",
) -> dict[str, float]:
    """Recall@K both ways: image_embeds [N_img, E], text_embeds [N_txt, E], text_to_image [N_txt] -> floats.

    Keys: f"{prefix}/text_to_image/recall@{k}" and f"{prefix}/image_to_text/recall@{k}" for k in ks, e.g.
    "retrieval/text_to_image/recall@1". Each value is the fraction of queries (captions, resp. images with at least
    one caption) that are hits at K under the pessimistic tie rule of the module docstring.
    """
    ranks = retrieval_ranks(image_embeds, text_embeds, text_to_image, chunk_size=chunk_size)
    metrics = {}
    for direction in ("text_to_image", "image_to_text"):
        for k, value in recall_at_k(ranks[direction], tuple(ks)).items():
            metrics[f"{prefix}/{direction}/recall@{k}"] = value
    return metrics
