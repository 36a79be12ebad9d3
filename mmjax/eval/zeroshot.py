"""Zero-shot classification from prompt templates (the CLIP recipe).

1. Every class name is written into every template: C classes x P templates prompt strings (`build_prompts`).
2. The text tower encodes them: [C, P, E] (`encode_class_prompts`, or bring your own array).
3. Each prompt embedding is L2-normalized, the P templates are averaged, and the mean is L2-normalized again:
   one classifier vector per class, [C, E] (`class_embeddings`).
4. Each image is classified by the dot product with the C class vectors; top-K accuracy uses the same pessimistic
   tie rule as retrieval (`mmjax.eval.ranking`): a class tying with the true class counts as ranked above it.

Held-out classes: `subsets={"heldout": [3, 7]}` adds the accuracy over the images of those classes, both with all C
classes as candidates ("<subset>/top1") and with only the subset's classes as candidates
("<subset>/top1_among_subset", the usual zero-shot-on-unseen-classes number).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.eval.ranking import DEFAULT_CHUNK_SIZE, positive_ranks, to_host

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
    "a drawing of a {}.",
    "a rendering of a {}.",
    "a close-up photo of a {}.",
    "a photo of a small {}.",
)


def build_prompts(class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[list[str]]:
    """C class names x P templates (each with one "{}") -> C lists of P prompt strings."""
    for template in templates:
        if template.count("{}") != 1:
            raise ValueError(f"a template needs exactly one '{{}}' for the class name, got {template!r}")
    return [[template.format(name) for template in templates] for name in class_names]


def encode_class_prompts(
    encode_text: Callable[[list[str]], jax.Array | np.ndarray],
    class_names: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    *,
    batch_size: int | None = None,
) -> jax.Array:
    """Encode every (class, template) prompt with `encode_text`: list of n strings -> [n, E]. Returns [C, P, E].

    The callable owns tokenization and the text tower (e.g. a jitted `model.apply` behind a tokenizer); prompts go
    to it class-major, `batch_size` strings at a time (None: all at once).
    """
    flat = [prompt for prompts in build_prompts(class_names, templates) for prompt in prompts]
    step = batch_size or len(flat)
    parts = [jnp.asarray(encode_text(flat[i : i + step])) for i in range(0, len(flat), step)]
    embeds = jnp.concatenate(parts, axis=0)
    return embeds.reshape(len(class_names), len(templates), -1)


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


@jax.jit
def class_embeddings(prompt_embeds: jax.Array) -> jax.Array:
    """[C, P, E] prompt embeddings -> [C, E] classifier: normalize each prompt, mean over P, normalize (float32)."""
    return _l2_normalize(jnp.mean(_l2_normalize(prompt_embeds.astype(jnp.float32)), axis=1))


def per_class_accuracy(hits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """hits [N] bool, labels [N] int -> [num_classes] accuracy of each class's images (NaN for a class with none)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    correct = np.bincount(labels, weights=np.asarray(hits, np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)


def zeroshot_metrics(
    image_embeds: jax.Array,
    class_embeds: jax.Array,
    labels: jax.Array | np.ndarray | Sequence[int],
    *,
    ks: Sequence[int] = (1, 5),
    subsets: Mapping[str, Sequence[int]] | None = None,
    class_names: Sequence[str] | None = None,
    per_class: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    prefix: str = "zeroshot",
) -> dict[str, float]:
    """Zero-shot accuracy of images against class vectors.

    Args:
      image_embeds: [N, E] image embeddings (possibly a sharded jax.Array). Their norm does not change the ranking.
      class_embeds: [C, E] classifier vectors, or [C, P, E] prompt embeddings (averaged with `class_embeddings`).
      labels: [N] int true class of each image, in [0, C).
      ks: top-K accuracies to report.
      subsets: name -> class indices (e.g. {"heldout": [...]}) for accuracy over the images of those classes.
      class_names: [C] names for the per-class keys (default: the class index).
      per_class: also report f"{prefix}/per_class_top1/{name}" for every class with images.
      chunk_size: images scored per step.

    Returns keys (prefix "zeroshot"): "top{k}", "mean_per_class_top1" (mean over classes that have images), and per
    subset "<name>/top{k}" (all C classes are candidates) and "<name>/top{k}_among_subset" (only the subset's).
    """
    if class_embeds.ndim == 3:
        class_embeds = class_embeddings(class_embeds)
    num_classes = class_embeds.shape[0]
    labels_np = to_host(labels).astype(np.int32).reshape(-1)
    if labels_np.shape != (image_embeds.shape[0],):
        raise ValueError(f"labels must be [N] = [{image_embeds.shape[0]}], got {labels_np.shape[0]} labels")
    if labels_np.size and (labels_np.min() < 0 or labels_np.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels_np.min()}..{labels_np.max()}")
    class_ids = jnp.arange(num_classes, dtype=jnp.int32)

    def accuracies(ranks: np.ndarray, keep: np.ndarray, name: str) -> dict[str, float]:
        n = int(keep.sum())
        return {f"{name}{k}": float(np.sum(keep & (ranks < k)) / n) if n else float("nan") for k in ks}

    ranks = positive_ranks(image_embeds, labels, class_embeds, class_ids, chunk_size=chunk_size)
    everything = np.ones_like(labels_np, bool)
    metrics = {f"{prefix}/{key}": value for key, value in accuracies(ranks, everything, "top").items()}
    class_top1 = per_class_accuracy(ranks == 0, labels_np, num_classes)
    has_images = ~np.isnan(class_top1)
    metrics[f"{prefix}/mean_per_class_top1"] = float(np.mean(class_top1[has_images])) if has_images.any() else np.nan
    if per_class:
        names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
        for c in np.flatnonzero(has_images):
            metrics[f"{prefix}/per_class_top1/{names[c]}"] = float(class_top1[c])

    for subset_name, classes in (subsets or {}).items():
        in_subset = np.zeros(num_classes, bool)
        in_subset[np.asarray(classes, np.int64)] = True
        keep = in_subset[labels_np]
        for key, value in accuracies(ranks, keep, "top").items():
            metrics[f"{prefix}/{subset_name}/{key}"] = value
        subset_ranks = positive_ranks(
            image_embeds, labels, class_embeds, class_ids, jnp.asarray(in_subset), chunk_size=chunk_size
        )
        for key, value in accuracies(subset_ranks, keep, "top").items():
            metrics[f"{prefix}/{subset_name}/{key}_among_subset"] = value
    return metrics
