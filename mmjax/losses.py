"""Losses: image-text contrastive (CLIP softmax, SigLIP sigmoid), token cross-entropy (MLM, captioning, ITM),
and sigmoid cross-entropy with soft targets (VQA).

Every function is pure (jnp arrays in, jnp arrays out) and computes in float32 whatever the input dtype, so a
bfloat16 model still gets a float32 loss and float32 gradients into its logits. Each returns
`(loss, metrics)`: a scalar and a dict of scalars to log (unused metrics cost nothing under jit).

Sharding. The contrastive losses are written on GLOBAL arrays, so under `jax.jit` with a batch sharded over
devices every example already sees every other example of the global batch as a negative: the compiler
inserts the all-gather of the (small) [B, D] text embeddings and the reductions over the sharded rows. What
the code adds is a layout: the [B, B] logits are constrained to ("batch", None), i.e. split by rows over the
batch mesh axes, so each device holds B/n rows instead of a replicated B x B matrix (at B = 32k that is
4 GiB in float32 per copy). The constraint is expressed with logical names and takes effect inside
`mmjax.sharding.activation_context`; elsewhere it is a no-op.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from mmjax.sharding import BATCH_AXES

Metrics = dict[str, jax.Array]

_ROWS = ("batch", None)  # [B, B] logits: rows follow the batch, every device keeps all columns


def _f32(x) -> jax.Array:
    return jnp.asarray(x, jnp.float32)


def _check_square(logits: jax.Array, name: str) -> None:
    if logits.ndim != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(
            f"{name} expects square [B, B] image-text logits (pair i of the batch is the positive of row i), "
            f"got shape {tuple(logits.shape)}"
        )


def contrastive_logits(
    image_embeds: jax.Array, text_embeds: jax.Array, scale: jax.Array | float, bias: jax.Array | float | None = None
) -> jax.Array:
    """logits[i, j] = scale * <image_i, text_j> (+ bias): [B, D], [B', D] -> [B, B'] float32, row-sharded.

    `scale` is the multiplier itself (CLIP: exp of the learned log-temperature, already clamped by the model);
    `bias` is SigLIP's learned bias. Embeddings are used as given: the model L2-normalizes them.
    """
    image_embeds = nn.with_logical_constraint(_f32(image_embeds), ("batch", "embed"))
    logits = jnp.einsum("nd,md->nm", image_embeds, _f32(text_embeds)) * _f32(scale)
    if bias is not None:
        logits = logits + _f32(bias)
    return nn.with_logical_constraint(logits, _ROWS)


def _retrieval_accuracy(logits: jax.Array) -> Metrics:
    targets = jnp.arange(logits.shape[0])
    return {
        "i2t_accuracy": jnp.mean(jnp.argmax(logits, axis=1) == targets),
        "t2i_accuracy": jnp.mean(jnp.argmax(logits, axis=0) == targets),
    }


def softmax_contrastive_loss(logits_per_image: jax.Array) -> tuple[jax.Array, Metrics]:
    """Symmetric CLIP loss: mean of image->text and text->image cross-entropy with targets arange(B).

    logits_per_image: [B, B], row i = image i against every text (`logits_per_text` is its transpose).
    Returns (loss, {'loss_i2t', 'loss_t2i', 'i2t_accuracy', 't2i_accuracy'}).
    """
    _check_square(logits_per_image, "softmax_contrastive_loss")
    logits = nn.with_logical_constraint(_f32(logits_per_image), _ROWS)
    positives = jnp.diagonal(logits)
    loss_i2t = jnp.mean(jax.nn.logsumexp(logits, axis=1) - positives)
    loss_t2i = jnp.mean(jax.nn.logsumexp(logits, axis=0) - positives)
    loss = 0.5 * (loss_i2t + loss_t2i)
    return loss, {"loss_i2t": loss_i2t, "loss_t2i": loss_t2i, **_retrieval_accuracy(logits)}


def sigmoid_contrastive_loss(logits_per_image: jax.Array) -> tuple[jax.Array, Metrics]:
    """SigLIP loss: every image-text pair is an independent binary problem, +1 on the diagonal, -1 elsewhere.

    logits_per_image: [B, B] = scale * image @ text.T + bias.
    loss = -sum_ij log_sigmoid(label_ij * logits_ij) / B  (normalized by the batch, as in the paper).
    Returns (loss, {'i2t_accuracy', 't2i_accuracy', 'positive_logit', 'negative_logit'}).
    """
    _check_square(logits_per_image, "sigmoid_contrastive_loss")
    logits = nn.with_logical_constraint(_f32(logits_per_image), _ROWS)
    b = logits.shape[0]
    is_positive = jnp.eye(b, dtype=bool)
    labels = jnp.where(is_positive, 1.0, -1.0)
    loss = -jnp.sum(jax.nn.log_sigmoid(labels * logits)) / b
    metrics = {
        "positive_logit": jnp.sum(jnp.where(is_positive, logits, 0.0)) / b,
        "negative_logit": jnp.sum(jnp.where(is_positive, 0.0, logits)) / max(b * (b - 1), 1),
        **_retrieval_accuracy(logits),
    }
    return loss, metrics


# ------------------------------------------------------------------------------------ the ring (chunked) losses


def ring_contrastive_loss(
    image_embeds: jax.Array,
    text_embeds: jax.Array,
    scale: jax.Array | float,
    bias: jax.Array | float | None = None,
    *,
    kind: str = "sigmoid",
    axes: tuple[str, ...] = BATCH_AXES,
) -> tuple[jax.Array, Metrics]:
    """The contrastive loss of the global batch without its [B, B] logits: SigLIP's chunked ring.

    Each of the n devices on the batch axes of the current mesh (`jax.set_mesh`; `activation_context` sets it)
    keeps its B/n images and passes its B/n text embeddings to the next device n-1 times (`ppermute`), so no
    device holds more than a (B/n) x (B/n) block of logits, and the block is recomputed in the backward pass
    rather than kept. `kind='sigmoid'` sums the independent pair losses block by block; `kind='softmax'` carries
    each image's log-sum-exp on its device and each text's along with the text, so CLIP's loss gets the same
    memory bound. Loss and metrics equal `sigmoid_contrastive_loss` / `softmax_contrastive_loss` of
    `contrastive_logits(image_embeds, text_embeds, scale, bias)`; without a mesh (or with one device on the batch
    axes) it is that global computation.
    """
    if kind not in ("sigmoid", "softmax"):
        raise ValueError(f"ring_contrastive_loss: kind must be 'sigmoid' or 'softmax', got {kind!r}")
    mesh = jax.sharding.get_abstract_mesh()
    names = () if mesh.empty else tuple(a for a in axes if a in mesh.axis_names and mesh.shape[a] > 1)
    if not names:
        logits = contrastive_logits(image_embeds, text_embeds, scale, bias)
        return (sigmoid_contrastive_loss if kind == "sigmoid" else softmax_contrastive_loss)(logits)
    n = math.prod(mesh.shape[a] for a in names)
    if image_embeds.shape[0] != text_embeds.shape[0] or image_embeds.shape[0] % n:
        raise ValueError(
            f"ring_contrastive_loss needs as many images as texts, divisible by the {n} devices on {names}; got "
            f"{image_embeds.shape[0]} images and {text_embeds.shape[0]} texts"
        )
    rows = P(names, None)
    ring = jax.shard_map(
        functools.partial(_ring, kind=kind, axes=names, n=n),
        mesh=mesh,
        in_specs=(rows, rows, P(), P()),
        out_specs=P(),
    )
    return ring(_f32(image_embeds), _f32(text_embeds), _f32(scale), _f32(0.0 if bias is None else bias))


def _ring(images, texts, scale, bias, *, kind: str, axes: tuple[str, ...], n: int):
    """One device's share: images [b, D] stay, texts [b, D] travel with their columns' running statistics."""
    b = images.shape[0]
    eye = jnp.eye(b, dtype=bool)

    def logits_with(chunk):
        return scale * (images @ chunk.T) + bias

    # block 0: this device's own pairs, the only block with positives
    logits = logits_with(texts)
    positive = jnp.diagonal(logits)
    rows = {"max": logits.max(axis=1), "hit": jnp.argmax(logits, axis=1) == jnp.arange(b)}
    cols = {"max": logits.max(axis=0), "hit": jnp.argmax(logits, axis=0) == jnp.arange(b), "pos": positive}
    sums = {"positive": positive.sum()}
    if kind == "sigmoid":
        sums["loss"] = -jnp.sum(jax.nn.log_sigmoid(jnp.where(eye, logits, -logits)))
        sums["negative"] = logits.sum() - sums["positive"]
    else:
        rows["sum"] = jnp.exp(logits - rows["max"][:, None]).sum(axis=1)
        cols["sum"] = jnp.exp(logits - cols["max"][None, :]).sum(axis=0)

    perm = [(j, (j + 1) % n) for j in range(n)]

    # blocks 1..n-1: the texts of the device k steps back, negatives only; remat keeps one block alive at a time
    @jax.checkpoint
    def step(carry, _):
        chunk, cols, rows, sums = carry
        chunk, cols = jax.lax.ppermute((chunk, cols), axes, perm)
        logits = logits_with(chunk)
        row_max, col_max = logits.max(axis=1), logits.max(axis=0)
        new_rows = {"max": jnp.maximum(rows["max"], row_max), "hit": rows["hit"] & (row_max < rows["max"])}
        new_cols = {"max": jnp.maximum(cols["max"], col_max), "hit": cols["hit"] & (col_max < cols["max"])}
        new_cols["pos"] = cols["pos"]
        sums = dict(sums)
        if kind == "sigmoid":
            sums["loss"] = sums["loss"] - jnp.sum(jax.nn.log_sigmoid(-logits))
            sums["negative"] = sums["negative"] + logits.sum()
        else:  # online log-sum-exp: rescale the running sums to the new maxima
            new_rows["sum"] = rows["sum"] * jnp.exp(rows["max"] - new_rows["max"]) + jnp.exp(
                logits - new_rows["max"][:, None]
            ).sum(axis=1)
            new_cols["sum"] = cols["sum"] * jnp.exp(cols["max"] - new_cols["max"]) + jnp.exp(
                logits - new_cols["max"][None, :]
            ).sum(axis=0)
        return (chunk, new_cols, new_rows, sums), None

    (_, cols, rows, sums), _ = jax.lax.scan(step, (texts, cols, rows, sums), length=n - 1)

    total = b * n

    def mean(x):
        return jax.lax.psum(jnp.sum(x), axes) / total

    metrics = {"i2t_accuracy": mean(rows["hit"]), "t2i_accuracy": mean(cols["hit"])}
    if kind == "sigmoid":
        loss = jax.lax.psum(sums["loss"], axes) / total
        metrics["positive_logit"] = jax.lax.psum(sums["positive"], axes) / total
        metrics["negative_logit"] = jax.lax.psum(sums["negative"], axes) / max(total * (total - 1), 1)
        return loss, metrics
    loss_i2t = mean(rows["max"] + jnp.log(rows["sum"]) - positive)
    loss_t2i = mean(cols["max"] + jnp.log(cols["sum"]) - cols["pos"])
    return 0.5 * (loss_i2t + loss_t2i), {**metrics, "loss_i2t": loss_i2t, "loss_t2i": loss_t2i}


def token_cross_entropy(logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0) -> jax.Array:
    """Per-token cross-entropy: logits [..., V], int labels [...] -> [...] float32.

    With label smoothing e the target is (1 - e) * one_hot(label) + e / V. Labels outside [0, V) (e.g. -100
    for ignored positions) give finite values; exclude them with a mask when reducing.
    """
    log_probs = jax.nn.log_softmax(_f32(logits), axis=-1)
    safe_labels = jnp.clip(labels, 0, logits.shape[-1] - 1)
    nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(log_probs, axis=-1)
    return nll


def masked_cross_entropy(
    logits: jax.Array, labels: jax.Array, mask: jax.Array | None = None, *, label_smoothing: float = 0.0
) -> tuple[jax.Array, Metrics]:
    """Mean token cross-entropy over positions where `mask` is true (MLM, captioning, ITM as V=2).

    logits [..., V], labels int [...], mask [...] bool/int (None = every position counts).
    Returns (loss, {'accuracy', 'num_tokens'}); with no real token the loss is 0, not NaN.
    """
    if labels.shape != logits.shape[:-1]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match logits {tuple(logits.shape)} minus the last axis")
    weights = jnp.ones(labels.shape, jnp.float32) if mask is None else _f32(mask)
    if weights.shape != labels.shape:
        raise ValueError(f"mask {tuple(weights.shape)} does not match labels {tuple(labels.shape)}")
    nll = token_cross_entropy(logits, labels, label_smoothing=label_smoothing)
    num_tokens = jnp.sum(weights)
    denominator = jnp.maximum(num_tokens, 1.0)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    loss = jnp.sum(nll * weights) / denominator
    return loss, {"accuracy": jnp.sum(correct * weights) / denominator, "num_tokens": num_tokens}


def soft_sigmoid_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array | None = None
) -> tuple[jax.Array, Metrics]:
    """Sigmoid cross-entropy with soft targets (VQA): logits [B, A], targets [B, A] in [0, 1], mask [B].

    Summed over the A answers and averaged over the (unmasked) examples, the usual VQA reduction
    (PyTorch's BCEWithLogits mean times A, as in LXMERT / VisualBERT).
    Returns (loss, {'vqa_score'}): the mean target score of each example's top answer.
    """
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"expected logits and targets of one [B, A] shape, got {logits.shape} and {targets.shape}")
    logits, targets = _f32(logits), _f32(targets)
    weights = jnp.ones(logits.shape[:1], jnp.float32) if mask is None else _f32(mask)
    per_answer = -(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits))
    denominator = jnp.maximum(jnp.sum(weights), 1.0)
    loss = jnp.sum(jnp.sum(per_answer, axis=-1) * weights) / denominator
    top_score = jnp.take_along_axis(targets, jnp.argmax(logits, axis=-1)[:, None], axis=-1)[:, 0]
    return loss, {"vqa_score": jnp.sum(top_score * weights) / denominator}
