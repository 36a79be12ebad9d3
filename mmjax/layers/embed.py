"""Patch, token, position and type embeddings, and position-embedding interpolation.

Parameter names: PatchEmbed `conv` (kernel [p, p, C, embed]); TubeletEmbed `conv` (kernel [t, p, p, C, embed]);
TokenEmbed `embedding` [vocab, embed];
PositionEmbed `embedding` [length, embed]; TypeEmbed `embedding` [types, embed].
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = jnp.dtype | type


class PatchEmbed(nn.Module):
    """Images [B, H, W, C] -> patch tokens [B, H/p * W/p, D] via a stride-p convolution.

    strides: (along H, along W); None means p (non-overlapping). Smaller strides give overlapping patches, as
    the Audio Spectrogram Transformer uses: then there are ((H - p) // s_h + 1) * ((W - p) // s_w + 1) tokens.
    """

    width: int
    patch_size: int
    use_bias: bool = True
    strides: tuple[int, int] | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images):
        p = self.patch_size
        x = nn.Conv(
            self.width,
            (p, p),
            strides=tuple(self.strides) if self.strides is not None else (p, p),
            padding="VALID",
            use_bias=self.use_bias,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.lecun_normal(), ("conv_h", "conv_w", "conv_in", "embed")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(images)
        b, h, w, d = x.shape
        return x.reshape(b, h * w, d)


class TubeletEmbed(nn.Module):
    """Videos [B, T, H, W, C] -> tubelet tokens [B, T/t, H/p * W/p, D] via a 3-D convolution with kernel = stride
    = (t, p, p). Tokens stay grouped by time so callers choose how to flatten (joint) or split (factorised)."""

    width: int
    patch_size: int
    tubelet_size: int
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, videos):
        size = (self.tubelet_size, self.patch_size, self.patch_size)
        x = nn.Conv(
            self.width,
            size,
            strides=size,
            padding="VALID",
            use_bias=self.use_bias,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.lecun_normal(), ("conv_t", "conv_h", "conv_w", "conv_in", "embed")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(videos)
        b, t, h, w, d = x.shape
        return x.reshape(b, t, h * w, d)


class TokenEmbed(nn.Module):
    """int ids [B, T] -> [B, T, D]; `attend` maps [..., D] back to vocabulary logits (tied output layer)."""

    vocab_size: int
    width: int
    init_stddev: float = 0.02
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_stddev), ("vocab", "embed")),
            (self.vocab_size, self.width),
            self.param_dtype,
        )

    def __call__(self, ids):
        return jnp.take(jnp.asarray(self.embedding, self.dtype), ids, axis=0)

    def attend(self, x):
        return jnp.einsum("...d,vd->...v", x, jnp.asarray(self.embedding, self.dtype))


class PositionEmbed(nn.Module):
    """Learned positions: [B, T, D] -> [B, T, D] + embedding[offset:offset+T] (or embedding[position_ids]).

    `max_length` is the table size; longer inputs raise a ValueError naming both lengths.
    """

    max_length: int
    init_stddev: float = 0.02
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, offset: int = 0, position_ids=None):
        length = x.shape[1]
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_stddev), (None, "embed")),
            (self.max_length, x.shape[-1]),
            self.param_dtype,
        )
        if position_ids is not None:
            return x + jnp.take(jnp.asarray(table, self.dtype), position_ids, axis=0)
        if offset + length > self.max_length:
            raise ValueError(
                f"sequence of {length} tokens (offset {offset}) exceeds the position table of "
                f"{self.max_length} positions"
            )
        return x + jnp.asarray(table[offset : offset + length], self.dtype)[None]


class TypeEmbed(nn.Module):
    """Token-type (segment / modality) ids [B, T] -> [B, T, D]."""

    num_types: int
    width: int
    init_stddev: float = 0.02
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, type_ids):
        table = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_stddev), (None, "embed")),
            (self.num_types, self.width),
            self.param_dtype,
        )
        return jnp.take(jnp.asarray(table, self.dtype), type_ids, axis=0)


def sincos_2d(grid_h: int, grid_w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sine-cosine position embeddings (MoCo v3 / big_vision form): -> [grid_h * grid_w, width]."""
    if width % 4:
        raise ValueError(f"sincos2d position embeddings need width divisible by 4, got {width}")
    y, x = np.mgrid[:grid_h, :grid_w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1 or 1))
    y = np.einsum("m,d->md", y.flatten(), omega)
    x = np.einsum("m,d->md", x.flatten(), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


def sincos_1d(length: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 1-D sinusoid table of "Attention is all you need", sine and cosine interleaved (even channels sin,
    odd cos), as VideoMAE lays it over the flattened (time, row, column) tubelet sequence: -> [length, width]."""
    angle = np.arange(length)[:, None] / temperature ** (2 * (np.arange(width) // 2) / width)
    return np.where(np.arange(width) % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)


def interpolate_posemb(
    posemb: jax.Array,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    num_prefix_tokens: int = 0,
    method: str = "bicubic",
) -> jax.Array:
    """Resize a learned [P + h*w, D] position table to a new patch grid, keeping the P prefix (class) rows.

    Bicubic over the 2-D grid by default, the usual way to fine-tune a ViT at a new resolution; the Audio
    Spectrogram Transformer resizes an image table to its spectrogram grid bilinearly (method='bilinear').
    """
    if tuple(old_grid) == tuple(new_grid):
        return posemb
    prefix, grid = posemb[:num_prefix_tokens], posemb[num_prefix_tokens:]
    h, w = old_grid
    if grid.shape[0] != h * w:
        raise ValueError(f"position table has {grid.shape[0]} grid rows, expected {h}x{w}={h * w}")
    grid = grid.reshape(h, w, -1)
    grid = jax.image.resize(grid, (*new_grid, grid.shape[-1]), method=method)
    return jnp.concatenate([prefix, grid.reshape(-1, grid.shape[-1]).astype(posemb.dtype)], axis=0)
