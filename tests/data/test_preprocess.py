import io

import numpy as np
import pytest
from PIL import Image

from mmjax.data import preprocess as pp


def _png(array, mode=None):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_bytes_and_arrays_to_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pp.decode_image(_png(rgb)), rgb)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(pp.decode_image(_png(gray)), np.repeat(gray[..., None], 3, -1))
    np.testing.assert_array_equal(pp.decode_image(gray[..., None]), np.repeat(gray[..., None], 3, -1))
    with pytest.raises(OSError):  # Pillow's UnidentifiedImageError
        pp.decode_image(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="uint8"):
        pp.decode_image(np.zeros((4, 4, 3), np.float32))


def test_normalize_matches_definition():
    image = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    prep = pp.ImagePreprocessor(size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4))
    out = prep(image, np.random.default_rng(0))
    want = (image / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.3, 0.4])
    assert out.dtype == np.float32 and out.shape == (8, 8, 3)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_random_resized_crop_respects_scale_ratio_and_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = pp.random_resized_crop_box(rng, 40, 60, scale=(0.3, 0.9), ratio=(0.5, 2.0))
        assert 0 <= x0 < x1 <= 60 and 0 <= y0 < y1 <= 40
        w, h = x1 - x0, y1 - y0
        assert 0.3 - 1e-6 <= w * h / 2400 <= 0.9 + 1e-6 and 0.5 - 1e-6 <= w / h <= 2.0 + 1e-6


def test_boxes_follow_crop_and_flip():
    # A white square at pixels [10, 20) x [30, 40) of a 64x64 image; its box must land on the white pixels.
    image = np.zeros((64, 64, 3), np.uint8)
    image[30:40, 10:20] = 255
    boxes = np.array([[10, 30, 20, 40]], np.float32) / 64
    prep = pp.ImagePreprocessor(
        size=32, mean=(0, 0, 0), std=(1, 1, 1), random_crop=True, crop_scale=(0.6, 1), flip=True
    )
    seen_flip = False
    for seed in range(20):
        out, (moved, keep) = prep(image, np.random.default_rng(seed), boxes)
        if not keep[0]:
            continue
        x0, y0, x1, y1 = moved[0] * 32
        white = out[..., 0] > 0.5
        ys, xs = np.nonzero(white)
        # Compare with the white pixels' extent, allowing one pixel of resampling blur.
        assert abs(xs.min() - x0) <= 1.5 and abs(xs.max() + 1 - x1) <= 1.5
        assert abs(ys.min() - y0) <= 1.5 and abs(ys.max() + 1 - y1) <= 1.5
        seen_flip |= xs.mean() > 16
    assert seen_flip


def test_eval_preprocessing_is_deterministic_centre_crop():
    image = np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    prep = pp.ImagePreprocessor(size=30, mean=(0, 0, 0), std=(1, 1, 1))
    a = prep(image, np.random.default_rng(0))
    b = prep(image, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a * 255, image[:, 10:40], atol=1e-3)
