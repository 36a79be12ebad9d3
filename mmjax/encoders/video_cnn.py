"""3-D convolutional video towers: R3D (3x3x3 convolutions) and R(2+1)D (each one factorised into space, then time).

Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition": a ResNet whose kernels gain
a time axis, so every layer sees motion and a reversed clip is a different input. Built like encoders.ResNet (the
BiT form): weight-standardized convolutions + GroupNorm, no BatchNorm (resnet.py says why), the last norm of every
residual branch zero-initialized. The layout is torchvision's video ResNets' (a 3x7x7 stem striding space by 2, no
max pool, stages of basic units whose first unit strides), so the defaults are R3D-18 with its parameter count.

Parameter names (stable):
  conv_root [3, 7, 7, C, widths[0]], gn_root                  stem
  block{s}/unit{u}/conv1, gn1, conv2, gn2                     s = 1..len(depths), u = 1..depths[s-1]
  block{s}/unit{u}/conv_proj, gn_proj                         1x1x1, only where the residual changes shape
With block='2plus1d' every convolution but conv_proj is a Conv2Plus1D of the same name: {name}/spatial
[1, k, k, in, m], {name}/gn, {name}/temporal [t, 1, 1, m, out] (m: `mid_width`).
Kernels are [kt, kh, kw, in, out] with logical axes (conv_t, conv_h, conv_w, conv_in, conv_out); GroupNorm scale and
bias are [channels] with logical axis `norm`.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from mmjax.encoders.resnet import StdConv, group_norm
from mmjax.layers import Encoded

Dtype = jnp.dtype | type
Triple = tuple[int, int, int]

BLOCKS = ("3d", "2plus1d")
_CONV_AXES = ("conv_t", "conv_h", "conv_w", "conv_in", "conv_out")
_ACTIVATION_AXES = ("batch", "time", "height", "width", "channels")


def mid_width(in_features: int, out_features: int, kernel: Triple) -> int:
    """Tran et al. 2018's M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)): the width between a (2+1)-D pair
    whose two kernels hold about as many parameters as the [t, d, d] kernel they replace (144 for 64 -> 64)."""
    t, h, w = kernel
    return max(1, (t * h * w * in_features * out_features) // (h * w * in_features + t * out_features))


def _std_conv(features, kernel, strides, name, dtype, param_dtype) -> StdConv:
    return StdConv(
        features,
        kernel,
        strides,
        padding="SAME",
        use_bias=False,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), _CONV_AXES),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class Conv2Plus1D(nn.Module):
    """A [t, k, k] convolution factorised: [B, T, H, W, Cin] -> [B, T/st, H/sh, W/sw, features].

    `spatial` [1, k, k, Cin, m] strides space, `gn` and a ReLU, then `temporal` [t, 1, 1, m, features] strides
    time. With m = mid_width(...) the pair costs the 3-D kernel's parameters: what the factorisation adds is a
    nonlinearity between space and time, and an easier optimisation (Tran et al. 2018, section 3.5).
    """

    features: int
    kernel: Triple = (3, 3, 3)
    strides: Triple = (1, 1, 1)
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        (t, h, w), (st, sh, sw) = self.kernel, self.strides
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        mid = mid_width(x.shape[-1], self.features, self.kernel)
        y = _std_conv(mid, (1, h, w), (1, sh, sw), "spatial", **kw)(x)
        y = nn.relu(group_norm(mid, self.num_groups, name="gn", **kw)(y))
        return _std_conv(self.features, (t, 1, 1), (st, 1, 1), "temporal", **kw)(y)


def _conv(block, features, kernel, strides, name, num_groups, dtype, param_dtype) -> nn.Module:
    """The tower's convolution of this kernel: one 3-D kernel ('3d') or its (2+1)-D pair ('2plus1d')."""
    if block == "2plus1d":
        return Conv2Plus1D(features, kernel, strides, num_groups, dtype=dtype, param_dtype=param_dtype, name=name)
    return _std_conv(features, kernel, strides, name, dtype, param_dtype)


class _Unit(nn.Module):
    """A basic residual unit: [B, T, H, W, Cin] -> [B, T/st, H/s, W/s, features]; both convolutions 3x3x3."""

    block: str
    features: int
    strides: Triple = (1, 1, 1)
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        conv = dict(num_groups=self.num_groups, **kw)
        out = self.features
        residual = x
        if x.shape[-1] != out or self.strides != (1, 1, 1):
            residual = _std_conv(out, (1, 1, 1), self.strides, "conv_proj", **kw)(x)
            residual = group_norm(out, self.num_groups, name="gn_proj", **kw)(residual)
        y = _conv(self.block, out, (3, 3, 3), self.strides, "conv1", **conv)(x)
        y = nn.relu(group_norm(out, self.num_groups, name="gn1", **kw)(y))
        y = _conv(self.block, out, (3, 3, 3), (1, 1, 1), "conv2", **conv)(y)
        # zero scale: every unit starts as the identity (Goyal et al. 2017), as in resnet.py
        y = group_norm(out, self.num_groups, name="gn2", zero_scale=True, **kw)(y)
        return nn.relu(residual + y)


class _Stage(nn.Module):
    """`units` residual units named unit1..unitN; the first one strides by `first_strides`."""

    block: str
    units: int
    features: int
    first_strides: Triple = (1, 1, 1)
    num_groups: int = 32
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(num_groups=self.num_groups, dtype=self.dtype, param_dtype=self.param_dtype)
        for u in range(self.units):
            strides = self.first_strides if u == 0 else (1, 1, 1)
            x = _Unit(self.block, self.features, strides, name=f"unit{u + 1}", **kw)(x)
        return x


class VideoResNet(nn.Module):
    """Videos [B, T, H, W, C] (normalized, NTHWC) -> Encoded(tokens [B, t*h*w, D], mask [B, t*h*w], pooled [B, D]).

    t = ceil(T / prod(temporal_strides)), h = ceil(H / (2 * prod(strides))) (likewise w), D = widths[-1]; tokens in
    (time, row, column) order, pooled their mean. Any clip length and frame size work: there are no position tables.
    The defaults are R3D-18 (33.17M parameters, torchvision's r3d_18 without its classifier); block='2plus1d' makes
    it R(2+1)D-18 at about the same count (33.18M: every middle width from `mid_width`, where torchvision's
    r2plus1d_18 fixes its stem's at 45 and so has fewer).

    block:            '3d' (R3D: 3x3x3 convolutions) or '2plus1d' (R(2+1)D: each a 1x3x3, then a 3x1x1 conv)
                      (a norm and ReLU between; the width there keeps the 3-D kernel's parameter count)
    widths:           channels of each stage's units (the stem's are the first stage's); D is the last
    depths:           residual units per stage
    strides:          spatial stride of each stage's first unit (the stem strides space by 2 before them)
    temporal_strides: time stride of each stage's first unit (the stem keeps every frame)
                      ((1, 1, 2, 2) leaves an 8-frame clip 2 time steps)
    num_groups:       GroupNorm groups, clamped to a divisor of the channel count
                      (one channel over a 1x1x1 map normalizes to a constant: tiny widths want fewer groups)
    channels:         expected input channels; anything else is a ValueError
    num_frames:       clip length a config feeds (data.num_frames follows it; None: set data.num_frames)
                      (the network itself takes any length)
    """

    block: str = "3d"
    widths: tuple[int, ...] = (64, 128, 256, 512)
    depths: tuple[int, ...] = (2, 2, 2, 2)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    temporal_strides: tuple[int, ...] = (1, 2, 2, 2)
    num_groups: int = 32
    channels: int = 3
    num_frames: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @property
    def features(self) -> int:
        """D, the channel count of the final feature map (and of tokens and pooled)."""
        return self.widths[-1]

    def _check(self, videos) -> None:
        if self.block not in BLOCKS:
            raise ValueError(f"unknown VideoResNet block {self.block!r}; expected one of {BLOCKS}")
        sizes = {f: len(getattr(self, f)) for f in ("widths", "depths", "strides", "temporal_strides")}
        if len(set(sizes.values())) != 1 or not sizes["widths"]:
            raise ValueError(f"VideoResNet needs one entry per stage in each of {sizes} (field: length)")
        if videos.ndim != 5:
            raise ValueError(f"VideoResNet expects videos [B, T, H, W, C], got shape {tuple(videos.shape)}")
        if videos.shape[-1] != self.channels:
            raise ValueError(
                f"VideoResNet expects {self.channels} channels (NTHWC), got {videos.shape[-1]} "
                f"(video shape {tuple(videos.shape)})"
            )

    @nn.compact
    def __call__(self, videos, *, train: bool = False) -> Encoded:
        del train  # no dropout and no batch statistics: train and eval compute the same function
        self._check(videos)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        width = self.widths[0]

        x = _conv(self.block, width, (3, 7, 7), (1, 2, 2), "conv_root", self.num_groups, **kw)(
            videos.astype(self.dtype)
        )
        x = nn.relu(group_norm(width, self.num_groups, name="gn_root", **kw)(x))
        x = nn.with_logical_constraint(x, _ACTIVATION_AXES)

        stages = zip(self.widths, self.depths, self.strides, self.temporal_strides, strict=True)
        for s, (features, units, stride, time_stride) in enumerate(stages):
            first = (time_stride, stride, stride)
            x = _Stage(self.block, units, features, first, self.num_groups, name=f"block{s + 1}", **kw)(x)
            x = nn.with_logical_constraint(x, _ACTIVATION_AXES)

        b, t, h, w, d = x.shape
        tokens = nn.with_logical_constraint(x.reshape(b, t * h * w, d), ("batch", "length", "embed"))
        return Encoded(tokens=tokens, mask=jnp.ones((b, t * h * w), bool), pooled=jnp.mean(tokens, axis=1))
