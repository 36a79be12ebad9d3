"""Vision Transformer image tower with named variants ('Ti/16' ... 'G/14').

Parameter names (stable; converters depend on them): `embedding` (PatchEmbed: conv), `cls_token` [D],
`pos_embedding` [P + N, D] (P = 1 with a class token), `ln_pre` (CLIP's pre-norm), `encoder` (layers.Encoder),
`ln_post` (final norm), `map_head` (MAP pooling).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.layers import Encoded, MAPHead, PatchEmbed, encoder_like, interpolate_posemb, layer_norm, sincos_2d

Dtype = jnp.dtype | type

# name -> (width, depth, mlp_dim, num_heads), as in the ViT and "Scaling ViT" papers
VIT_SIZES = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
}


def vit_variant(variant: str) -> dict:
    """'B/16' -> dict(width=768, depth=12, mlp_dim=3072, num_heads=12, patch_size=16)."""
    size, _, patch = variant.partition("/")
    if size not in VIT_SIZES or not patch.isdigit():
        raise ValueError(f"unknown ViT variant {variant!r}; expected '<size>/<patch>' with size in {list(VIT_SIZES)}")
    width, depth, mlp_dim, heads = VIT_SIZES[size]
    return dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=heads, patch_size=int(patch))


class ViT(nn.Module):
    """Images [B, H, W, C] (normalized, NHWC) -> Encoded(tokens [B, P+N, D], mask, pooled [B, D]).

    pooling:     'tok' (class token), 'map' (attention pooling), 'gap' (mean of patch tokens), 'none' (zeros).
    posemb:      'learn' or 'sincos2d' (fixed).
    pre_norm:    LayerNorm after the embeddings (CLIP's `ln_pre`).
    final_norm:  'all' normalizes every output token; 'pooled' normalizes only the pooled vector, leaving tokens
                 as the encoder produced them (CLIP's ln_post, and what Hugging Face calls last_hidden_state);
                 'none' skips it.
    interpolate_pos_embed: accept other image sizes by bicubically resizing the learned position table at call
                 time; otherwise an image of another size is a ValueError.
    """

    width: int = 768
    depth: int = 12
    mlp_dim: int | None = None
    num_heads: int = 12
    patch_size: int = 16
    image_size: int = 224
    channels: int = 3
    pooling: str = "tok"
    posemb: str = "learn"
    pre_norm: bool = False
    final_norm: str = "all"
    patch_bias: bool = True
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    interpolate_pos_embed: bool = False
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @classmethod
    def from_variant(cls, variant: str, **kwargs) -> ViT:
        return cls(**{**vit_variant(variant), **kwargs})

    @staticmethod
    def variant_fields(variant: str) -> dict:
        """The fields a named variant sets (configs fill the sizes they do not state from it)."""
        return vit_variant(variant)

    @property
    def grid(self) -> tuple[int, int]:
        return (self.image_size // self.patch_size,) * 2

    def _check_images(self, images) -> tuple[int, int]:
        if images.ndim != 4:
            raise ValueError(f"ViT expects images [B, H, W, C], got shape {tuple(images.shape)}")
        _, h, w, c = images.shape
        if c != self.channels:
            raise ValueError(f"ViT expects {self.channels} channels (NHWC), got {c} (image shape {images.shape})")
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h}x{w} is not divisible by the patch size {self.patch_size}")
        if (h, w) != (self.image_size, self.image_size) and not self.interpolate_pos_embed:
            raise ValueError(
                f"ViT expects {self.image_size}x{self.image_size} images, got {h}x{w}; set "
                f"interpolate_pos_embed=True to run at a new resolution with resized position embeddings"
            )
        return h // self.patch_size, w // self.patch_size

    @nn.compact
    def __call__(self, images, *, train: bool = False) -> Encoded:
        grid = self._check_images(images)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = PatchEmbed(self.width, self.patch_size, use_bias=self.patch_bias, name="embedding", **kw)(images)
        x = x.astype(self.dtype)
        b = x.shape[0]
        prefix = 1 if self.pooling == "tok" else 0
        if prefix:
            cls = self.param(
                "cls_token",
                nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                (self.width,),
                self.param_dtype,
            )
            x = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cls, self.dtype), (b, 1, self.width)), x], 1)
        x = x + self._position_embedding(grid, prefix)[None]
        if self.pre_norm:
            x = layer_norm(self.layer_norm_eps, name="ln_pre", **kw)(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = encoder_like(self, pre_norm=True, name="encoder")(x, None, not train)
        ln_post = layer_norm(self.layer_norm_eps, name="ln_post", **kw) if self.final_norm != "none" else None
        if self.final_norm == "all":
            x = ln_post(x)
        pooled = self._pool(x, prefix)
        if self.final_norm == "pooled":
            pooled = ln_post(pooled)
        return Encoded(tokens=x, mask=jnp.ones(x.shape[:2], bool), pooled=pooled)

    def _position_embedding(self, grid, prefix):
        if self.posemb == "sincos2d":
            table = sincos_2d(*grid, self.width)
            if prefix:  # the class token gets no position, as in big_vision
                table = jnp.concatenate([jnp.zeros((prefix, self.width)), table])
            return jnp.asarray(table, self.dtype)
        if self.posemb != "learn":
            raise ValueError(f"unknown posemb {self.posemb!r}; expected 'learn' or 'sincos2d'")
        table = self.param(
            "pos_embedding",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
            (prefix + self.grid[0] * self.grid[1], self.width),
            self.param_dtype,
        )
        return jnp.asarray(interpolate_posemb(table, self.grid, grid, prefix), self.dtype)

    def _pool(self, x, prefix):
        if self.pooling == "tok":
            return x[:, 0]
        if self.pooling == "gap":
            return jnp.mean(x[:, prefix:], axis=1)
        if self.pooling == "map":
            return MAPHead(
                self.num_heads,
                self.mlp_dim,
                self.layer_norm_eps,
                self.activation,
                self.dtype,
                self.param_dtype,
                name="map_head",
            )(x)
        if self.pooling == "none":
            return jnp.zeros((x.shape[0], self.width), x.dtype)
        raise ValueError(f"unknown pooling {self.pooling!r}; expected 'tok', 'map', 'gap' or 'none'")
