"""ResNet image tower in the BiT form: weight-standardized convolutions + GroupNorm, no BatchNorm.

Why not BatchNorm: its running statistics are a second, mutable variable collection (`batch_stats`) that
every caller would have to thread through `apply(..., mutable=...)`, the trainer's state and checkpoints; its
train and eval behaviour differ; and under data sharding its batch statistics need a cross-device reduction to
mean the same thing at every mesh size. Weight Standardization + GroupNorm (Qiao et al. 2019; Kolesnikov et
al. 2020, "Big Transfer") matches BatchNorm's accuracy at ordinary batch sizes while keeping `apply` a pure
function of (params, images) that behaves the same at batch size 1, in train and eval, and under any sharding.
The layout follows big_vision's `models/bit.py` (ResNet v1, post-activation, the last norm of each residual
branch zero-initialized).

Parameter names (stable; for the bottleneck depths they are big_vision's bit.py names, so its checkpoints map 1:1):
  conv_root [7, 7, C, width], gn_root                        stem (then a 3x3 stride-2 max pool)
  block{s}/unit{u}/conv1, gn1, conv2, gn2[, conv3, gn3]       s = 1..4 stages, u = 1..n units per stage
  block{s}/unit{u}/conv_proj, gn_proj                         only where the residual changes shape
  map_head/(probe, attn, ln, mlp)                             only with pooling='map' (layers.MAPHead)
Conv kernels are [kh, kw, in, out] with logical axes (conv_h, conv_w, conv_in, conv_out); GroupNorm scale and
bias are [channels] with logical axis `norm`.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mmjax.layers import Encoded, MAPHead

Dtype = jnp.dtype | type

# depth -> (unit kind, units per stage). 18/34 use two 3x3 convs per unit ("basic"); the rest the 1x1-3x3-1x1
# bottleneck with 4x expansion, as in He et al. 2016. 26 is timm's / big_vision's light bottleneck variant.
RESNET_DEPTHS: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    26: ("bottleneck", (2, 2, 2, 2)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}

_EXPANSION = {"basic": 1, "bottleneck": 4}
_CONV_AXES = ("conv_h", "conv_w", "conv_in", "conv_out")
_WS_EPS = 1e-5  # big_vision's weight-standardization epsilon


def weight_standardize(kernel: jax.Array, eps: float = _WS_EPS) -> jax.Array:
    """Zero mean, unit std per output channel over every other axis: [kh, kw, in, out] (or [kt, kh, kw, in, out])
    -> same shape and dtype.

    Computed in float32 so a bfloat16 `param_dtype` does not lose the mean subtraction to rounding.
    """
    w = kernel.astype(jnp.float32)
    fan_in = tuple(range(kernel.ndim - 1))
    w = w - jnp.mean(w, axis=fan_in, keepdims=True)
    w = w / (jnp.std(w, axis=fan_in, keepdims=True) + eps)
    return w.astype(kernel.dtype)


class StdConv(nn.Conv):
    """nn.Conv whose kernel is weight-standardized every time it is used (the stored parameter is raw)."""

    def param(self, name, *args, **kwargs):
        value = super().param(name, *args, **kwargs)
        return weight_standardize(value) if name == "kernel" else value


def _group_count(channels: int, num_groups: int) -> int:
    # Tiny test widths (8 channels) cannot hold 32 groups; gcd keeps a divisor of `channels`, equal to
    # `num_groups` at every standard width (64 * 2^k channels).
    return math.gcd(channels, num_groups)


def group_norm(channels, num_groups, dtype, param_dtype, name, zero_scale=False) -> nn.GroupNorm:
    """GroupNorm over `channels` whose scale and bias carry the logical axis `norm`."""
    return nn.GroupNorm(
        num_groups=_group_count(channels, num_groups),
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=nn.with_logical_partitioning(
            nn.initializers.zeros if zero_scale else nn.initializers.ones, ("norm",)
        ),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
        name=name,
    )


class _Unit(nn.Module):
    """One residual unit: [B, H, W, Cin] -> [B, H/s, W/s, Cout] with Cout = features * expansion."""

    kind: str
    features: int
    strides: int = 1
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def _conv(self, features, kernel, strides, name):
        return StdConv(
            features,
            (kernel, kernel),
            (strides, strides),
            padding="SAME",
            use_bias=False,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), _CONV_AXES),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=name,
        )

    def _norm(self, channels, name, zero_scale=False):
        return group_norm(channels, self.num_groups, self.dtype, self.param_dtype, name, zero_scale)

    @nn.compact
    def __call__(self, x):
        out = self.features * _EXPANSION[self.kind]
        residual = x
        if x.shape[-1] != out or self.strides != 1:
            residual = self._conv(out, 1, self.strides, "conv_proj")(x)
            residual = self._norm(out, "gn_proj")(residual)

        mid = self.features
        if self.kind == "basic":
            y = nn.relu(self._norm(mid, "gn1")(self._conv(mid, 3, self.strides, "conv1")(x)))
            y = self._norm(out, "gn2", zero_scale=True)(self._conv(out, 3, 1, "conv2")(y))
        else:  # bottleneck; the stride sits on the 3x3 conv (ResNet v1.5), as in big_vision and torchvision
            y = nn.relu(self._norm(mid, "gn1")(self._conv(mid, 1, 1, "conv1")(x)))
            y = nn.relu(self._norm(mid, "gn2")(self._conv(mid, 3, self.strides, "conv2")(y)))
            y = self._norm(out, "gn3", zero_scale=True)(self._conv(out, 1, 1, "conv3")(y))
        # The zero-initialized last norm makes every unit start as the identity (Goyal et al. 2017).
        return nn.relu(residual + y)


class _Stage(nn.Module):
    """`units` residual units; the first one strides by `first_stride`. Children are named unit1..unitN."""

    kind: str
    units: int
    features: int
    first_stride: int = 1
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(num_groups=self.num_groups, dtype=self.dtype, param_dtype=self.param_dtype)
        for u in range(self.units):
            strides = self.first_stride if u == 0 else 1
            x = _Unit(self.kind, self.features, strides, name=f"unit{u + 1}", **kw)(x)
        return x


class ResNet(nn.Module):
    """Images [B, H, W, C] (normalized, NHWC) -> Encoded(tokens [B, h*w, D], mask [B, h*w], pooled [B, D]).

    h, w = ceil(H/32), ceil(W/32) (stem stride 4, then stride 2 in stages 2-4). D = `features`: 8*width for
    the basic depths (18, 34), 32*width for the bottleneck ones (2048 for ResNet-50 at width 64). Any image
    size works: there are no position embeddings. Parameter counts equal torchvision's ResNets without the fc
    head (GroupNorm has BatchNorm's affine parameters): 11.18M for ResNet-18, 23.51M for ResNet-50.

    depth:      one of RESNET_DEPTHS (18, 34, 26, 50, 101, 152, 200).
    width:      channels of the stem and of the first stage's units (64 in the standard nets).
    pooling:    'gap' (mean of the final feature map) or 'map' (attention pooling with a learned probe).
    num_heads:  heads of the MAP pooling attention (must divide D).
    num_groups: GroupNorm groups (clamped to a divisor of the channel count for tiny widths).
    channels:   expected input channels; anything else is a ValueError.
    """

    depth: int = 50
    width: int = 64
    pooling: str = "gap"
    num_heads: int = 8
    num_groups: int = 32
    channels: int = 3
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @property
    def features(self) -> int:
        """D, the channel count of the final feature map (and of tokens and pooled)."""
        kind, stages = self._plan()
        return self.width * 2 ** (len(stages) - 1) * _EXPANSION[kind]

    def _plan(self) -> tuple[str, tuple[int, ...]]:
        if self.depth not in RESNET_DEPTHS:
            raise ValueError(f"unsupported ResNet depth {self.depth}; supported: {sorted(RESNET_DEPTHS)}")
        return RESNET_DEPTHS[self.depth]

    def _check_images(self, images):
        if images.ndim != 4:
            raise ValueError(f"ResNet expects images [B, H, W, C], got shape {tuple(images.shape)}")
        if images.shape[-1] != self.channels:
            raise ValueError(
                f"ResNet expects {self.channels} channels (NHWC), got {images.shape[-1]} "
                f"(image shape {tuple(images.shape)})"
            )

    @nn.compact
    def __call__(self, images, *, train: bool = False) -> Encoded:
        del train  # no dropout and no batch statistics: train and eval compute the same function
        self._check_images(images)
        if self.pooling not in ("gap", "map"):
            raise ValueError(f"unknown pooling {self.pooling!r}; expected 'gap' or 'map'")
        kind, stages = self._plan()
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        x = StdConv(
            self.width,
            (7, 7),
            (2, 2),
            padding="SAME",
            use_bias=False,
            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), _CONV_AXES),
            name="conv_root",
            **kw,
        )(images.astype(self.dtype))
        x = nn.relu(group_norm(self.width, self.num_groups, name="gn_root", **kw)(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        x = nn.with_logical_constraint(x, ("batch", "height", "width", "channels"))

        for s, units in enumerate(stages):
            # Stages are block1..block4 (1-based) to keep big_vision's parameter paths.
            features, stride = self.width * 2**s, 2 if s else 1
            x = _Stage(kind, units, features, stride, self.num_groups, name=f"block{s + 1}", **kw)(x)
            x = nn.with_logical_constraint(x, ("batch", "height", "width", "channels"))

        b, h, w, d = x.shape
        tokens = nn.with_logical_constraint(x.reshape(b, h * w, d), ("batch", "length", "embed"))
        if self.pooling == "gap":
            pooled = jnp.mean(tokens, axis=1)
        else:
            pooled = MAPHead(self.num_heads, name="map_head", **kw)(tokens)
        return Encoded(tokens=tokens, mask=jnp.ones((b, h * w), bool), pooled=pooled)
