"""The one heavy kernel behind retrieval and zero-shot: the rank of the best positive for every query.

A query q (an image, a caption) is scored against every gallery item g (the captions, the images, the classes)
by the dot product <q, g>. Item g is a POSITIVE of q when `gallery_ids[g] == query_ids[q]`; several positives per
query are allowed (an image with five captions). The rank of q is

    rank(q) = #{ g : g is NOT a positive of q, gallery_mask[g], score(q, g) >= best(q) }
    best(q) = max over the positives p of q of score(q, p)

i.e. the 0-based position of the first positive in the sorted gallery when every TIE IS BROKEN AGAINST THE
POSITIVE (the pessimistic rule). A query is a hit at K when rank(q) < K. With this rule a degenerate model whose
embeddings are all equal scores recall@1 = 0, not 1 as the "count strictly higher" convention would give; with
continuous embeddings ties have probability zero and both conventions agree. A query with no positive in the
gallery gets rank -1 and is left out of every average by the callers.

Memory: the [Q, G] score matrix is never built whole. The queries are processed in `chunk_size` rows at a time
with `lax.map`, so the peak is about `chunk_size * G` floats (5k images x 25k captions at chunk 512: 51 MB instead
of 500 MB). Sharding: the function is jitted on global arrays and assumes nothing about devices. Row i of a chunk
is taken as i*n_steps + s (interleaved), so every chunk spans the whole, possibly sharded, query axis; XLA picks the
communication. On an 8-device mesh with both sides sharded along their first axis it keeps the gallery sharded,
gathers each [chunk, E] query block and all-reduces the per-row max/count (5k x 25k x 512: ~14 MB temp per device).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

DEFAULT_CHUNK_SIZE = 512


def _ranks_of_chunk(queries, query_ids, gallery, gallery_ids, gallery_mask):
    """[c, E], [c], [G, E], [G], [G] -> [c] int32 pessimistic ranks (-1 where a query has no positive)."""
    scores = jnp.einsum("qe,ge->qg", queries, gallery, precision=jax.lax.Precision.HIGHEST)
    positive = (query_ids[:, None] == gallery_ids[None, :]) & gallery_mask[None, :]
    best = jnp.max(jnp.where(positive, scores, -jnp.inf), axis=1)
    beaten_or_tied = (scores >= best[:, None]) & ~positive & gallery_mask[None, :]
    ranks = jnp.sum(beaten_or_tied, axis=1, dtype=jnp.int32)
    return jnp.where(jnp.any(positive, axis=1), ranks, -1)


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _ranks(queries, query_ids, gallery, gallery_ids, gallery_mask, *, chunk_size: int):
    num_queries = queries.shape[0]
    chunk = max(1, min(chunk_size, num_queries))
    n_steps = -(-num_queries // chunk)
    pad = chunk * n_steps - num_queries
    queries = jnp.pad(queries.astype(jnp.float32), ((0, pad), (0, 0)))
    query_ids = jnp.pad(query_ids, (0, pad))
    gallery = gallery.astype(jnp.float32)
    # Row r = c * n_steps + s goes to step s, slot c: every step takes rows spread over the whole (sharded) axis.
    q_steps = queries.reshape(chunk, n_steps, -1).swapaxes(0, 1)
    id_steps = query_ids.reshape(chunk, n_steps).swapaxes(0, 1)
    out = jax.lax.map(lambda xs: _ranks_of_chunk(xs[0], xs[1], gallery, gallery_ids, gallery_mask), (q_steps, id_steps))
    return out.swapaxes(0, 1).reshape(-1)[:num_queries]


def positive_ranks(
    queries: jax.Array,
    query_ids: jax.Array,
    gallery: jax.Array,
    gallery_ids: jax.Array,
    gallery_mask: jax.Array | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Pessimistic rank of the best positive of each query (see the module docstring).

    Args:
      queries: [Q, E] embeddings (any float dtype; scored in float32). May be a sharded jax.Array.
      query_ids: [Q] int, the id each query's positives carry.
      gallery: [G, E] embeddings. May be sharded.
      gallery_ids: [G] int; g is a positive of q when gallery_ids[g] == query_ids[q].
      gallery_mask: [G] bool, items to leave out of the ranking altogether (neither positive nor negative);
        None keeps all.
      chunk_size: query rows scored per step; bounds memory to about chunk_size * G floats.

    Returns:
      [Q] int32 numpy array on the host: rank in [0, G), or -1 for a query with no positive.
    """
    query_ids, gallery_ids = jnp.asarray(query_ids, jnp.int32), jnp.asarray(gallery_ids, jnp.int32)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"expected [Q, E] and [G, E] embeddings, got {tuple(queries.shape)} and {tuple(gallery.shape)}"
        )
    if query_ids.shape != (queries.shape[0],) or gallery_ids.shape != (gallery.shape[0],):
        raise ValueError(
            f"ids must be [Q] and [G]: got {tuple(query_ids.shape)} for {queries.shape[0]} queries and "
            f"{tuple(gallery_ids.shape)} for {gallery.shape[0]} gallery items"
        )
    if gallery_mask is None:
        gallery_mask = jnp.ones(gallery.shape[0], bool)
    ranks = _ranks(
        queries,
        query_ids,
        gallery,
        gallery_ids,
        jnp.asarray(gallery_mask, bool),
        chunk_size=int(chunk_size),
    )
    return to_host(ranks)


def to_host(x) -> np.ndarray:
    """A (possibly sharded, possibly multi-host) array as a numpy array on every process; meant for small arrays."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def recall_at_k(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    """Fraction of queries with 0 <= rank < k, for each k; queries with rank -1 (no positive) are left out.

    [Q] int -> {k: float}. With no valid query every recall is NaN.
    """
    ranks = np.asarray(ranks)
    valid = ranks >= 0
    n = int(valid.sum())
    return {k: (float(np.sum(valid & (ranks < k)) / n) if n else float("nan")) for k in ks}
