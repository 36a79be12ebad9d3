"""Video transformers over tubelets, and their initialisation from an image ViT.

VideoViT is ViViT's model 1 ("joint space-time", Arnab et al. 2021) and VideoMAE's encoder: a 3-D patch (a
tubelet of t frames x p x p pixels) becomes one token and one transformer attends over every space-time token.
FactorisedVideoViT is ViViT's model 2: a spatial transformer per time step, then a temporal one.
DividedVideoViT is TimeSformer: every layer attends across time, then within each time step.

Parameter names (stable; converters depend on them), shared with encoders.ViT wherever the meaning is the same so
an image checkpoint maps over by name (`inflate_vit`): `embedding` (TubeletEmbed: conv kernel [t, p, p, C, D]),
`cls_token` [D], `pos_embedding` [P + h*w, D] (the spatial table, P = 1 with a class token), `time_embedding`
[T/t, D] (added to every token of a time step) or `spacetime_pos_embedding` [P + T/t*h*w, D], `ln_pre`,
`encoder` (layers.Encoder), `ln_post`, `pooler` (Dense).
FactorisedVideoViT adds `time_cls_token` [D], `temporal_encoder`, `ln_space`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.encoders.vit import vit_variant
from mmjax.layers import (
    Encoded,
    Mlp,
    MultiHeadAttention,
    TubeletEmbed,
    dense,
    encoder_like,
    interpolate_posemb,
    layer_norm,
    sincos_1d,
)

Dtype = jnp.dtype | type


class VideoViT(nn.Module):
    """Videos [B, T, H, W, C] (normalized, NTHWC) -> Encoded(tokens [B, P + T/t * h*w, D], mask, pooled [B, D]).

    Tokens are ordered (time, row, column) after the P class tokens, the order of VideoMAE's flattened Conv3d.

    pooling:    'tok' (class token), 'gap' (mean of the tubelet tokens), 'none' (zeros).
    posemb:     'learn': a spatial table (image ViT layout) plus a temporal table, so a time step adds the same
                spatial positions as an image; 'learn_joint': one learned table over the class token and the
                flattened tubelets (`spacetime_pos_embedding` [P + T' h w, D], Hugging Face ViViT); 'sincos':
                VideoMAE's fixed 1-D sinusoid over the flattened tubelets (a class token gets no position).
    final_norm: 'all', 'pooled' (norm only the pooled vector: VideoMAE's fc_norm after mean pooling) or 'none'.
    post_norm_eps: epsilon of `ln_post` when it differs from the blocks' (VideoMAE's fc_norm keeps torch's 1e-5).
    pooler:     pooled = tanh(Dense(pooled)) (`pooler`; ViViT's and BERT's pooler_output).
    key_bias:   False leaves out the attention key bias (VideoMAE has none; softmax ignores it anyway).
    interpolate_pos_embed: accept other frame sizes by resizing the learned spatial table; the number of time
                steps must match either way.
    """

    width: int = 768
    depth: int = 12
    mlp_dim: int | None = None
    num_heads: int = 12
    patch_size: int = 16
    tubelet_size: int = 2
    image_size: int = 224
    num_frames: int = 16
    channels: int = 3
    pooling: str = "tok"
    posemb: str = "learn"
    pre_norm: bool = False
    final_norm: str = "all"
    post_norm_eps: float | None = None
    pooler: bool = False
    patch_bias: bool = True
    key_bias: bool = True
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
    def from_variant(cls, variant: str, **kwargs) -> VideoViT:
        """'B/16' -> ViT-B sizes with 16 px patches (the tubelet depth stays a field: tubelet_size)."""
        return cls(**{**vit_variant(variant), **kwargs})

    @staticmethod
    def variant_fields(variant: str) -> dict:
        return vit_variant(variant)

    @property
    def grid(self) -> tuple[int, int, int]:
        """(time steps, rows, columns) of tubelets at the configured video size."""
        p = self.patch_size
        return self.num_frames // self.tubelet_size, self.image_size // p, self.image_size // p

    def _check_videos(self, videos) -> tuple[int, int, int]:
        if videos.ndim != 5:
            raise ValueError(f"{type(self).__name__} expects videos [B, T, H, W, C], got shape {tuple(videos.shape)}")
        _, t, h, w, c = videos.shape
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels (NTHWC), got {c} (video shape {videos.shape})")
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"video of {t} frames of {h}x{w} does not divide into {self.tubelet_size}x{self.patch_size}x"
                f"{self.patch_size} tubelets"
            )
        if t != self.num_frames:
            raise ValueError(f"expected {self.num_frames} frames, got {t}")
        if (h, w) != (self.image_size, self.image_size) and not (self.interpolate_pos_embed and self.posemb == "learn"):
            raise ValueError(
                f"expected {self.image_size}x{self.image_size} frames, got {h}x{w}; set interpolate_pos_embed=True "
                f"(learned positions) to resize the spatial position table"
            )
        return t // self.tubelet_size, h // self.patch_size, w // self.patch_size

    @property
    def num_prefix(self) -> int:
        return 1 if self.pooling == "tok" else 0

    def embed(self, videos, grid, with_time: bool = True) -> tuple[jax.Array, jax.Array | None]:
        """Tubelets with positions: -> ([B, T', h*w, D], the class token's position [D] or None).

        with_time=False adds the spatial table only (the factorised encoder adds time after its spatial stage).
        """
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = TubeletEmbed(
            self.width, self.patch_size, self.tubelet_size, use_bias=self.patch_bias, name="embedding", **kw
        )(videos).astype(self.dtype)
        t, h, w = grid
        if self.posemb == "sincos":
            table = sincos_1d(t * h * w, self.width).reshape(t, h * w, self.width)
            return x + jnp.asarray(table, self.dtype)[None], None
        if self.posemb == "learn_joint":
            return x, None  # added by the caller over the flat sequence, class token included
        if self.posemb != "learn":
            raise ValueError(f"unknown posemb {self.posemb!r}; expected 'learn', 'learn_joint' or 'sincos'")
        space = self.param(
            "pos_embedding",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
            (self.num_prefix + self.grid[1] * self.grid[2], self.width),
            self.param_dtype,
        )
        cls_pos = space[0] if self.num_prefix else None
        space = interpolate_posemb(space, self.grid[1:], (h, w), self.num_prefix)[self.num_prefix :]
        x = x + jnp.asarray(space, self.dtype)[None, None]
        if with_time:
            x = x + self.time_table()[None, :, None]
        return x, cls_pos

    def time_table(self) -> jax.Array:
        """The learned temporal table [T', D], one row per time step."""
        init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("time", "embed"))
        return jnp.asarray(self.param("time_embedding", init, (self.grid[0], self.width), self.param_dtype), self.dtype)

    def prepend_class_token(self, x, name="cls_token", position=None):
        """[B, N, D] -> [B, 1 + N, D] with the learned class token (plus its `position` [D], if any)."""
        init = nn.with_logical_partitioning(nn.initializers.zeros, ("embed",))
        cls = self.param(name, init, (self.width,), self.param_dtype)
        if position is not None:
            cls = cls + position
        cls = jnp.broadcast_to(jnp.asarray(cls, self.dtype), (x.shape[0], 1, self.width))
        return jnp.concatenate([cls, x], axis=1)

    def finish(self, x, prefix: int) -> Encoded:
        """Final norm and pooling shared by the video towers: [B, P + N, D] -> Encoded."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        eps = self.layer_norm_eps if self.post_norm_eps is None else self.post_norm_eps
        ln_post = layer_norm(eps, name="ln_post", **kw) if self.final_norm != "none" else None
        if self.final_norm not in ("all", "pooled", "none"):
            raise ValueError(f"unknown final_norm {self.final_norm!r}; expected 'all', 'pooled' or 'none'")
        if self.final_norm == "all":
            x = ln_post(x)
        if self.pooling == "tok":
            pooled = x[:, 0]
        elif self.pooling == "gap":
            pooled = jnp.mean(x[:, prefix:], axis=1)
        elif self.pooling == "none":
            pooled = jnp.zeros((x.shape[0], self.width), x.dtype)
        else:
            raise ValueError(f"unknown pooling {self.pooling!r}; expected 'tok', 'gap' or 'none'")
        if self.final_norm == "pooled":
            pooled = ln_post(pooled)
        return Encoded(tokens=x, mask=jnp.ones(x.shape[:2], bool), pooled=pooled)

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> Encoded:
        grid = self._check_videos(videos)
        x, cls_pos = self.embed(videos, grid)
        x = x.reshape(x.shape[0], -1, self.width)  # joint: one sequence of (time, row, column) tokens
        if self.num_prefix:
            x = self.prepend_class_token(x, position=cls_pos)
        if self.posemb == "learn_joint":
            init = nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed"))
            table = self.param("spacetime_pos_embedding", init, x.shape[1:], self.param_dtype)
            x = x + jnp.asarray(table, self.dtype)[None]
        if self.pre_norm:
            x = layer_norm(self.layer_norm_eps, name="ln_pre", dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = encoder_like(self, pre_norm=True, name="encoder")(x, None, not train)
        out = self.finish(x, self.num_prefix)
        if self.pooler:
            kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
            out = out.replace(pooled=jnp.tanh(dense(self.width, ("embed", "mlp"), name="pooler", **kw)(out.pooled)))
        return out


class FactorisedVideoViT(VideoViT):
    """ViViT model 2 ("factorised encoder"): videos [B, T, H, W, C] -> Encoded(tokens [B, P + T', D], mask,
    pooled [B, D]).

    A spatial transformer (`encoder`, `depth` layers, with the spatial table and class token of VideoViT) runs on
    each time step's tubelets alone; each step is summarised by its class token (pooling='tok') or the mean of its
    tokens ('gap'), normalized by `ln_space`; a temporal transformer (`temporal_encoder`, `temporal_depth` layers)
    then attends across the T' summaries, which carry `time_embedding`, behind a `time_cls_token` (no position)
    when pooling='tok'. Attention costs T' (h w)^2 + T'^2 instead of (T' h w)^2. Learned positions only.
    """

    temporal_depth: int = 4

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> Encoded:
        if self.posemb != "learn":
            raise ValueError(f"FactorisedVideoViT learns separate space and time tables; posemb={self.posemb!r}")
        if self.pooler:
            raise ValueError("FactorisedVideoViT has no pooler")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        grid = self._check_videos(videos)
        x, cls_pos = self.embed(videos, grid, with_time=False)
        b, t = x.shape[:2]
        x = x.reshape(b * t, -1, self.width)  # every time step is its own sequence
        if self.num_prefix:
            x = self.prepend_class_token(x, position=cls_pos)
        if self.pre_norm:
            x = layer_norm(self.layer_norm_eps, name="ln_pre", **kw)(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = encoder_like(self, pre_norm=True, name="encoder")(x, None, not train)
        x = x[:, 0] if self.num_prefix else jnp.mean(x, axis=1)
        x = layer_norm(self.layer_norm_eps, name="ln_space", **kw)(x).reshape(b, t, self.width)
        x = x + self.time_table()[None]
        if self.num_prefix:
            x = self.prepend_class_token(x, name="time_cls_token")
        x = encoder_like(self, num_layers=self.temporal_depth, pre_norm=True, name="temporal_encoder")(
            x, None, not train
        )
        return self.finish(x, self.num_prefix)


class DividedBlock(nn.Module):
    """TimeSformer's divided space-time layer: [B, P + T'*N, D] (time-major tokens) -> the same shape.

    Each spatial position first attends across time (`ln_time`, `temporal_attn`, then `temporal_out`, the extra
    projection TimeSformer adds), then each time step attends within itself (`ln_1`, `attn`) with its own copy of
    the class token, whose T' outputs are averaged; then the MLP (`ln_2`, `mlp`). `ln_1`, `attn`, `ln_2`, `mlp`
    are named as in layers.Block, so an image ViT's blocks map onto the spatial half.
    """

    num_heads: int
    mlp_dim: int
    time_steps: int
    num_prefix: int = 1
    activation: str = "gelu"
    layer_norm_eps: float = 1e-6
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    attention_impl: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attn = dict(dropout_rate=self.attention_dropout_rate, implementation=self.attention_impl, **kw)
        drop = nn.Dropout(self.dropout_rate, deterministic=deterministic)
        b, _, d = x.shape
        t, p = self.time_steps, self.num_prefix
        cls, patches = x[:, :p], x[:, p:]
        n = patches.shape[1] // t
        # time: one sequence of T' tokens per spatial position
        h = patches.reshape(b, t, n, d).transpose(0, 2, 1, 3).reshape(b * n, t, d)
        h = layer_norm(self.layer_norm_eps, name="ln_time", **kw)(h)
        h = MultiHeadAttention(self.num_heads, name="temporal_attn", **attn)(h, deterministic=deterministic)
        h = dense(d, ("embed", "embed"), name="temporal_out", **kw)(h)
        patches = patches + drop(h.reshape(b, n, t, d).transpose(0, 2, 1, 3).reshape(b, t * n, d))
        # space: one sequence per time step, each with a copy of the class token
        s = patches.reshape(b * t, n, d)
        if p:
            s = jnp.concatenate([jnp.repeat(cls, t, axis=0), s], axis=1)
        s = layer_norm(self.layer_norm_eps, name="ln_1", **kw)(s)
        s = MultiHeadAttention(self.num_heads, name="attn", **attn)(s, deterministic=deterministic)
        cls_update = s[:, :p].reshape(b, t, p, d).mean(axis=1)
        x = jnp.concatenate([cls + drop(cls_update), patches + drop(s[:, p:].reshape(b, t * n, d))], axis=1)
        mlp = Mlp(self.mlp_dim, self.activation, self.dropout_rate, name="mlp", **kw)
        return x + drop(mlp(layer_norm(self.layer_norm_eps, name="ln_2", **kw)(x), deterministic=deterministic))


class DividedVideoViT(VideoViT):
    """TimeSformer ("divided space-time attention", Bertasius et al. 2021): videos [B, T, H, W, C] ->
    Encoded(tokens [B, P + T' h w, D] in (time, row, column) order, mask, pooled [B, D]).

    VideoViT's embeddings (spatial `pos_embedding` with the class row, `time_embedding`) and `depth` DividedBlocks
    under `encoder/layer_{i}`. Attention costs T' N^2 + N T'^2 instead of (T' N)^2. No scan or remat.
    """

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> Encoded:
        if self.posemb != "learn" or self.scan or self.remat or self.pooler:
            raise ValueError("DividedVideoViT needs posemb='learn' and has no scan, remat or pooler")
        grid = self._check_videos(videos)
        x, cls_pos = self.embed(videos, grid)
        x = x.reshape(x.shape[0], -1, self.width)
        if self.num_prefix:
            x = self.prepend_class_token(x, position=cls_pos)
        if self.pre_norm:
            x = layer_norm(self.layer_norm_eps, name="ln_pre", dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        block = dict(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim or 4 * self.width,
            time_steps=grid[0],
            num_prefix=self.num_prefix,
            activation=self.activation,
            layer_norm_eps=self.layer_norm_eps,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            attention_impl=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = x.astype(self.dtype)
        x = _DividedEncoder(self.depth, block, name="encoder")(x, not train)
        return self.finish(x, self.num_prefix)


class _DividedEncoder(nn.Module):
    """`num_layers` DividedBlocks named layer_{i}, the names layers.Encoder uses."""

    num_layers: int
    block: dict

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        for i in range(self.num_layers):
            x = DividedBlock(name=f"layer_{i}", **self.block)(x, deterministic)
        return x


def inflate_vit(vit_params, video: VideoViT, *, method: str = "central") -> dict:
    """An image ViT's parameters (encoders.ViT, same width/depth/heads) -> parameters of `video`, a VideoViT.

    The 2-D patch kernel [p, p, C, D] becomes a tubelet kernel [t, p, p, C, D]: 'central' puts it on the central
    frame with zeros elsewhere (a still clip then embeds exactly as its frame does), 'average' puts kernel / t on
    every frame (the same on a still clip, and it sees every frame). The spatial table is resized bicubically
    when the frame grid differs; the temporal table is zero (posemb='learn'), or the spatial rows are tiled over
    time (posemb='learn_joint'), so every time step adds the image's positions. The
    class token, encoder and norms are copied. Because attention over T' identical copies of a token set splits
    its weights evenly, a still clip reproduces the image ViT's tokens whenever there is one time step or no
    class token; a single class token beside T' > 1 copies gets 1/T' of its image weight (see the tests).

    Raises ValueError when the trees do not match (a ViT part the video model lacks, or the reverse).
    """
    if method not in ("central", "average"):
        raise ValueError(f"unknown inflation method {method!r}; expected 'central' or 'average'")
    params = jax.tree.map(np.asarray, dict(nn.meta.unbox(vit_params)))
    t, h, w = video.grid
    kernel = params["embedding"]["conv"]["kernel"]
    tubelet = np.zeros((video.tubelet_size, *kernel.shape), kernel.dtype)
    if method == "central":
        tubelet[video.tubelet_size // 2] = kernel
    else:
        tubelet[:] = kernel / video.tubelet_size
    params["embedding"] = {"conv": {**params["embedding"]["conv"], "kernel": tubelet}}
    prefix = video.num_prefix
    if video.posemb in ("learn", "learn_joint"):
        if "pos_embedding" not in params:
            raise ValueError("the image ViT has no learned position table (pos_embedding) to inflate")
        table = params.pop("pos_embedding")
        side = int(round((table.shape[0] - prefix) ** 0.5))
        if side * side != table.shape[0] - prefix:
            raise ValueError(f"image position table of {table.shape[0]} rows is not {prefix} + a square grid")
        space = np.asarray(interpolate_posemb(table, (side, side), (h, w), prefix))
        if video.posemb == "learn":
            params["pos_embedding"] = space
            params["time_embedding"] = np.zeros((t, table.shape[1]), table.dtype)
        else:  # one table over every token: the spatial rows tiled over time, the class row once
            params["spacetime_pos_embedding"] = np.concatenate([space[:prefix], np.tile(space[prefix:], (t, 1))])
    else:
        params.pop("pos_embedding", None)  # posemb='sincos': the video model's positions are fixed
    expected = jax.eval_shape(
        lambda: video.init(
            jax.random.key(0), jnp.zeros((1, video.num_frames, video.image_size, video.image_size, video.channels))
        )
    )
    expected = nn.meta.unbox(expected["params"])
    want = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(expected)}
    got = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(params)}
    if want != got:
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        shapes = sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise ValueError(f"cannot inflate: missing {missing}, unexpected {extra}, mis-shaped {shapes}")
    return jax.tree.map(jnp.asarray, params)
