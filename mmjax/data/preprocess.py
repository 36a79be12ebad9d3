"""Image preprocessing: decode, crop and resize, flip, normalize; boxes follow the image through each step.

Images stay uint8 through cropping and resizing (Pillow does one resample for crop + resize together) and
become float32 only at the end: `(x / 255 - mean) / std`, NHWC, so models receive the normalized layout the
architecture fixes. The pipeline augments each record (`ImagePreprocessor.augment`, uint8) and normalizes a
whole batch at once (`ImagePreprocessor.normalize`, elementwise, so the values are the same bit for bit as
per-record normalization). An image already of the output size with no crop requested is not resampled.
Randomness comes from the per-example generator grain derives from the pipeline seed and the example's global
position, which is what makes batches independent of the process count and a restored iterator replay them.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image

# CLIP's statistics; a config passes the model's own.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def decode_image(value) -> np.ndarray:
    """PNG/JPEG bytes, or a uint8 array [H,W], [H,W,1] or [H,W,3|4], to uint8 RGB [H, W, 3].

    Arrays come back as they are (a view, possibly read-only) when already RGB: callers never write into them.
    """
    if isinstance(value, bytes | np.bytes_):
        with Image.open(io.BytesIO(value)) as img:
            if img.mode == "RGB":  # the usual case: skip convert's copy
                img.load()
                return np.asarray(img)
            return np.asarray(img.convert("RGB"))
    array = np.asarray(value)
    if array.dtype != np.uint8:
        raise ValueError(f"expected encoded bytes or a uint8 image, got {array.dtype} {array.shape}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image [H, W, 1|3|4], got shape {array.shape}")
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    return array[..., :3]


def random_resized_crop_box(
    rng: np.random.Generator, height: int, width: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)
) -> tuple[float, float, float, float]:
    """Inception-style crop (x0, y0, x1, y1): area fraction in `scale`, aspect ratio in `ratio` (log-uniform).

    Tries 10 draws, then falls back to the largest centred crop with a clipped ratio, like torchvision does.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if w <= width and h <= height:
            x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            return x0, y0, x0 + w, y0 + h
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, width / aspect) if width / height <= aspect else (height * aspect, height)
    return center_box(height, width, w, h)


def center_box(height: int, width: int, w: float | None = None, h: float | None = None):
    """The centred (x0, y0, x1, y1) of size w x h; by default the largest centred square."""
    if w is None:
        w = h = min(height, width)
    x0, y0 = (width - w) / 2, (height - h) / 2
    return x0, y0, x0 + w, y0 + h


def crop_and_resize(image: np.ndarray, box, size: int) -> np.ndarray:
    """Crops `box` (pixel coordinates, fractional allowed) and resizes to [size, size, 3] in one resample."""
    if tuple(box) == (0, 0, image.shape[1], image.shape[0]) and image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR, box=tuple(box)))


def transform_boxes(boxes: np.ndarray, crop, height: int, width: int, flip: bool):
    """Maps boxes [R, 4] (x0, y0, x1, y1 in [0, 1] of the source) into the cropped, maybe flipped, frame.

    Returns (boxes [R, 4] clipped to [0, 1], keep [R] bool): a box left with no area is dropped by the caller.
    """
    x0, y0, x1, y1 = crop
    scale = np.asarray([width / (x1 - x0), height / (y1 - y0)] * 2, np.float32)
    shift = np.asarray([x0 / width, y0 / height] * 2, np.float32)
    out = np.clip((boxes - shift) * scale, 0.0, 1.0)
    if flip:
        out = np.stack([1 - out[:, 2], out[:, 1], 1 - out[:, 0], out[:, 3]], axis=-1)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out.astype(np.float32), keep


def decode_frames(value) -> np.ndarray:
    """A clip: uint8 [T, H, W, 3] (or [T, H, W, 1] grey) -> uint8 RGB [T, H, W, 3]. A still image [H, W, 3] is
    refused, not read as H grey frames."""
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"expected a clip of uint8 frames [T, H, W, 3], got {array.dtype} {array.shape}")
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


@dataclasses.dataclass(frozen=True)
class ImagePreprocessor:
    """Turns a decoded image into the model's input.

    Attributes:
      size: output side S (square output).
      mean, std: per-channel statistics of the model, applied to values in [0, 1].
      random_crop: train-time random resized crop with `crop_scale`/`crop_ratio`; otherwise the largest
        centred square, resized (for square datasets: a plain resize).
      flip: random horizontal flip with probability 1/2. Keep it off for tasks that talk about left and right.
    """

    size: int = 64
    mean: tuple[float, ...] = CLIP_MEAN
    std: tuple[float, ...] = CLIP_STD
    random_crop: bool = False
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = False

    def __call__(self, image: np.ndarray, rng: np.random.Generator, boxes: np.ndarray | None = None):
        """uint8 [H, W, 3] (+ boxes [R, 4]) -> float32 [S, S, 3] normalized (+ (boxes, keep) as above)."""
        out = self.augment(image, rng, boxes)
        if boxes is None:
            return self.normalize(out)
        return self.normalize(out[0]), out[1]

    def augment(self, image: np.ndarray, rng: np.random.Generator, boxes: np.ndarray | None = None):
        """Crop, resize and flip, staying uint8: [H, W, 3] -> [S, S, 3] (+ (boxes, keep)); `normalize` follows.

        Draws from `rng` in a fixed order (crop, then flip), which callers that draw more rely on.
        """
        height, width = image.shape[:2]
        if self.random_crop:
            crop = random_resized_crop_box(rng, height, width, self.crop_scale, self.crop_ratio)
        else:
            crop = center_box(height, width)
        out = crop_and_resize(image, crop, self.size)
        flip = bool(self.flip and rng.random() < 0.5)
        if flip:
            out = out[:, ::-1]
        if boxes is None:
            return out
        return out, transform_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), crop, height, width, flip)

    def augment_frames(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """`augment` for a clip [T, H, W, 3] -> [T, S, S, 3]: one crop and one flip for all its frames (a crop
        that moved from frame to frame would add motion the clip does not have)."""
        height, width = frames.shape[1:3]
        if self.random_crop:
            crop = random_resized_crop_box(rng, height, width, self.crop_scale, self.crop_ratio)
        else:
            crop = center_box(height, width)
        out = np.stack([crop_and_resize(frame, crop, self.size) for frame in frames])
        return out[:, :, ::-1] if self.flip and rng.random() < 0.5 else out

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """uint8 [..., 3] (one image or a batch) -> float32 `(x / 255 - mean) / std`, elementwise."""
        mean = np.asarray(self.mean, np.float32) * 255
        inv_std = 1 / (np.asarray(self.std, np.float32) * 255)
        out = image.astype(np.float32)  # a new array: the in-place steps below are the same float32 operations
        out -= mean
        out *= inv_std
        return out
