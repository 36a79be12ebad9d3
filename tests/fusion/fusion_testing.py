"""Test helpers for fusions: tiny two-modality encodings with padding in both modalities, and perturbations."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mmjax.layers import Encoded

# image: 5 tokens of width 16 (second example: 3 real); text: 4 tokens of width 8, so fusions must project it
LENGTHS = {"image": (5, [5, 3]), "text": (4, [2, 4])}
WIDTHS = {"image": 16, "text": 8}


@jax.jit
def make_encodings(seed):
    key = jax.random.key(seed, impl="unsafe_rbg")  # compiles much faster than threefry on CPU
    out = {}
    for i, (m, (t, lengths)) in enumerate(sorted(LENGTHS.items())):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        mask = jnp.arange(t)[None, :] < jnp.asarray(lengths)[:, None]
        tokens = jax.random.normal(k1, (len(lengths), t, WIDTHS[m]))
        out[m] = Encoded(tokens=tokens, mask=mask, pooled=jax.random.normal(k2, (len(lengths), WIDTHS[m])))
    return out


@partial(jax.jit, static_argnames=("where", "only"))
def replace_tokens(encodings, seed, where: str = "padded", only: str | None = None):
    """New encodings whose padded (or real) token values are replaced by large random values.

    only: restrict to one modality. Masks and pooled vectors are unchanged.
    """
    key = jax.random.key(seed, impl="unsafe_rbg")
    out = {}
    for i, (m, enc) in enumerate(sorted(encodings.items())):
        select = ~enc.mask if where == "padded" else enc.mask
        if only is not None and m != only:
            select = jnp.zeros_like(select)
        noise = 10.0 * jax.random.normal(jax.random.fold_in(key, i), enc.tokens.shape)
        out[m] = enc.replace(tokens=jnp.where(select[..., None], noise, enc.tokens))
    return out


def randomize(variables, scale: float = 0.3):
    """Add fixed noise to every parameter so zero-initialized ones (gates, biases) take part in the tests.

    numpy draws, not jax.random: JAX's random-number code dominates compile time for tiny models.
    """
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(0)
    noisy = [np.asarray(x) + scale * rng.standard_normal(x.shape) for x in leaves]
    return jax.tree.unflatten(tree, [jnp.asarray(x, jnp.float32) for x in noisy])


def init_random(module, *args):
    """Parameters for `module` without running (or compiling) its init: shapes from jax.eval_shape, values fixed
    noise (LayerNorm scales around 1). Compiling init costs more than the tests themselves."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), *args)

    def fill(path, leaf):
        is_scale = any(getattr(k, "key", None) == "scale" for k in path)
        return np.ones(leaf.shape) if is_scale else np.zeros(leaf.shape)

    return randomize(jax.tree_util.tree_map_with_path(fill, shapes))
