"""Images for prediction: files, folders, PIL images or arrays -> the model inputs evaluation would make of them.

Files are decoded by `mmjax.data.preprocess.decode_image` and resized/normalized by the evaluation pipeline's own
`ImagePreprocessor` (no random crop, no flip: `build_pipeline(..., train=False)`), so a PNG of a dataset image
gives the model the same floats, bit for bit, as the evaluation batch holding that image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mmjax.data.preprocess import ImagePreprocessor, decode_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class PredictError(ValueError):
    """A prediction that cannot be made (a missing file, not an image, no checkpoint, a task that cannot do it);
    the message is one line and says what to do. The CLI prints it and exits 2."""


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files and folders -> image files, in the order given; a folder gives its image files sorted by name (not
    recursive). A path that is not there, or a folder with no image, is a PredictError."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise PredictError(f"{path}: no image files in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise PredictError(f"{path}: no such file or folder")
    return files


def is_one_image(value) -> bool:
    """Whether `value` is a single image (a file's path, a PIL image, an [H, W(, C)] array), not a folder, a list
    or a batch of them."""
    if isinstance(value, str | os.PathLike):
        return not Path(value).is_dir()
    if isinstance(value, Image.Image):
        return True
    return isinstance(value, np.ndarray) and value.ndim in (2, 3) and not (value.ndim == 3 and value.shape[-1] > 4)


def as_image_list(images) -> list:
    """One image, a folder, a list of them, or an [N, H, W, C] batch -> a flat list of single images (folders
    expanded to their files)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return list(images)
    if isinstance(images, str | os.PathLike) and Path(images).is_dir():
        return list(image_files([images]))
    if is_one_image(images):
        return [images]
    out = []
    for item in images:
        out += as_image_list(item) if isinstance(item, str | os.PathLike) and Path(item).is_dir() else [item]
    return out


def image_name(image, index: int) -> str:
    """How an input is named in tables and JSON: its path, or 'image <index>'."""
    return os.fspath(image) if isinstance(image, str | os.PathLike) else f"image {index}"


def read_image(image) -> np.ndarray:
    """A path (PNG, JPEG, ... via PIL), a PIL image, or an array -> uint8 RGB [H, W, 3].

    Arrays: uint8 [H, W], [H, W, 1|3|4] as they are; floating point in [0, 1] (the architecture's image
    convention) is rounded to uint8 first, as the pipeline only resizes uint8 images.
    """
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise PredictError(f"{path}: no such file")
        try:
            return decode_image(path.read_bytes())
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise PredictError(f"{path}: not an image PIL can read ({type(e).__name__})") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and (array.min() < 0 or array.max() > 1):
            raise PredictError(f"a float image must hold values in [0, 1], got {array.min():.3g}..{array.max():.3g}")
        array = np.round(array * 255).astype(np.uint8)
    try:
        return decode_image(array)
    except ValueError as e:
        raise PredictError(f"not an image: {e}") from None


def eval_preprocessor(data_config) -> ImagePreprocessor:
    """The preprocessor `build_pipeline` uses for evaluation splits of `data_config` (= config.data)."""
    return ImagePreprocessor(size=data_config.image_size, mean=tuple(data_config.mean), std=tuple(data_config.std))


def model_inputs(images: Sequence[np.ndarray], preprocessor: ImagePreprocessor) -> np.ndarray:
    """uint8 images [H, W, 3] -> float32 [N, S, S, 3]: resized one by one, normalized as one batch, as the
    pipeline does (`ToExample` then `FinishBatch`)."""
    rng = np.random.default_rng(0)  # drawn from only with random crops or flips, which evaluation has off
    resized = [preprocessor.augment(image, rng) for image in images]
    return preprocessor.normalize(np.stack(resized))
