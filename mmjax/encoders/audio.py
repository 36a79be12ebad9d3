"""Spectrogram towers: the Audio Spectrogram Transformer (AST, Gong et al. 2021) and its initialisation from an
image ViT; a Whisper-style encoder (Radford et al. 2022).

Input: log-mel spectrograms [B, frames, mel_bins] (the log-mel frontend lives in audio_frontend.py).

AST parameter names (stable; converters depend on them): `embedding` (PatchEmbed: conv, kernel
[p, p, 1, D] over (frequency, time)), `cls_token` [D], `dist_token` [D], `pos_embedding` [2 + N, D],
`encoder` (layers.Encoder, pre-LN), `ln_post` (final norm). The names shared with encoders.ViT mean the same
there, which is what lets `ast_from_vit` copy an image tower's encoder unchanged.

WhisperEncoder parameter names (stable): `conv1` (kernel [3, mel_bins, D]), `conv2` (kernel [3, D, D]),
`pos_embedding` [max_positions, D], `encoder` (layers.Encoder, pre-LN, no key bias), `ln_post`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mmjax.encoders.audio_frontend import AST_FBANK, tower_spectrograms
from mmjax.layers import Encoded, PatchEmbed, encoder_like, get_activation, interpolate_posemb, layer_norm

Dtype = jnp.dtype | type

# The class and distillation tokens (DeiT's two prefix tokens, which AST keeps).
NUM_PREFIX = 2


def patch_grid(num_mel_bins: int, frames: int, patch_size: int, strides: tuple[int, int]) -> tuple[int, int]:
    """(frequency patches, time patches) of a VALID convolution with kernel p and strides (freq, time)."""
    if num_mel_bins < patch_size or frames < patch_size:
        raise ValueError(
            f"spectrogram of {frames} frames x {num_mel_bins} mel bins is smaller than the {patch_size} patch"
        )
    return (num_mel_bins - patch_size) // strides[0] + 1, (frames - patch_size) // strides[1] + 1


class AST(nn.Module):
    """Log-mel spectrograms [B, T, F] -> Encoded(tokens [B, 2 + N, D], mask [B, 2 + N], pooled [B, D]).

    The spectrogram is read as a one-channel image with frequency as height and time as width, cut into
    overlapping p x p patches with strides (frequency_stride, time_stride): N = f_patches * t_patches tokens,
    frequency-major, as Hugging Face's ASTModel orders them. A class and a distillation token are prepended,
    learned positions added, then a pre-LN encoder and a final LayerNorm over every token. pooled is the mean
    of the two prefix tokens (ASTModel's pooler_output).

    num_mel_bins: mel bins of the input (the frequency axis); fixed, since the patch grid depends on it.
    frequency_stride: patch stride along frequency (10 in released ASTs; equal to patch_size: no overlap).
    time_stride: patch stride along time.
    max_length:  frames the position table was made for (ASTConfig.max_length).
    interpolate_pos_embed: accept another number of frames by bicubically resizing the table's time axis at
                 call time; otherwise any other length is a ValueError (Hugging Face pads or cuts to max_length).
    frontend:    None (input: spectrograms) or a preset of `audio_frontend.PRESETS` ('ast': ASTFeatureExtractor's
                 fbank): the input is then waveforms [B, S] (optionally with their lengths [B]), padded or cut to
                 max_length frames as the extractor does (any length with interpolate_pos_embed).
    """

    width: int = 768
    depth: int = 12
    mlp_dim: int | None = None
    num_heads: int = 12
    patch_size: int = 16
    frequency_stride: int = 10
    time_stride: int = 10
    num_mel_bins: int = 128
    max_length: int = 1024
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    interpolate_pos_embed: bool = False
    frontend: str | None = None
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @property
    def strides(self) -> tuple[int, int]:
        return self.frequency_stride, self.time_stride

    @property
    def grid(self) -> tuple[int, int]:
        """The (frequency, time) patch grid of a max_length-frame spectrogram: the position table's layout."""
        return patch_grid(self.num_mel_bins, self.max_length, self.patch_size, self.strides)

    def _check_input(self, spectrograms) -> tuple[int, int]:
        if spectrograms.ndim != 3:
            raise ValueError(f"AST expects spectrograms [B, frames, mel_bins], got shape {tuple(spectrograms.shape)}")
        _, frames, mels = spectrograms.shape
        if mels != self.num_mel_bins:
            raise ValueError(f"AST expects {self.num_mel_bins} mel bins, got {mels} (shape {spectrograms.shape})")
        if frames != self.max_length and not self.interpolate_pos_embed:
            raise ValueError(
                f"AST expects {self.max_length} frames, got {frames}; pad or cut to max_length, or set "
                f"interpolate_pos_embed=True to resize the position table"
            )
        return patch_grid(mels, frames, self.patch_size, self.strides)

    @nn.compact
    def __call__(self, spectrograms, lengths=None, *, train: bool = False) -> Encoded:
        frames = None if self.interpolate_pos_embed else self.max_length
        spectrograms = tower_spectrograms(spectrograms, lengths, self.frontend, self.num_mel_bins, num_frames=frames)
        grid = self._check_input(spectrograms)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # [B, T, F] -> [B, F, T, 1]: frequency is the image height, as Hugging Face's transpose to [B, 1, F, T].
        x = jnp.swapaxes(spectrograms, 1, 2)[..., None]
        x = PatchEmbed(self.width, self.patch_size, strides=self.strides, name="embedding", **kw)(x)
        x = x.astype(self.dtype)
        b = x.shape[0]
        prefix = [
            self.param(
                name,
                nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed",)),
                (self.width,),
                self.param_dtype,
            )
            for name in ("cls_token", "dist_token")
        ]
        prefix = jnp.broadcast_to(jnp.stack(prefix).astype(self.dtype), (b, NUM_PREFIX, self.width))
        x = jnp.concatenate([prefix, x], axis=1)
        table = self.param(
            "pos_embedding",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, "embed")),
            (NUM_PREFIX + self.grid[0] * self.grid[1], self.width),
            self.param_dtype,
        )
        x = x + jnp.asarray(interpolate_posemb(table, self.grid, grid, NUM_PREFIX), self.dtype)[None]
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = encoder_like(self, pre_norm=True, name="encoder")(x, None, not train)
        x = layer_norm(self.layer_norm_eps, name="ln_post", **kw)(x)
        pooled = (x[:, 0] + x[:, 1]) / 2
        return Encoded(tokens=x, mask=jnp.ones(x.shape[:2], bool), pooled=pooled)


# ViT parameters with no AST counterpart that are safe to drop: a pooling head the AST does not use.
_DROPPABLE_VIT_PARAMS = frozenset({"map_head"})


def ast_from_vit(vit_params: Mapping, ast: AST, *, channel_reduce: str = "sum") -> dict:
    """AST parameters initialised from an image ViT's (encoders.ViT with a class token and a learned table),
    as the AST paper starts from ImageNet weights.

    vit_params:     the ViT's `params` tree (embedding, cls_token, pos_embedding, encoder, ln_post[, map_head]).
                    Its position table must be a square grid; scanned or not as `ast.scan` is.
    ast:            the AST to initialise; its width, depth, heads, MLP and patch size must equal the ViT's.
    channel_reduce: 'sum' (the AST paper: an RGB image of one grey value gives the same response) or 'mean'
                    over the kernel's input channels, -> one channel.

    The class token goes to both the class and the distillation token, and its position row to both prefix
    rows; the patch rows of the table are bilinearly resized from the ViT's grid to `ast.grid`. Returns a new
    params tree with exactly the shapes `ast.init` makes; a mismatch is a ValueError naming the parameter.
    """
    missing = sorted({"embedding", "cls_token", "pos_embedding", "encoder", "ln_post"} - set(vit_params))
    if missing:
        raise ValueError(f"ViT params lack {missing}: ast_from_vit needs a class token and a learned position table")
    extra = sorted(set(vit_params) - {"embedding", "cls_token", "pos_embedding", "encoder", "ln_post"})
    extra = [k for k in extra if k not in _DROPPABLE_VIT_PARAMS]
    if extra:
        # e.g. CLIP's ln_pre: the AST has no place for it and dropping it would change what the encoder sees.
        raise ValueError(f"ViT params {extra} have no AST counterpart")
    if channel_reduce not in ("sum", "mean"):
        raise ValueError(f"channel_reduce must be 'sum' or 'mean', got {channel_reduce!r}")

    conv = dict(vit_params["embedding"]["conv"])
    reduce = jnp.sum if channel_reduce == "sum" else jnp.mean
    conv["kernel"] = reduce(jnp.asarray(conv["kernel"]), axis=2, keepdims=True)

    cls = jnp.asarray(vit_params["cls_token"])
    table = jnp.asarray(vit_params["pos_embedding"])
    side = math.isqrt(table.shape[0] - 1)
    if side * side != table.shape[0] - 1:
        raise ValueError(f"ViT position table has {table.shape[0] - 1} patch rows, not a square grid")
    patches = interpolate_posemb(table[1:], (side, side), ast.grid, 0, method="bilinear")
    params = {
        "embedding": {"conv": conv},
        "cls_token": cls,
        "dist_token": cls,
        "pos_embedding": jnp.concatenate([table[:1], table[:1], patches]),
        "encoder": vit_params["encoder"],
        "ln_post": vit_params["ln_post"],
    }
    _check_like(params, _ast_shapes(ast))
    return params


def _ast_shapes(ast: AST) -> dict:
    spec = jnp.zeros((1, ast.max_length, ast.num_mel_bins), jnp.float32)
    shapes = jax.eval_shape(ast.clone(frontend=None).init, jax.random.key(0), spec)
    return nn.meta.unbox(shapes["params"])


def _check_like(params, expected, path: str = "") -> None:
    """ValueError naming the first parameter whose presence or shape differs from `expected`."""
    if isinstance(expected, Mapping):
        if not isinstance(params, Mapping) or set(params) != set(expected):
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(f"AST params at {path or '/'}: expected {sorted(expected)}, got {got}")
        for k in expected:
            _check_like(params[k], expected[k], f"{path}/{k}")
    elif tuple(np.shape(params)) != tuple(expected.shape):
        raise ValueError(f"AST param {path}: shape {tuple(np.shape(params))} from the ViT, expected {expected.shape}")


def sinusoids(length: int, width: int, max_timescale: float = 10_000.0) -> np.ndarray:
    """Whisper's fixed positions [length, width]: sines then cosines (not interleaved) over width / 2
    timescales spaced geometrically from 1 to max_timescale."""
    if width % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {width}")
    log_increment = math.log(max_timescale) / (width // 2 - 1)
    inv_timescales = np.exp(-log_increment * np.arange(width // 2))
    scaled = np.arange(length)[:, None] * inv_timescales[None, :]
    return np.concatenate([np.sin(scaled), np.cos(scaled)], axis=1).astype(np.float32)


def _sinusoid_init(key, shape, dtype=jnp.float32):
    del key  # fixed, not drawn
    return jnp.asarray(sinusoids(*shape), dtype)


class WhisperEncoder(nn.Module):
    """Log-mel spectrograms [B, T, mel_bins] -> Encoded(tokens [B, ceil(T / 2), D], mask, pooled [B, D]).

    Two 1-D convolutions over time (kernel 3, padding 1; the second with stride 2, halving the frame rate),
    each followed by exact GELU, then positions, a pre-LN encoder whose attention has no key bias, and a final
    LayerNorm. pooled is the mean of the tokens (Whisper has no pooler).

    max_positions: the position table's length (1500 = 30 s of 10 ms frames). Shorter inputs use its first
                   ceil(T / 2) rows, so clips need not be padded to 30 s (the released models saw only 30 s
                   windows during training, so outputs on short clips differ from those on padded ones).
    The table starts as `sinusoids` and is a parameter so that checkpoints load exactly; keep it frozen to
    train as Whisper did.
    frontend: None (input: spectrograms) or a preset of `audio_frontend.PRESETS` ('whisper':
                   WhisperFeatureExtractor): the input is then waveforms [B, S] (optionally with lengths [B]),
                   zero-padded or cut to the table's window (2 * max_positions frames: 30 s for Whisper's 1500)
                   as the extractor pads every clip to 30 s.
    """

    width: int = 512
    depth: int = 6
    mlp_dim: int | None = None
    num_heads: int = 8
    num_mel_bins: int = 80
    max_positions: int = 1500
    activation: str = "gelu"
    layer_norm_eps: float = 1e-5
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    frontend: str | None = None
    attention_impl: str | None = None
    remat: bool = False
    scan: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, spectrograms, lengths=None, *, train: bool = False) -> Encoded:
        window = 2 * self.max_positions * AST_FBANK.hop_length  # both presets hop 10 ms
        spectrograms = tower_spectrograms(
            spectrograms, lengths, self.frontend, self.num_mel_bins, pad_samples=window, num_frames=None
        )
        if spectrograms.ndim != 3 or spectrograms.shape[-1] != self.num_mel_bins:
            raise ValueError(
                f"WhisperEncoder expects spectrograms [B, frames, {self.num_mel_bins}], got {tuple(spectrograms.shape)}"
            )
        length = (spectrograms.shape[1] + 1) // 2
        if length > self.max_positions:
            raise ValueError(
                f"{spectrograms.shape[1]} frames give {length} positions, more than the table's {self.max_positions}"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        gelu = get_activation("gelu")  # the convolutions use exact GELU whatever the layers' activation
        x = spectrograms.astype(self.dtype)
        for name, stride in (("conv1", 1), ("conv2", 2)):
            conv = nn.Conv(
                self.width,
                (3,),
                strides=(stride,),
                padding=((1, 1),),
                kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("conv_w", None, "embed")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)),
                name=name,
                **kw,
            )
            x = gelu(conv(x))
        table = self.param(
            "pos_embedding",
            nn.with_logical_partitioning(_sinusoid_init, (None, "embed")),
            (self.max_positions, self.width),
            self.param_dtype,
        )
        x = x + jnp.asarray(table[:length], self.dtype)[None]
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        x = encoder_like(self, pre_norm=True, key_bias=False, name="encoder")(x, None, not train)
        x = layer_norm(self.layer_norm_eps, name="ln_post", **kw)(x)
        return Encoded(tokens=x, mask=jnp.ones(x.shape[:2], bool), pooled=jnp.mean(x, axis=1))
