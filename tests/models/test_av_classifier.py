"""Audio-visual classification: a video tower and an audio tower (fed waveforms) joined by any fusion, and MBT
bottlenecks as the only path between the two streams.

Changing the soundtrack (num_layers=2 in the fusion), the video stream's fused tokens:
  - one fusion layer (fusion_layer=1):  unchanged (the audio's update to the bottleneck has no later layer to reach);
  - two fusion layers (fusion_layer=0): changed (through the bottleneck);
  - two fusion layers, n_bottlenecks=0: unchanged (no path at all).
The image-text version of this test is tests/fusion/test_bottleneck.py; this one runs the real towers (a frame
ViT on the clip, AST with its log-mel frontend on the waveform) through `Classifier`, as `model.kind='av'` does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mmjax.encoders import build_tower
from mmjax.fusion import FUSIONS, build_fusion
from mmjax.models import Classifier

SAMPLES = 4000  # 0.25 s at 16 kHz: 23 frames of 25 ms every 10 ms
FUSION_KWARGS = {
    "early": dict(width=16, num_layers=1, num_heads=2),
    "late": dict(combine="concat"),
    "mid": dict(width=16, num_layers=2, num_heads=2, fusion_layer=1),
    "bottleneck": dict(width=16, num_layers=2, num_heads=2, n_bottlenecks=2, fusion_layer=1),
}


def _model(fusion: str, **fusion_kwargs) -> Classifier:
    return Classifier(
        towers={
            "video": build_tower(
                "frame_vit", width=16, depth=1, num_heads=2, patch_size=8, image_size=16, num_frames=2, temporal_depth=1
            ),
            "audio": build_tower("ast", frontend="ast", num_mel_bins=16, max_length=23, width=16, depth=1, num_heads=2),
        },  # fmt: skip
        fusion=build_fusion(fusion, **fusion_kwargs),
        num_classes=2,
    )


def _inputs(seed: int = 0, audio_seed: int = 0) -> dict:
    clip = np.random.default_rng(seed).uniform(size=(2, 2, 16, 16, 3)).astype(np.float32)
    wave = 0.3 * np.random.default_rng(audio_seed).standard_normal((2, SAMPLES)).astype(np.float32)
    return {"video": jnp.asarray(clip), "audio": (jnp.asarray(wave), jnp.array([SAMPLES, SAMPLES // 2], jnp.int32))}


def _params(model, inputs):
    """Parameters from shapes and fixed numpy noise: no init compile, and the zero-initialized head is not zero."""
    leaves, tree = jax.tree.flatten(jax.eval_shape(model.init, jax.random.key(0), inputs))
    rng = np.random.default_rng(0)
    return jax.tree.unflatten(tree, [jnp.asarray(0.3 * rng.standard_normal(x.shape), jnp.float32) for x in leaves])


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_joins_a_clip_and_its_soundtrack(fusion):
    model = _model(fusion, **FUSION_KWARGS[fusion])
    inputs = _inputs()
    out = jax.jit(model.apply)(_params(model, inputs), inputs)
    assert out["logits"].shape == (2, 2) and bool(jnp.isfinite(out["logits"]).all())
    # the towers are named by modality: `towers_video`, `towers_audio`
    assert {"towers_video", "towers_audio", "head"} <= set(_params(model, inputs)["params"])


@pytest.mark.parametrize("fusion_layer, n_bottlenecks, video_changes", [(1, 4, False), (0, 4, True), (0, 0, False)])
def test_the_soundtrack_reaches_the_video_stream_only_through_the_bottleneck(
    fusion_layer, n_bottlenecks, video_changes
):
    model = _model("bottleneck", width=16, num_layers=2, num_heads=2, mlp_dim=32, fusion_layer=fusion_layer,
                   n_bottlenecks=n_bottlenecks, pool="mean")  # fmt: skip
    inputs = _inputs()
    params = _params(model, inputs)
    audio_tokens = jax.eval_shape(lambda: model.apply(params, inputs, method="encode")["audio"].tokens).shape[1]

    @jax.jit
    def video_stream(inputs):
        # fused tokens in sorted modality order: the audio's, then the video's
        return model.apply(params, inputs)["last_hidden_state"][:, audio_tokens:]

    before, after = video_stream(inputs), video_stream(_inputs(audio_seed=1))
    assert before.shape[1] > 0
    if video_changes:
        assert not jnp.allclose(before, after, atol=1e-4)
    else:
        assert jnp.array_equal(before, after)  # exactly: no path, not merely a small one
